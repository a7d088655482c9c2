// The flood's legitimate side: a deployment (CA, coordinator, enrolled host, linked guest) of a compiled
// binary on loopback, and one full "host shares, guest joins, streams flow" round, bounded in time.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { run, spawn, type Proc } from "../bench/procs.ts";

export interface Deployment {
  bin: string;
  dir: string;
  coordinator: Proc;
  port: number;
  httpPort: number;
  ca: string;
  hostEnv: Record<string, string>;
  guestEnv: Record<string, string>;
}

export async function deploy(bin: string, dir: string): Promise<Deployment> {
  await run("tessera ca", [bin, "ca", "--coordinator-name", "localhost", "--dir", "pki"], { cwd: dir });
  const coordinator = spawn(
    "coordinator",
    [
      bin,
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
    ],
    { cwd: dir },
  );
  const m = await coordinator.waitFor(/listening on 127\.0\.0\.1:(\d+) \(https? 127\.0\.0\.1:(\d+)\)/);
  const port = Number(m[1]);
  const hostEnv = { TESSERA_HOME: path.join(dir, "host") };
  const guestEnv = { TESSERA_HOME: path.join(dir, "guest") };
  const token = fs.readFileSync(path.join(dir, "pki/enroll-token"), "utf8").trim();
  await run("tessera link (host)", [bin, "link", `localhost:${port}`, "--token", token, "--name", "flood-host"], {
    cwd: dir,
    env: hostEnv,
  });
  await run("tessera link (guest)", [bin, "link", `localhost:${port}`, "--ca-file", "pki/ca.crt"], {
    cwd: dir,
    env: guestEnv,
  });
  return {
    bin,
    dir,
    coordinator,
    port,
    httpPort: Number(m[2]),
    ca: fs.readFileSync(path.join(dir, "pki/ca.crt"), "utf8"),
    hostEnv,
    guestEnv,
  };
}

export async function healthz(d: Deployment): Promise<string> {
  try {
    const r = await fetch(`http://127.0.0.1:${d.httpPort}/healthz`, { signal: AbortSignal.timeout(5_000) });
    return `${r.status} ${(await r.text()).trim()}`;
  } catch (err) {
    return `no answer (${(err as Error).message})`;
  }
}

/** The coordinator's /metrics samples whose name starts with `prefix` (none from a build without them). */
export async function metrics(d: Deployment, prefix: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  try {
    const text = await (
      await fetch(`http://127.0.0.1:${d.httpPort}/metrics`, { signal: AbortSignal.timeout(5_000) })
    ).text();
    for (const line of text.split("\n"))
      if (line.startsWith(prefix))
        out[line.slice(0, line.lastIndexOf(" "))] = Number(line.slice(line.lastIndexOf(" ") + 1));
  } catch {}
  return out;
}

/** An echo server for the shared port; closed with the returned function. */
export async function echo(): Promise<{ port: number; close: () => void }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on("error", () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, close: () => server.close() };
}

function roundTrip(port: number, payload: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    const s = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true }, () => s.end(payload));
    const timer = setTimeout(() => s.destroy(), 15_000);
    s.on("data", (d: Buffer) => got.push(d));
    s.on("end", () => resolve(Buffer.concat(got).equals(payload)));
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

export interface LegitResult {
  joined: boolean;
  joinMs?: number;
  streamsOk: number;
  streams: number;
  error?: string;
}

/** `share --port` (a fresh code), `join` with it, the host says y, then `streams` parallel round trips. */
export async function legitRound(d: Deployment, targetPort: number, name: string, streams = 20): Promise<LegitResult> {
  const t0 = Date.now();
  const procs: Proc[] = [];
  try {
    const host = spawn(`share (${name})`, [d.bin, "share", "--port", String(targetPort)], {
      cwd: d.dir,
      env: d.hostEnv,
    });
    procs.push(host);
    const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})$/m))[1]!;
    const guest = spawn(
      `join (${name})`,
      [d.bin, "join", code, "--name", name, "--reason", "flood check", "--local", "127.0.0.1:0"],
      { cwd: d.dir, env: d.guestEnv },
    );
    procs.push(guest);
    await host.waitFor(new RegExp(`Allow ${name} .*\\[y/N\\]`));
    host.write("y\n");
    const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
    const joinMs = Date.now() - t0;
    const payload = Buffer.alloc(64 * 1024, name);
    const ok = await Promise.all(Array.from({ length: streams }, () => roundTrip(local, payload)));
    return { joined: true, joinMs, streamsOk: ok.filter(Boolean).length, streams };
  } catch (err) {
    return { joined: false, streamsOk: 0, streams, error: (err as Error).message.split("\n")[0] };
  } finally {
    for (const p of procs.reverse()) await p.stop();
  }
}
