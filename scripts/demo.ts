// A local end-to-end demo on loopback with the compiled binary: CA, coordinator, a host sharing a
// small HTTP server, a guest joining, the host's "y" typed at its real prompt, a request through the tunnel.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const BIN = path.resolve(import.meta.dir, "../dist/tessera");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-demo-"));
const procs: import("bun").Subprocess[] = [];
// Bold only on a terminal: a pipe or a log file gets plain text, no escape codes.
const bold = !!process.stdout.isTTY && !process.env.NO_COLOR && process.env.TERM !== "dumb";
const say = (s: string) => console.log(bold ? `\x1b[1m» ${s}\x1b[0m` : `» ${s}`);

function start(args: string[], home?: string) {
  const p = Bun.spawn([BIN, ...args], {
    cwd: dir,
    // The demo's own output may be a pipe: the children write plain text too.
    env: {
      ...process.env,
      ...(bold ? {} : { NO_COLOR: "1" }),
      ...(home ? { TESSERA_HOME: path.join(dir, home) } : {}),
    },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  procs.push(p);
  let text = "";
  const dec = new TextDecoder();
  const tag = home ?? args[0];
  for (const s of [p.stdout, p.stderr] as ReadableStream<Uint8Array>[]) {
    void (async () => {
      for await (const c of s) {
        const t = dec.decode(c);
        text += t;
        for (const line of t.split("\n")) if (line.trim()) console.log(`  [${tag}] ${line}`);
      }
    })();
  }
  return {
    p,
    async waitFor(re: RegExp): Promise<RegExpMatchArray> {
      for (let i = 0; i < 300; i++) {
        const m = text.match(re);
        if (m) return m;
        if (p.exitCode !== null) break;
        await Bun.sleep(50);
      }
      throw new Error(`${tag}: never printed ${re}`);
    },
  };
}

async function runOk(args: string[], home?: string) {
  const s = start(args, home);
  if ((await s.p.exited) !== 0) throw new Error(`tessera ${args[0]} failed`);
}

const target = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch: () => new Response("hello from the host's dev server\n"),
});
try {
  say(`working in ${dir}; the host's dev server listens on 127.0.0.1:${target.port}`);
  say("operator: tessera ca --coordinator-name localhost --dir pki");
  await runOk(["ca", "--coordinator-name", "localhost", "--dir", "pki"]);
  say("operator: tessera coordinator --certs pki --listen 127.0.0.1:0 ...");
  const coord = start([
    "coordinator",
    "--certs",
    "pki",
    "--listen",
    "127.0.0.1:0",
    "--http",
    "127.0.0.1:0",
    "--audit",
    "audit.jsonl",
    "--db",
    "tessera.db",
  ]);
  const port = (await coord.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1];
  say("host: tessera link --token (enrols once)");
  await runOk(
    ["link", `localhost:${port}`, "--token", fs.readFileSync(path.join(dir, "pki/enroll-token"), "utf8").trim()],
    "host",
  );
  say("guest: tessera link --ca-file pki/ca.crt (trusts the CA once)");
  await runOk(["link", `localhost:${port}`, "--ca-file", "pki/ca.crt"], "guest");
  say(`host: tessera share --port ${target.port}`);
  const host = start(["share", "--port", String(target.port)], "host");
  const code = (await host.waitFor(/code: (\S+)/))[1]!;
  say(`guest: tessera join ${code} --reason "look at the dev server"`);
  const guest = start(
    ["join", code, "--reason", "look at the dev server", "--name", "demo-guest", "--local", "127.0.0.1:0"],
    "guest",
  );
  await host.waitFor(/\[y\/N\]/);
  say("host reads the prompt above and types: y");
  (host.p.stdin as import("bun").FileSink).write("y\n");
  (host.p.stdin as import("bun").FileSink).flush();
  const local = (await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1];
  say(`guest: curl http://127.0.0.1:${local}/`);
  console.log(`  ${(await (await fetch(`http://127.0.0.1:${local}/`)).text()).trim()}`);
  say("guest presses Ctrl-C; the session ends for both sides");
  guest.p.kill("SIGINT");
  await guest.p.exited;
  await host.waitFor(/ended: the guest ended the session/);
  // The session's close line follows the agent's final byte counts for its streams by a moment.
  const auditFile = path.join(dir, "audit.jsonl");
  for (let i = 0; i < 100 && !fs.readFileSync(auditFile, "utf8").includes('"session.close"'); i++) await Bun.sleep(50);
  say("host presses Ctrl-C, then the operator stops the coordinator: a clean stop signs the log's last line");
  host.p.kill("SIGINT");
  await host.p.exited;
  coord.p.kill("SIGTERM");
  if ((await coord.p.exited) !== 0) throw new Error("the coordinator did not stop cleanly");
  say("the audit log (one JSON line an event, each chained to the previous line's hash):");
  for (const line of fs.readFileSync(path.join(dir, "audit.jsonl"), "utf8").trim().split("\n")) {
    const e = JSON.parse(line);
    console.log(
      `  #${e.seq} ${e.event}${e.guest ? ` guest=${e.guest}` : ""}${e.bytesUp !== undefined ? ` up=${e.bytesUp} down=${e.bytesDown}` : ""}`,
    );
  }
  say("tessera audit verify audit.jsonl --cert pki/coordinator.crt");
  const verify = Bun.spawnSync([BIN, "audit", "verify", "audit.jsonl", "--cert", "pki/coordinator.crt"], { cwd: dir });
  for (const line of `${verify.stdout}${verify.stderr}`.trim().split("\n")) console.log(`  ${line}`);
  if (verify.exitCode !== 0) throw new Error("the audit chain did not verify");
  // Stopped cleanly, the log is signed to its last line: no unsigned tail to warn about.
  if (/warning/.test(`${verify.stdout}${verify.stderr}`)) throw new Error("the audit log has an unsigned tail");
  say("demo complete");
} finally {
  for (const p of procs) p.kill("SIGTERM");
  await Promise.all(procs.map((p) => p.exited));
  target.stop(true);
  fs.rmSync(dir, { recursive: true, force: true });
}
