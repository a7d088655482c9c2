// Unit tests for src/cli/home.ts: TESSERA_HOME resolved the platform's way, platform and env injected.
import { describe, expect, test } from "bun:test";
import { resolveHome } from "../src/cli/home.ts";

describe("resolveHome", () => {
  test("TESSERA_HOME always wins, on every platform", () => {
    expect(
      resolveHome({ platform: "linux", env: { TESSERA_HOME: "/srv/t", XDG_CONFIG_HOME: "/x" }, homedir: "/home/a" }),
    ).toBe("/srv/t");
    expect(resolveHome({ platform: "darwin", env: { TESSERA_HOME: "/Users/a/t" }, homedir: "/Users/a" })).toBe(
      "/Users/a/t",
    );
    expect(
      resolveHome({
        platform: "win32",
        env: { TESSERA_HOME: "D:\\tessera", APPDATA: "C:\\Users\\a\\AppData\\Roaming" },
        homedir: "C:\\Users\\a",
      }),
    ).toBe("D:\\tessera");
  });

  test("a relative TESSERA_HOME is made absolute against the working directory", () => {
    expect(resolveHome({ platform: "linux", env: { TESSERA_HOME: "host" }, homedir: "/home/a" })).toBe(
      `${process.cwd()}/host`,
    );
  });

  test("Linux and other Unixes: $XDG_CONFIG_HOME/tessera, else ~/.config/tessera", () => {
    expect(resolveHome({ platform: "linux", env: { XDG_CONFIG_HOME: "/home/a/cfg" }, homedir: "/home/a" })).toBe(
      "/home/a/cfg/tessera",
    );
    expect(resolveHome({ platform: "linux", env: {}, homedir: "/home/a" })).toBe("/home/a/.config/tessera");
    expect(resolveHome({ platform: "freebsd", env: {}, homedir: "/usr/home/a" })).toBe("/usr/home/a/.config/tessera");
    // The XDG spec: a relative value is invalid and ignored; an empty one is unset.
    expect(resolveHome({ platform: "linux", env: { XDG_CONFIG_HOME: "cfg" }, homedir: "/home/a" })).toBe(
      "/home/a/.config/tessera",
    );
    expect(resolveHome({ platform: "linux", env: { XDG_CONFIG_HOME: "", TESSERA_HOME: "" }, homedir: "/home/a" })).toBe(
      "/home/a/.config/tessera",
    );
  });

  test("macOS: ~/Library/Application Support/tessera, XDG ignored", () => {
    expect(resolveHome({ platform: "darwin", env: { XDG_CONFIG_HOME: "/Users/a/.config" }, homedir: "/Users/a" })).toBe(
      "/Users/a/Library/Application Support/tessera",
    );
  });

  test("Windows: %APPDATA%\\tessera, else the profile's AppData\\Roaming", () => {
    expect(
      resolveHome({ platform: "win32", env: { APPDATA: "C:\\Users\\a\\AppData\\Roaming" }, homedir: "C:\\Users\\a" }),
    ).toBe("C:\\Users\\a\\AppData\\Roaming\\tessera");
    expect(resolveHome({ platform: "win32", env: {}, homedir: "C:\\Users\\svc" })).toBe(
      "C:\\Users\\svc\\AppData\\Roaming\\tessera",
    );
    expect(resolveHome({ platform: "win32", env: { APPDATA: "relative" }, homedir: "C:\\Users\\a" })).toBe(
      "C:\\Users\\a\\AppData\\Roaming\\tessera",
    );
  });
});
