// The host's agent: keeps a control connection to the coordinator, and for each approved stream
// dials the coordinator's data plane, terminates the guest's end-to-end TLS and pipes to the target.
import net from "node:net";
import tls from "node:tls";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { ControlClient, type DialOptions } from "./client.ts";
import { dialData, peerKeyIs } from "./data-dial.ts";
import type { TargetPolicy } from "./policy.ts";
import type { FrameOf, ServerFrame } from "./protocol.ts";

const log = logger("agent");

export interface AgentOptions extends Required<Pick<DialOptions, "address" | "caPem" | "keyPem" | "certPem" | "version">> {
  shareId: string;
  policy: TargetPolicy;
  /** Also approve requests on this connection (the embedded agent of `tessera share --port`). */
  approver: boolean;
  /** Keep reconnecting (standalone agent) rather than fail on the first disconnect. */
  reconnect: boolean;
}

interface AgentSession {
  frame: FrameOf<ServerFrame, "session">;
  streams: Set<net.Socket>;
  /** The guest certificate (DER) already checked against the approved key: later streams compare bytes, not parse. */
  checked?: Buffer;
}

export interface AgentEvents {
  onConnected?(client: ControlClient): void;
  onDisconnected?(err: Error | undefined, retryInMs: number | undefined): void;
  onStream?(sessionId: string, error?: string): void;
}

export class Agent {
  private client: ControlClient | undefined;
  private readonly sessions = new Map<string, AgentSession>();
  private readonly ctx: tls.SecureContext;
  private stopped = false;
  private attempt = 0;

  constructor(private readonly o: AgentOptions, private readonly events: AgentEvents = {}) {
    this.ctx = tls.createSecureContext({ key: o.keyPem, cert: o.certPem, ca: o.caPem, minVersion: "TLSv1.3" });
  }

  /** Connects and registers; resolves once the share is live. Rejects on refusal (id taken, not enrolled). */
  async start(): Promise<ControlClient> {
    const c = await ControlClient.dial(this.o);
    c.send({ t: "register", shareId: this.o.shareId, targets: this.o.policy.targets, approver: this.o.approver });
    await c.next("registered").catch((err) => {
      c.close();
      throw err;
    });
    this.attempt = 0;
    this.client = c;
    c.on("session", (f) => this.sessions.set(f.sessionId, { frame: f, streams: new Set() }));
    c.on("incoming", (f) => void this.incoming(f));
    c.on("closed", (f) => this.endSession(f.sessionId));
    c.onClose((err) => this.lost(err));
    this.events.onConnected?.(c);
    return c;
  }

  stop(): void {
    this.stopped = true;
    this.client?.close();
    for (const id of [...this.sessions.keys()]) this.endSession(id);
  }

  private lost(err?: Error): void {
    for (const id of [...this.sessions.keys()]) this.endSession(id);
    if (this.stopped || !this.o.reconnect) {
      this.events.onDisconnected?.(err, undefined);
      return;
    }
    // Exponential backoff with full jitter, capped, so a restarted coordinator isn't stampeded.
    const delay = Math.random() * Math.min(30_000, 500 * 2 ** this.attempt++);
    this.events.onDisconnected?.(err, delay);
    setTimeout(() => {
      if (this.stopped) return;
      this.start().catch((e) => {
        log.warn(errorMessage(e));
        this.lost(e);
      });
    }, delay);
  }

  private endSession(id: string): void {
    const s = this.sessions.get(id);
    if (!s) return;
    this.sessions.delete(id);
    for (const sock of s.streams) sock.destroy();
  }

  private async incoming(f: FrameOf<ServerFrame, "incoming">): Promise<void> {
    const s = this.sessions.get(f.sessionId);
    if (!s) return;
    let dest: { host: string; port: number };
    try {
      // The coordinator is not trusted to pick targets: the agent's own list decides.
      dest = await this.o.policy.resolve(s.frame.target);
    } catch (err) {
      log.warn(`refused stream to ${s.frame.target}: ${errorMessage(err)}`);
      this.events.onStream?.(f.sessionId, errorMessage(err));
      return;
    }
    const client = this.client;
    if (!client) return;
    const raw = dialData(client.peer, f.token, () => this.secure(raw, s, f, dest));
    raw.on("error", () => raw.destroy());
    s.streams.add(raw);
    raw.on("close", () => s.streams.delete(raw));
  }

  private secure(raw: net.Socket, s: AgentSession, f: FrameOf<ServerFrame, "incoming">, dest: { host: string; port: number }): void {
    const inner = new tls.TLSSocket(raw, {
      isServer: true, secureContext: this.ctx, requestCert: true, rejectUnauthorized: true,
      // @ts-expect-error node's TLSSocket accepts allowHalfOpen so a half-close reaches the target.
      allowHalfOpen: true,
    });
    s.streams.add(inner);
    const cleanup = () => s.streams.delete(inner);
    inner.on("close", cleanup);
    inner.on("error", (err) => {
      log.debug(`stream ${f.streamId}: ${err.message}`);
      inner.destroy();
    });
    inner.once("secure", () => {
      // Only the key the host approved may use this session, whatever the CA signed.
      if (!peerKeyIs(inner, s.frame.guest.spki, s)) {
        log.warn(`stream ${f.streamId}: guest key does not match the approved key; dropped`);
        inner.destroy();
        return;
      }
      const up = net.connect({ ...dest, allowHalfOpen: true });
      up.setNoDelay(true);
      up.on("error", (err) => {
        this.events.onStream?.(f.sessionId, `cannot reach ${s.frame.target}: ${err.message}`);
        inner.destroy();
      });
      s.streams.add(up);
      up.on("close", () => s.streams.delete(up));
      // A clean close in both directions lets pending bytes drain; anything else cuts the pair.
      up.on("close", () => { if (!cleanlyDone(up)) inner.destroy(); });
      inner.on("close", () => { if (!cleanlyDone(inner)) up.destroy(); });
      inner.pipe(up);
      up.pipe(inner);
      this.events.onStream?.(f.sessionId);
    });
  }
}

export function cleanlyDone(sock: net.Socket): boolean {
  return sock.readableEnded && sock.writableFinished;
}
