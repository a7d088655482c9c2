// Unit tests for the guest helpers: command words, exit statuses, mode flags, the default name,
// the stdio duplex's half-close, and the ssh config block.
import { describe, expect, test } from "bun:test";
import { PassThrough } from "node:stream";
import { commandAfterDashes, exitStatus, substitute } from "../src/cli/command-runner.ts";
import { guestMode } from "../src/cli/guest-mode.ts";
import { osUser, passwdName } from "../src/cli/os-user.ts";
import { sshConfigBlock } from "../src/cli/ssh-config.ts";
import { stdioDuplex } from "../src/cli/stdio-carrier.ts";
import { ConfigError } from "../src/errors.ts";

describe("command words", () => {
  test("everything after the first -- is the command, untouched (later -- and flags included)", () => {
    expect(commandAfterDashes(["ABCD", "--reason", "x", "--", "psql", "-h", "{host}", "--", "-x"])).toEqual([
      "psql",
      "-h",
      "{host}",
      "--",
      "-x",
    ]);
    expect(commandAfterDashes(["ABCD", "--local", "127.0.0.1:0"])).toBeUndefined();
    expect(() => commandAfterDashes(["ABCD", "--"])).toThrow(ConfigError);
  });

  test("{host} and {port} are replaced everywhere, several times a word; nothing else is", () => {
    const at = { host: "127.0.0.1", port: 15432 };
    expect(
      substitute(
        ["psql", "-h", "{host}", "-p", "{port}", "postgres://u@{host}:{port}/db", "{user}", "$TESSERA_PORT"],
        at,
      ),
    ).toEqual(["psql", "-h", "127.0.0.1", "-p", "15432", "postgres://u@127.0.0.1:15432/db", "{user}", "$TESSERA_PORT"]);
  });

  test("exit status the shell's way: the code, or 128 + the signal", () => {
    expect(exitStatus({ code: 7, signal: null })).toBe(7);
    expect(exitStatus({ code: 0, signal: null })).toBe(0);
    expect(exitStatus({ code: null, signal: "SIGTERM" })).toBe(143);
    expect(exitStatus({ code: null, signal: "SIGKILL" })).toBe(137);
  });
});

describe("guestMode", () => {
  test("picks forward, command or stdio, and refuses combinations that make no sense", () => {
    expect(guestMode({})).toEqual({ kind: "forward", local: undefined });
    expect(guestMode({ local: "127.0.0.1:0", command: ["psql"] })).toEqual({
      kind: "command",
      argv: ["psql"],
      local: "127.0.0.1:0",
    });
    expect(guestMode({ stdio: true })).toEqual({ kind: "stdio" });
    expect(() => guestMode({ stdio: true, command: ["x"] })).toThrow(/cannot also run a command/);
    expect(() => guestMode({ stdio: true, local: "127.0.0.1:1" })).toThrow(/drop --local/);
  });
});

describe("osUser", () => {
  test("USER, then LOGNAME, then USERNAME, then the account database, then 'guest'", () => {
    expect(osUser({ USER: "ann", LOGNAME: "bob" }, () => "acct")).toBe("ann");
    expect(osUser({ USER: "", LOGNAME: "bob" }, () => "acct")).toBe("bob");
    expect(osUser({ USERNAME: "win" }, () => "acct")).toBe("win");
    expect(osUser({}, () => "acct")).toBe("acct");
    expect(osUser({}, () => undefined)).toBe("guest");
    expect(osUser({ USER: "x".repeat(100) }).length).toBe(64);
  });

  test("with no USER at all the real account name is found (Bun's os.userInfo() says 'unknown' there)", () => {
    const expected = Bun.spawnSync(["id", "-un"]).stdout.toString().trim();
    expect(osUser({})).toBe(expected);
  });

  test("passwd lookup matches the uid field exactly", () => {
    const passwd =
      "root:x:0:0:root:/root:/bin/bash\nsvc:x:10:10::/:/bin/false\nann:x:1000:1000:Ann:/home/ann:/bin/sh\n";
    expect(passwdName(passwd, 1000)).toBe("ann");
    expect(passwdName(passwd, 0)).toBe("root");
    expect(passwdName(passwd, 100)).toBeUndefined();
  });
});

describe("stdioDuplex", () => {
  test("end of input ends only the way out; the answer still flows and then ends the output", async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    const io = stdioDuplex(input, output);
    const closed = new Promise((r) => io.once("close", r));
    const fromInput: Buffer[] = [];
    io.on("data", (d: Buffer) => fromInput.push(d));
    const inputEnded = new Promise((r) => io.once("end", r));
    input.end("request");
    await inputEnded;
    expect(Buffer.concat(fromInput).toString()).toBe("request");
    // Half-closed: we can still write the remote side's answer to the output.
    const got: Buffer[] = [];
    output.on("data", (d: Buffer) => got.push(d));
    const outputEnded = new Promise((r) => output.once("end", r));
    io.end("answer");
    await outputEnded;
    expect(Buffer.concat(got).toString()).toBe("answer");
    await closed;
    expect(io.readableEnded && io.writableFinished).toBe(true);
  });

  test("backpressure: input pauses while the stream is not read, and resumes without losing a byte", async () => {
    const input = new PassThrough();
    const io = stdioDuplex(input, new PassThrough());
    let total = 0;
    io.on("data", (d: Buffer) => (total += d.length));
    io.pause();
    for (let i = 0; i < 160; i++) input.write(Buffer.alloc(16 * 1024, i));
    while (!input.isPaused()) await Bun.sleep(1);
    expect(total).toBe(0);
    io.resume();
    while (total < 160 * 16 * 1024) await Bun.sleep(1);
    expect(total).toBe(160 * 16 * 1024);
    io.destroy();
  });
});

describe("sshConfigBlock", () => {
  const base = { exe: ["/opt/tessera"], platform: "linux" };

  test("a code: join --stdio with ssh's %r/%h/%p left for ssh, the alias as Host", () => {
    const block = sshConfigBlock({ ...base, via: { code: "k7qfm2xd" } });
    expect(block).toContain("Host tessera-k7qfm2xd\n");
    expect(block).toContain("  ProxyCommand /opt/tessera join --stdio K7QF-M2XD --reason 'ssh %r@%h:%p'\n");
    expect(block).toContain("single use");
  });

  test("--alias, --reason with stray % and quotes, and TESSERA_HOME are all carried safely", () => {
    const block = sshConfigBlock({
      ...base,
      via: { code: "K7QF-M2XD" },
      alias: "devbox",
      reason: "it's 50% done for %r",
      home: "/home/a/my tessera",
    });
    expect(block).toContain("Host devbox\n");
    expect(block).toContain(
      `  ProxyCommand env TESSERA_HOME='/home/a/my tessera' /opt/tessera join --stdio K7QF-M2XD --reason 'it'\\''s 50%% done for %r'\n`,
    );
  });

  test("a literal % in the executable path is doubled so ssh does not expand it", () => {
    expect(sshConfigBlock({ ...base, exe: ["/opt/100%/tessera"], via: { code: "K7QF-M2XD" } })).toContain(
      "ProxyCommand /opt/100%%/tessera join",
    );
  });

  test("--share-id and --target: connect --stdio, reusable", () => {
    const block = sshConfigBlock({ ...base, via: { shareId: "db", target: "127.0.0.1:22" } });
    expect(block).toContain("Host db-22\n");
    expect(block).toContain(
      "ProxyCommand /opt/tessera connect --stdio --share-id db --target 127.0.0.1:22 --reason 'ssh %r@%h:%p'",
    );
  });

  test("Windows quoting uses double quotes", () => {
    expect(
      sshConfigBlock({ exe: ["C:\\Program Files\\tessera.exe"], platform: "win32", via: { code: "K7QF-M2XD" } }),
    ).toContain(`ProxyCommand "C:\\Program Files\\tessera.exe" join --stdio K7QF-M2XD --reason "ssh %r@%h:%p"`);
  });

  test("bad codes, aliases, share ids and targets are refused with a clear message", () => {
    expect(() => sshConfigBlock({ ...base, via: { code: "nope" } })).toThrow(/not a code/);
    expect(() => sshConfigBlock({ ...base, via: { code: "K7QF-M2XD" }, alias: "a b" })).toThrow(/--alias/);
    expect(() => sshConfigBlock({ ...base, via: { code: "K7QF-M2XD" }, alias: "*" })).toThrow(/--alias/);
    expect(() => sshConfigBlock({ ...base, via: { shareId: "d b", target: "127.0.0.1:22" } })).toThrow(/--share-id/);
    expect(() => sshConfigBlock({ ...base, via: { shareId: "db", target: "nowhere" } })).toThrow(/--target/);
  });
});

test("cleanInvite: spaces, the printed line and flags pasted along come down to the invite", async () => {
  const { cleanInvite, splitInvite } = await import("../src/cli/invite.ts");
  expect(cleanInvite("  K7QF-M2XD ")).toBe("K7QF-M2XD");
  expect(cleanInvite("relay.example.com:8443 /K7QF-M2XD")).toBe("relay.example.com:8443/K7QF-M2XD");
  expect(cleanInvite("invite: tessera join relay.example.com:8443/K7QF-M2XD")).toBe("relay.example.com:8443/K7QF-M2XD");
  expect(cleanInvite('tessera join h:1/K7QF M2XD --reason "x"')).toBe("h:1/K7QF M2XD");
  expect(splitInvite(" h:1 / K7QF-M2XD ")).toEqual({ address: "h:1", code: "K7QF-M2XD" });
});

test("the guest's reason check matches the frames: 500 characters pass both, 501 fail both, an ESC fails both", async () => {
  const v = await import("valibot");
  const { ClientFrame, MAX_REASON_CHARS } = await import("../src/wire/protocol.ts");
  const { checkReason } = await import("../src/cli/guest-checks.ts");
  const frame = (reason: string) => ({
    t: "request",
    shareId: "db",
    target: "127.0.0.1:5432",
    csr: "-----BEGIN CERTIFICATE REQUEST-----",
    name: "ana",
    reason,
  });
  expect(MAX_REASON_CHARS).toBe(500);
  expect(v.safeParse(ClientFrame, frame("a".repeat(500))).success).toBe(true);
  expect(() => checkReason("a".repeat(500))).not.toThrow();
  expect(v.safeParse(ClientFrame, frame("a".repeat(501))).success).toBe(false);
  expect(() => checkReason("a".repeat(501))).toThrow(/at most 500 characters/);
  expect(v.safeParse(ClientFrame, frame("a\x1bb")).success).toBe(false);
  expect(() => checkReason("a\x1bb")).toThrow(/escape character/);
  expect(v.safeParse(ClientFrame, frame("two\nlines\tok")).success).toBe(true);
  expect(() => checkReason("two\nlines\tok")).not.toThrow();
});
