// `share --shell` for real: host and guest each in their own PTY, the shell's PTY on the host,
// keystrokes and screen crossing the coordinator inside the end-to-end TLS.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import {
  deploy,
  killAll,
  restartCoordinator,
  run,
  shareShell,
  spawn,
  spawnArgv,
  TESSERA,
  type Proc,
} from "./harness.ts";

setDefaultTimeout(90_000);
afterAll(killAll);

/** A predictable shell for assertions: sh with a fixed prompt, whatever the login shell is. */
const SH = ["--command", "sh"];
const SH_ENV = { PS1: "tsh$ ", ENV: "" };

/**
 * Ctrl-C from the guest's terminal. The keystroke always reaches the host's PTY (its line discipline
 * echoes ^C), but on a loaded machine the kernel's SIGINT sometimes finds the foreground group mid-change
 * as dash starts the job; a second Ctrl-C then lands. Bounded: a real loss of the keystroke still fails.
 */
async function interrupt(guest: Proc): Promise<void> {
  for (let i = 0; i < 4; i++) {
    guest.write("\x03");
    if (
      await guest.waitFor(/interrupted-2/, 3000).then(
        () => true,
        () => false,
      )
    )
      return;
  }
  await guest.waitFor(/interrupted-2/);
}

async function approve(host: Proc, name: string): Promise<void> {
  await host.waitFor(new RegExp(`Allow ${name} a SHELL as your user \\S+\\? \\[y/N\\]`));
  host.write("y\r");
}

function castEvents(file: string): { header: Record<string, unknown>; events: [number, string, string][] } {
  const [head, ...rest] = fs.readFileSync(file, "utf8").trimEnd().split("\n");
  return { header: JSON.parse(head!), events: rest.map((l) => JSON.parse(l)) };
}

test("a guest runs commands in the host's shell: output, Ctrl-C passed through, resize reaches stty, exit status, recording that replays", async () => {
  const d = await deploy();
  const rec = path.join(d.dir, "recs");
  const { host, code } = await shareShell(d, [...SH, "--record", rec], { env: SH_ENV });
  expect(host.out).toMatch(/sharing a shell as \S+, recorded to .*recs/);
  const guest = spawn(["join", code, "--name", "alice", "--reason", "fix the build"], d.guestEnv, { pty: true });
  await host.waitFor(/wants {3}an interactive SHELL on this machine as user \S+/);
  await approve(host, "alice");
  await guest.waitFor(/connected to a shell on the host \(the host records this session; ~\. disconnects\)/);
  await guest.waitFor(/tsh\$ /);

  // The arithmetic runs on the host: the echo of the typed line cannot satisfy the match.
  guest.write("echo out-$((6*7))\r");
  await guest.waitFor(/out-42/);
  guest.write("stty size\r");
  await guest.waitFor(/\b40 120\r/);

  // Ctrl-C interrupts the remote command (the guest's terminal is raw, so it is a keystroke, not a signal here).
  // The program announces itself only once its SIGINT handler is in place, so the Ctrl-C cannot race
  // the shell starting it (a signal before then is taken by the shell and lost).
  guest.write(
    `sh -c 'trap "echo interrupted-\\$((1+1)); exit 130" INT; echo sleeping-$((1+1)); sleep 30; echo not-interrupted'\r`,
  );
  await guest.waitFor(/sleeping-2/);
  await interrupt(guest);
  guest.write("echo after-$((1+1))\r");
  await guest.waitFor(/after-2/);
  expect(guest.out).not.toContain("\nnot-interrupted");

  // The guest's window changes: SIGWINCH in the guest's PTY becomes a resize of the host's PTY.
  guest.proc.terminal!.resize(100, 30);
  const sizes = () => [...guest.out.matchAll(/\b(\d+ \d+)\r/g)].map((m) => m[1]);
  // The resize (a signal) and the next keystrokes race inside join; ask again until the new size is seen.
  while (sizes().at(-1) !== "30 100") {
    const n = sizes().length;
    guest.write("stty size\r");
    await guest.waitFor(new RegExp(`(\\b\\d+ \\d+\\r[\\s\\S]*){${n + 1}}`));
  }

  guest.write("exit 3\r");
  expect(await guest.exit()).toBe(3);
  expect(guest.out).toContain("remote shell exited with status 3");
  const saved = await host.waitFor(
    /session (s-\S+): terminal closed \(the shell exited with status 3\); recording saved to (\S+\.cast)/,
  );
  const [, sessionId, file] = saved;
  expect(path.dirname(file!)).toBe(rec);
  expect(path.basename(file!)).toBe(`${sessionId}.cast`);
  expect(fs.statSync(file!).mode & 0o777).toBe(0o600);

  // Valid asciicast v2: header with the guest's size, "o" events in time order, the resize as an "r" event.
  const cast = castEvents(file!);
  expect(cast.header).toMatchObject({ version: 2, width: 120, height: 40 });
  expect(typeof cast.header.timestamp).toBe("number");
  let prev = 0;
  for (const [t, kind, data] of cast.events) {
    expect(t).toBeGreaterThanOrEqual(prev);
    expect(["o", "r"]).toContain(kind);
    expect(typeof data).toBe("string");
    prev = t;
  }
  expect(cast.events).toContainEqual([expect.any(Number), "r", "100x30"]);
  const text = cast.events
    .filter((e) => e[1] === "o")
    .map((e) => e[2])
    .join("");
  expect(text).toContain("out-42");
  expect(text).toContain("30 100");

  // The coordinator's audit trail names the session the recording is named after, and says it was a shell.
  const open = d.audit().find((e) => e.event === "session.open" && e.sessionId === sessionId);
  expect(open).toMatchObject({ target: "shell", guest: "alice" });
  await host.waitFor(new RegExp(`session ${sessionId} ended`));
  expect(d.audit().find((e) => e.event === "session.close" && e.sessionId === sessionId)).toBeTruthy();

  // Replay reproduces the text.
  const played = await run(["replay", file!, "--speed", "50", "--max-idle", "10ms"]);
  expect(played.code).toBe(0);
  expect(played.out).toBe(text);

  host.kill("SIGINT");
  expect(await host.exit()).toBe(0);
});

test("the guest's terminal modes come back exactly, after raw mode and after ~. disconnects", async () => {
  const d = await deploy();
  const { host, code } = await shareShell(d, [...SH, "--no-record"], { env: SH_ENV });
  expect(host.out).toContain("not recorded");
  const script = `echo "before=$(stty -g)"; "$TESSERA_BIN" join ${code} --name bob; echo "status=$?"; echo "after=$(stty -g)"`;
  const guest = spawnArgv(["sh", "-c", script], { ...d.guestEnv, TESSERA_BIN: TESSERA.join(" ") }, { pty: true });
  await approve(host, "bob");
  await guest.waitFor(/~\. disconnects\)/);
  await guest.waitFor(/tsh\$ /);
  // Raw mode is on: Ctrl-C reaches the remote shell instead of interrupting join.
  guest.write(`sh -c 'trap "echo interrupted-\\$((1+1)); exit 130" INT; echo sleeping-$((1+1)); sleep 30'\r`);
  await guest.waitFor(/sleeping-2/);
  await interrupt(guest);
  guest.write("echo alive-$((2+3))\r");
  await guest.waitFor(/alive-5/);
  guest.write("\r~.");
  const m = await guest.waitFor(/status=(\d+)\r?\n[\s\S]*after=(\S+)\r?\n/);
  expect(m[1]).toBe("0");
  const before = guest.out.match(/before=(\S+)\r?\n/)![1];
  expect(m[2]).toBe(before!);
  expect(await guest.exit()).toBe(0);
  await host.waitFor(/session s-\S+ ended: the guest ended the session/);
  expect(fs.existsSync(path.join(d.hostEnv.TESSERA_HOME!, "recordings"))).toBe(false);
  host.kill("SIGINT");
  await host.exit();
});

test("read-only: the guest watches the host type; the guest's keystrokes never reach the shell; Ctrl-] on the host ends it", async () => {
  const d = await deploy();
  const marks = fs.mkdtempSync(path.join(d.dir, "marks-"));
  const { host, code } = await shareShell(d, [...SH, "--read-only"], { env: SH_ENV });
  const guest = spawn(["join", code, "--name", "eve"], d.guestEnv, { pty: true });
  await host.waitFor(/as user \S+ \(read-only: you type, they watch\)/);
  await approve(host, "eve");
  await guest.waitFor(/read-only: you watch, the host types/);
  await host.waitFor(/watching session s-\S+ of eve \(read-only/);
  await guest.waitFor(/tsh\$ /);

  const typed = `touch ${marks}/guest-was-here\r`;
  guest.write(typed);
  // The guest's keystrokes have reached the host (and were dropped) before the host types.
  await host.waitFor(/eve is typing, but this session is read-only: their keystrokes are ignored/);
  host.write(`touch ${marks}/host-was-here; echo ro-$((2*5))\r`);
  // The guest sees the host's session live.
  await guest.waitFor(/ro-10/);
  await host.waitFor(/ro-10/);
  host.write("\x1d");
  expect(await guest.exit()).toBe(1);
  expect(guest.err + guest.out).toContain("the host ended the session");
  const ended = await host.waitFor(
    /terminal closed \(the host ended the session; (\d+) bytes of guest input dropped \(read-only\)\)/,
  );
  // Every byte the guest typed reached the host and was dropped there, not filtered by the guest's client.
  expect(Number(ended[1])).toBeGreaterThanOrEqual(typed.length);
  expect(fs.existsSync(path.join(marks, "host-was-here"))).toBe(true);
  expect(fs.existsSync(path.join(marks, "guest-was-here"))).toBe(false);
  // Back at the prompt: the host can mint another code.
  host.write("c\r");
  await host.waitFor(/code: [0-9A-Z]{4}-[0-9A-Z]{4}[\s\S]*code: [0-9A-Z]{4}-[0-9A-Z]{4}/);
  host.kill("SIGINT");
  expect(await host.exit()).toBe(0);
});

test("piped stdin: a script runs remotely, its exit status comes back, and --watch mirrors it on the host", async () => {
  const d = await deploy();
  const { host, code } = await shareShell(d, [...SH, "--watch", "--no-record"], { env: SH_ENV, pty: false });
  const guest = spawn(["join", code, "--name", "ci"], d.guestEnv);
  await host.waitFor(/Allow ci a SHELL/);
  host.write("y\n");
  await guest.waitFor(/connected to a shell on the host/);
  guest.write("echo piped-$((3*4))\nexit 5\n");
  (guest.proc.stdin as import("bun").FileSink).end();
  expect(await guest.exit()).toBe(5);
  expect(guest.out).toContain("piped-12");
  // Piped, stdout carries what the shell printed: not the commands echoed back, not escape codes.
  expect(guest.out).not.toContain("echo piped-");
  expect(guest.out).not.toContain("\x1b");
  expect(guest.out).not.toContain("\r");
  expect(guest.err).toContain("remote shell exited with status 5");
  await host.waitFor(/piped-12/);
  await host.waitFor(/terminal closed \(the shell exited with status 5\)/);
  host.kill("SIGINT");
  await host.exit();
});

test("flags that do not fit together, and a file that is not a recording, are refused clearly", async () => {
  const d = await deploy();
  const bad = await run(["share", "--shell", "--port", "5432"], d.hostEnv, d.dir);
  expect(bad.code).toBe(1);
  expect(bad.err).toContain("leave out --port");
  const ro = await run(["share", "--port", "5432", "--read-only"], d.hostEnv, d.dir);
  expect(ro.err).toContain("go with --shell");
  // replay refuses what is not a recording, saying where and why.
  fs.writeFileSync(
    path.join(d.dir, "bad.cast"),
    '{"version":2,"width":80,"height":24}\n[0.5,"o","ok"]\n[0.1,"o","back in time"]\n',
  );
  const replayBad = await run(["replay", "bad.cast"], {}, d.dir);
  expect(replayBad.code).toBe(1);
  expect(replayBad.err).toContain("error: bad.cast: line 3: event time 0.1 goes backwards");
  const speed = await run(["replay", "bad.cast", "--speed", "0"], {}, d.dir);
  expect(speed.err).toContain("--speed must be a number above 0");
  // A shell is joined with a terminal (or piped stdin), not --stdio: the guest learns the share's kind when
  // the coordinator takes the request, says so and leaves before the host is asked.
  const { host, code } = await shareShell(d, [...SH, "--no-record"], { env: SH_ENV, pty: false });
  const stdio = spawn(["join", code, "--name", "sam", "--stdio"], d.guestEnv);
  expect(await stdio.exit()).toBe(1);
  expect(stdio.err).toContain("this share is a shell: join it without --local, --stdio or `-- COMMAND`");
  expect(stdio.err).toContain("the host was not asked");
  expect(stdio.out).toBe("");
  expect(host.all).not.toContain("Allow sam");
  host.kill("SIGINT");
  await host.exit();
});

test("the coordinator restarts mid-session (SIGKILL): the guest comes back to the same running shell", async () => {
  const d = await deploy(["--resume-grace", "60s"]);
  const { host, code } = await shareShell(d, [...SH, "--no-record"], { env: SH_ENV });
  const guest = spawn(["join", code, "--name", "rita"], d.guestEnv, { pty: true });
  await approve(host, "rita");
  await guest.waitFor(/connected to a shell on the host/);
  guest.write("X=kept; echo set-$((4+4))\r");
  await guest.waitFor(/set-8/);
  await restartCoordinator(d, "SIGKILL");
  // Same shell process: the variable set before the restart is still there.
  await guest.waitFor(/back on the same shell/, 60_000);
  await host.waitFor(/rita is back on the same shell/);
  guest.write("echo got-$X-$((1+1))\r");
  await guest.waitFor(/got-kept-2/);
  // Ctrl-D is passed through too: end of input at the prompt, and sh leaves with the last status.
  guest.write("(exit 4)\r");
  guest.write("\x04");
  expect(await guest.exit()).toBe(4);
  await host.waitFor(/terminal closed \(the shell exited with status 4\)/);
  host.kill("SIGINT");
  await host.exit();
});

test("--watch: the shell takes the smallest attached window, so neither the host nor the guest sees it wrapped", async () => {
  const d = await deploy();
  const { host, code } = await shareShell(d, [...SH, "--watch", "--no-record"], { env: SH_ENV });
  host.proc.terminal!.resize(80, 24);
  const guest = spawn(["join", code, "--name", "wide"], d.guestEnv, { pty: true });
  await approve(host, "wide");
  await host.waitFor(/watching session s-\S+ of wide/);
  await guest.waitFor(/tsh\$ /);
  // The host (80x24) is smaller than the guest (120x40): the PTY is 80x24. The host's SIGWINCH and the
  // guest's first keystrokes race, so ask until the size settles.
  const sizes = () => [...guest.out.matchAll(/\b(\d+ \d+)\r/g)].map((m) => m[1]);
  for (let i = 0; i < 50 && sizes().at(-1) !== "24 80"; i++) {
    const n = sizes().length;
    guest.write("stty size\r");
    await guest.waitFor(new RegExp(`(\\b\\d+ \\d+\\r[\\s\\S]*){${n + 1}}`));
  }
  expect(sizes().at(-1)).toBe("24 80");
  // The host's window grows past the guest's: now the guest's window is the smaller one.
  host.proc.terminal!.resize(150, 50);
  for (let i = 0; i < 50 && sizes().at(-1) !== "40 120"; i++) {
    const n = sizes().length;
    guest.write("stty size\r");
    await guest.waitFor(new RegExp(`(\\b\\d+ \\d+\\r[\\s\\S]*){${n + 1}}`));
  }
  expect(sizes().at(-1)).toBe("40 120");
  guest.write("exit\r");
  await guest.exit();
});
