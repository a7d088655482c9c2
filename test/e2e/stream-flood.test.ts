// A hostile approved guest against the host's target: `open` frames that never become streams, and a
// data connection that never starts its TLS, must not pile up connections on the target, must hit the
// pending cap, and must not keep the session from idling out.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { ControlClient } from "../../src/wire/control-client.ts";
import { DATA_MAGIC, type FrameOf, type ServerFrame } from "../../src/wire/protocol.ts";
import { createCsr, generateKeyPair, readCsr } from "../../src/pki/index.ts";
import { startCode } from "../../src/guest/code-check.ts";
import { auditEvents, deploy, killAll, share, spawn, type Deployment, type Proc } from "./harness.ts";

setDefaultTimeout(90_000);
const targets: net.Server[] = [];
const clients: ControlClient[] = [];
afterAll(async () => {
  for (const c of clients) c.close();
  await killAll();
  for (const t of targets) t.close();
});

/** Resolves waiters whose condition holds each time something changes: tests wait on events, not sleeps. */
class Changes {
  private readonly waiters = new Set<() => void>();
  changed(): void {
    for (const w of [...this.waiters]) w();
  }
  until(cond: () => boolean, onTimeout: () => Error, timeoutMs = 30_000): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!cond()) return;
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(onTimeout());
      }, timeoutMs);
      this.waiters.add(check);
    });
  }
}

/** A target that counts the connections it accepted and still holds. */
async function countingTarget() {
  const open = new Set<net.Socket>();
  const changes = new Changes();
  let accepted = 0;
  const server = net.createServer((s) => {
    accepted++;
    open.add(s);
    s.on("error", () => {});
    s.on("close", () => {
      open.delete(s);
      changes.changed();
    });
    changes.changed();
  });
  targets.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    get accepted() {
      return accepted;
    },
    get open() {
      return open.size;
    },
    /** Resolves once `cond` holds (checked on every accept and close); rejects after a bounded wait saying what it saw. */
    until: (cond: () => boolean, what: string) =>
      changes.until(cond, () => new Error(`target: ${what} not reached (accepted ${accepted}, open ${open.size})`)),
  };
}

type Answer = FrameOf<ServerFrame, "stream"> | FrameOf<ServerFrame, "error">;

/** A guest that redeems the code itself over the control protocol (a real approval by the host), then speaks frames at will. */
async function hostileGuest(d: Deployment, approver: Proc, code: string, name: string) {
  const c = await ControlClient.dial({
    address: d.address,
    caPem: fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8"),
    version: "test",
  });
  clients.push(c);
  const csr = await createCsr({ keys: await generateKeyPair(), commonName: name });
  const run = startCode(code, { spki: (await readCsr(csr)).spki, name, reason: "load test" });
  c.send({ t: "redeem", ...run.redeem, csr, name, reason: "load test" });
  // The host's answer is waited for from before the confirmation goes out (it may follow "confirmed" at once).
  const { answer } = await run.confirm(c, await c.next("pending"));
  await approver.waitFor(new RegExp(`Allow ${name} `));
  approver.write("y\n");
  const approved = await answer;
  if (approved.t !== "approved") throw new Error(`the host's answer was ${approved.t}: ${approved.reason}`);
  const { sessionId } = approved;
  const answers = new Map<string, Answer>();
  const changes = new Changes();
  let closed: string | undefined;
  c.on("stream", (f) => {
    answers.set(f.ref, f);
    changes.changed();
  });
  c.on("error", (f) => {
    answers.set(f.ref ?? "", f);
    changes.changed();
  });
  c.on("closed", (f) => {
    closed = f.reason;
    changes.changed();
  });
  const until = (cond: () => boolean, what: string) =>
    changes.until(cond, () => new Error(`guest: ${what} did not happen`));
  return {
    sessionId,
    answers,
    get closed() {
      return closed;
    },
    open(ref: string) {
      c.send({ t: "open", sessionId, ref });
    },
    /** The answer (a stream token or a refusal) to the open with this ref. */
    async answer(ref: string): Promise<Answer> {
      await until(() => answers.has(ref) || closed !== undefined, `an answer to ${ref}`);
      if (!answers.has(ref)) throw new Error(`session closed (${closed}) before "${ref}" was answered`);
      return answers.get(ref)!;
    },
    sessionEnd: () => until(() => closed !== undefined, "the session's end").then(() => closed!),
  };
}

async function pendingGauge(d: Deployment): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  return Number(/^tessera_streams_pending (\d+)$/m.exec(text)?.[1]);
}

test("opens never picked up: refused past the pending cap, and every pre-dialled target connection closes when its token lapses", async () => {
  const d = await deploy(["--stream-token-ttl", "1s", "--max-pending-streams", "8"]);
  const target = await countingTarget();
  const { host, code } = await share(d, target.port);
  // `share` checks once at start that something listens on its target: that connection is not a stream's.
  await target.until(() => target.accepted >= 1 && target.open === 0, "the share's start-up check");
  const startup = target.accepted;
  const g = await hostileGuest(d, host, code, "mallory");
  const refs = Array.from({ length: 40 }, (_, i) => `o${i}`);
  for (const r of refs) g.open(r);
  const answers = await Promise.all(refs.map((r) => g.answer(r)));
  const streams = answers.filter((a) => a.t === "stream");
  const refused = answers.filter((a): a is FrameOf<ServerFrame, "error"> => a.t === "error");
  expect(streams).toHaveLength(8);
  expect(refused.map((e) => e.code)).toEqual(Array(32).fill("limit"));
  expect(refused[0]!.message).toContain("waiting to connect");
  // The agent dials the target ahead of the guest's TLS, once per offered stream...
  await target.until(() => target.accepted >= startup + 8, "8 pre-dialled connections");
  // ...and each closes when its stream lapses unconnected, while the session itself lives on.
  await target.until(() => target.open === 0, "no target connection left open");
  const lapsed = await auditEvents(d, "stream.close", 8);
  expect(lapsed.every((e) => e.reason === "stream was not picked up in time")).toBe(true);
  expect(g.closed).toBeUndefined();
  expect(target.accepted).toBe(startup + 8);
  expect(await pendingGauge(d)).toBe(0);
  // Lapsed opens no longer count: the guest may open again.
  g.open("again");
  expect((await g.answer("again")).t).toBe("stream");
  host.kill("SIGINT");
  await host.exit();
});

test("opens are not activity: a session whose guest only sends opens still idles out", async () => {
  const d = await deploy(["--stream-token-ttl", "500ms", "--idle-timeout", "2s"]);
  const target = await countingTarget();
  const { host, code } = await share(d, target.port);
  const g = await hostileGuest(d, host, code, "idler");
  // One open at a time, each left to lapse on the coordinator: on a session that counted opens (or their
  // lapsing) as activity this would go on for ever.
  for (let i = 0; g.closed === undefined && i < 60; i++) {
    g.open(`i${i}`);
    const a = await g.answer(`i${i}`).catch(() => undefined);
    if (a?.t !== "stream") break;
    await auditEvents(d, "stream.close", i + 1);
  }
  // 60 lapses of 500 ms each span well past the 2 s idle timeout: the session must have ended by now.
  expect(g.closed).toBe("idle for 2s");
  expect((await auditEvents(d, "session.idle"))[0]!.sessionId).toBe(g.sessionId);
  await target.until(() => target.open === 0, "no target connection left open");
  host.kill("SIGINT");
  await host.exit();
});

test("a data connection that never starts its TLS: the agent drops it and its target connection at its own deadline", async () => {
  const d = await deploy();
  const target = await countingTarget();
  const agent = spawn(
    ["agent", "--share-id", "db", "--allow", `127.0.0.1:${target.port}`, "--stream-setup-timeout", "1s"],
    d.hostEnv,
  );
  await agent.waitFor(/serving share db/);
  const approver = spawn(["share", "--share-id", "db"], d.hostEnv);
  const code = (await approver.waitFor(/code: ([0-9A-Z]{4}-[0-9A-Z]{4})/))[1]!;
  const g = await hostileGuest(d, approver, code, "stall");
  g.open("s1");
  const st = await g.answer("s1");
  if (st.t !== "stream") throw new Error(`open refused: ${st.message}`);
  // The token is presented, so the coordinator pairs the stream; then not one byte of TLS follows.
  const data = net.connect({ host: "127.0.0.1", port: d.port });
  data.on("error", () => {});
  const dataClosed = new Promise<void>((r) => data.on("close", () => r()));
  data.write(Buffer.concat([DATA_MAGIC, Buffer.from(st.token, "base64url")]));
  await target.until(() => target.accepted === 1, "the pre-dialled connection");
  await target.until(() => target.open === 0, "the target connection dropped at the agent's deadline");
  await dataClosed;
  expect(g.closed).toBeUndefined();
  for (const p of [approver, agent]) p.kill("SIGINT");
  await Promise.all([approver.exit(), agent.exit()]);
});
