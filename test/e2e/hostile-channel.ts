// A hostile approved guest for end-to-end tests of the session data channel: it redeems a code over the
// control protocol itself (a real host approves it), holds its own key, and so builds a real verified
// channel on which it puts whatever frames it likes. Beside it, a target that counts what reaches it, and
// the coordinator's gauges. Everything waits on events (one bus, `changes`), never on sleeps.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import type { Socket } from "bun";
import { ControlClient } from "../../src/wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../../src/wire/protocol.ts";
import type { MuxReset } from "../../src/wire/mux-frames.ts";
import { createCsr, exportPrivateKeyPem, generateKeyPair, readCsr } from "../../src/pki/index.ts";
import { startCode } from "../../src/guest/code-check.ts";
import { guestTls } from "../../src/guest/stream-context.ts";
import { connectData, TLS_1_3 } from "../../src/data/data-dial.ts";
import { startVerified } from "../../src/data/verified-stream.ts";
import { MuxChannel } from "../../src/data/mux.ts";
import type { MuxStream } from "../../src/data/mux-stream.ts";
import type { End } from "../../src/data/pipe.ts";
import { ProtocolError } from "../../src/errors.ts";
import type { Deployment, Proc } from "./harness.ts";

const targets: net.Server[] = [];
const clients: ControlClient[] = [];
const sockets: { terminate(): void }[] = [];

/** Something a test opened by hand (a raw data connection), closed by closeHostile. */
export function track(sock: { terminate(): void }): void {
  sockets.push(sock);
}

/** Closes every socket, control connection and target these helpers opened (the tests' afterAll). */
export function closeHostile(): void {
  for (const s of sockets.splice(0)) s.terminate();
  for (const c of clients.splice(0)) c.close();
  for (const t of targets.splice(0)) t.close();
}

/** Resolves waiters whose condition holds each time something changes: tests wait on events, not sleeps. */
export class Changes {
  private readonly waiters = new Set<() => void>();
  changed(): void {
    for (const w of [...this.waiters]) w();
  }
  until(cond: () => boolean, what: () => string, timeoutMs = 30_000): Promise<void> {
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
        reject(new Error(`${what()} did not happen`));
      }, timeoutMs);
      this.waiters.add(check);
    });
  }
}
/** One bus for the target, the guest's frames and its channel: a condition may span them. */
export const changes = new Changes();

/** A target that echoes, and counts the connections it accepted, those it still holds, and every byte it got. */
export async function countingTarget() {
  const open = new Set<net.Socket>();
  const got: Buffer[] = [];
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    open.add(s);
    s.on("data", (b: Buffer) => {
      got.push(b);
      s.write(b);
    });
    s.on("end", () => s.end());
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
    /** Every byte any connection brought the target. */
    received: () => Buffer.concat(got),
    /** Resolves once `cond` holds (checked on every accept and close); rejects after a bounded wait saying what it saw. */
    until: (cond: () => boolean, what: string) =>
      changes.until(cond, () => `target: ${what} (accepted ${accepted}, open ${open.size})`),
  };
}

/** A stream of the hostile guest's channel, seen from the guest: what came back, and how it ended. */
export interface GuestStream {
  id: number;
  s: MuxStream;
  got: () => Buffer;
  /** Undefined while open; then the reset (if any) it ended with. */
  ended: { reset?: { reason: MuxReset; remote: boolean } } | undefined;
}

/** A verified channel as a hostile guest holds it: its MuxChannel (opener), streams opened at will. */
export interface GuestChannel {
  id: string;
  mux: MuxChannel;
  stream(id: number): GuestStream;
}

type Answer = FrameOf<ServerFrame, "stream"> | FrameOf<ServerFrame, "error">;

/**
 * A guest that redeems the code itself over the control protocol (a real approval by the host), then speaks
 * frames at will: it holds its own key, so it can build a real channel and put on it whatever it likes.
 */
export async function hostileGuest(d: Deployment, approver: Proc, code: string, name: string) {
  const caPem = fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8");
  const c = await ControlClient.dial({ address: d.address, caPem, version: "test" });
  clients.push(c);
  const keys = await generateKeyPair();
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  const csr = await createCsr({ keys, commonName: name });
  const run = startCode(code, { spki: (await readCsr(csr)).spki, name, reason: "load test" });
  c.send({ t: "redeem", ...run.redeem, csr, name, reason: "load test" });
  // The host's answer is waited for from before the confirmation goes out (it may follow "confirmed" at once).
  const { answer } = await run.confirm(c, await c.next("pending"));
  await approver.waitFor(new RegExp(`Allow ${name} `));
  approver.write("y\n");
  const approved = await answer;
  if (approved.t !== "approved") throw new Error(`the host's answer was ${approved.t}: ${approved.reason}`);
  const { sessionId, hostSpki } = approved;
  const tls = guestTls(keyPem, approved.cert, caPem, TLS_1_3);
  const answers = new Map<string, Answer>();
  const refused: FrameOf<ServerFrame, "refused">[] = [];
  let closed: string | undefined;
  let refs = 0;
  c.on("stream", (f) => {
    answers.set(f.ref, f);
    changes.changed();
  });
  c.on("error", (f) => {
    answers.set(f.ref ?? "", f);
    changes.changed();
  });
  c.on("refused", (f) => {
    refused.push(f);
    changes.changed();
  });
  c.on("closed", (f) => {
    closed = f.reason;
    changes.changed();
  });
  const until = (cond: () => boolean, what: string) => changes.until(cond, () => `guest: ${what}`);

  /** The answer (a channel's tokens or a refusal) to the open with this ref. */
  async function answerTo(ref: string): Promise<Answer> {
    await until(() => answers.has(ref) || closed !== undefined, `an answer to ${ref}`);
    if (!answers.has(ref)) throw new Error(`session closed (${closed}) before "${ref}" was answered`);
    return answers.get(ref)!;
  }

  /** Asks for a data channel; returns the ref its answer will name. */
  function askChannel(): string {
    const ref = `k${++refs}`;
    c.send({ t: "open", sessionId, ref, channel: true });
    return ref;
  }

  /** Dials the data port with the channel's token and runs the end-to-end TLS with the host's key pinned. */
  async function connectChannel(st: FrameOf<ServerFrame, "stream">): Promise<GuestChannel> {
    const raw = await connectData(c.peer);
    track(raw);
    const inner = await new Promise<Socket<End>>((resolve, reject) => {
      const conn = startVerified(raw, {
        token: st.token,
        tls,
        isServer: false,
        peerRole: "host",
        peerSpki: hostSpki,
        checked: {},
        onVerified: resolve,
        onRejected: (why) => reject(new Error(why)),
        onClose: () => reject(new Error("the channel closed before its TLS was verified")),
      });
      track(conn.inner);
    });
    // As channel-link.ts up() does: the verified socket's bytes are the channel's from now on.
    const mux = new MuxChannel(
      { write: (b) => inner.write(b), close: () => inner.end() },
      { role: "opener", onClose: () => changes.changed() },
    );
    const early = inner.data.early;
    inner.data.early = [];
    inner.data.earlyBytes = 0;
    inner.data.sink = {
      feed: (b) => mux.feed(b),
      drained: () => mux.drained(),
      ended: () => {
        mux.transportClosed(new ProtocolError("the host closed the data channel", "disconnected"));
        inner.end();
      },
      gone: () => mux.transportClosed(),
    };
    for (const b of early) mux.feed(b);
    return {
      id: st.streamId,
      mux,
      stream(id: number): GuestStream {
        const s = mux.open(id);
        const chunks: Buffer[] = [];
        const gs: GuestStream = { id, s, got: () => Buffer.concat(chunks), ended: undefined };
        s.attach({
          data: (b) => {
            chunks.push(b);
            s.consumed(b.length);
            changes.changed();
          },
          end: () => changes.changed(),
          drain: () => {},
          close: (reset) => {
            gs.ended = { reset };
            changes.changed();
          },
        });
        return gs;
      },
    };
  }

  return {
    sessionId,
    refused,
    get closed() {
      return closed;
    },
    send: (f: Parameters<ControlClient["send"]>[0]) => c.send(f),
    askChannel,
    answerTo,
    /** A channel asked for and connected: the coordinator's answer, then the verified TLS. */
    async channel(): Promise<GuestChannel> {
      const a = await answerTo(askChannel());
      if (a.t !== "stream") throw new Error(`channel refused: ${a.message}`);
      return connectChannel(a);
    },
    /** Tells the coordinator of streams opened on channel `via` (as the real guest does, one frame a turn). */
    openOn(via: string, ids: number[]) {
      c.send({ t: "open", sessionId, ref: `m${++refs}`, via, mux: ids });
    },
    until,
  };
}

export async function gauge(d: Deployment, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  if (!m) throw new Error(`/metrics has no ${name}`);
  return Number(m[1]);
}

/** Polls the coordinator's gauges (a scrape is its only way to tell) until they read `want`. */
export async function gaugesReach(d: Deployment, want: Record<string, number>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const seen: Record<string, number> = {};
    for (const k of Object.keys(want)) seen[k] = await gauge(d, k);
    if (Object.keys(want).every((k) => seen[k] === want[k])) return;
    if (Date.now() > deadline) throw new Error(`gauges ${JSON.stringify(seen)}, expected ${JSON.stringify(want)}`);
    await Bun.sleep(50);
  }
}

export type HostileGuest = Awaited<ReturnType<typeof hostileGuest>>;
export type CountingTarget = Awaited<ReturnType<typeof countingTarget>>;
