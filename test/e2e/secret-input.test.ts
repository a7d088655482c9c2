// Issue 27: `tessera token` and `link --token` take the secret from stdin, a no-echo prompt or --token-file,
// so it is not in argv (`ps`) or shell history; argv still works, with a warning saying why not.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import type { FileSink } from "bun";
import { Live } from "../coordinator/live.ts";
import { killAll, spawn, tmpDir } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

const TOKEN = "ab".repeat(32);

async function piped(args: string[], env: Record<string, string>, input: string) {
  const p = spawn(args, env);
  const sink = p.proc.stdin as FileSink;
  sink.write(input);
  await sink.end();
  return { code: await p.exit(), out: p.out, err: p.err };
}

test("tessera token: from stdin and from --token-file without a warning; from argv with one; at a terminal, typed without echo", async () => {
  for (const how of ["stdin", "file", "argv", "pty"] as const) {
    const home = path.join(tmpDir(), "op");
    const env = { TESSERA_HOME: home };
    let r: { code: number; out: string; err: string };
    if (how === "stdin") r = await piped(["token"], env, `${TOKEN}\n`);
    else if (how === "file") {
      const file = path.join(tmpDir(), "tok");
      fs.writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
      const p = spawn(["token", "--token-file", file], env);
      r = { code: await p.exit(), out: p.out, err: p.err };
    } else if (how === "argv") {
      const p = spawn(["token", TOKEN], env);
      r = { code: await p.exit(), out: p.out, err: p.err };
    } else {
      const p = spawn(["token"], env, { pty: true });
      await p.waitFor(/operator token \(not echoed\): /);
      p.write(`${TOKEN}\r`);
      r = { code: await p.exit(), out: p.out, err: p.err };
      // Not echoed: the terminal shows the prompt and the confirmation, never the token.
      expect(r.out).not.toContain(TOKEN);
    }
    expect({ how, code: r.code }).toEqual({ how, code: 0 });
    expect(fs.readFileSync(path.join(home, "operator-token"), "utf8")).toBe(`${TOKEN}\n`);
    expect(fs.statSync(path.join(home, "operator-token")).mode & 0o777).toBe(0o600);
    const warned = (r.out + r.err).includes("was given on the command line, where other local users (ps)");
    expect({ how, warned }).toEqual({ how, warned: how === "argv" });
  }
});

test("tessera link --token - enrols with the token piped on stdin; --token-file too", async () => {
  const live = await Live.start();
  try {
    for (const how of ["stdin", "file"] as const) {
      const home = path.join(tmpDir(), "host");
      let r: { code: number; out: string; err: string };
      if (how === "stdin")
        r = await piped(
          ["link", live.address, "--token", "-", "--name", `piped-${how}`],
          { TESSERA_HOME: home },
          `${live.enrolToken()}\n`,
        );
      else {
        const file = path.join(tmpDir(), "enrol");
        fs.writeFileSync(file, live.enrolToken(), { mode: 0o600 });
        const p = spawn(["link", live.address, "--token-file", file, "--name", `piped-${how}`], { TESSERA_HOME: home });
        r = { code: await p.exit(), out: p.out, err: p.err };
      }
      expect({ how, code: r.code, err: r.err }).toMatchObject({ how, code: 0 });
      expect(r.out).toContain(`enrolled as host "piped-${how}"`);
      expect(r.err).not.toContain("command line");
      expect(fs.statSync(path.join(home, "host.key")).mode & 0o777).toBe(0o600);
    }
  } finally {
    await live.close();
  }
});
