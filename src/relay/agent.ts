// The host's agent: keeps a control connection to the coordinator, and for each approved stream
// dials the coordinator's data plane, terminates the guest's end-to-end TLS and pipes to the target.
import net from "node:net";
import tls from "node:tls";
import { RefusedError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { derToPem, spkiFingerprint } from "../pki/index.ts";
import { ControlClient, type DialOptions } from "./client.ts";
import { backoff } from "./backoff.ts";
import { dialData } from "./data-dial.ts";
import type { TargetPolicy } from "./policy.ts";
import { SHELL_TARGET, type FrameOf, type ServerFrame } from "./protocol.ts";

const log = logger("agent");

export interface AgentOptions extends Required<Pick<DialOptions, "address" | "caPem" | "keyPem" | "certPem" | "version">> {
  shareId: string;
  policy: TargetPolicy;
  /** Also approve requests on this connection (the embedded agent of `tessera share --port`). */
  approver: boolean;
  /** Keep reconnecting (with backoff) rather than fail on the first disconnect. */
  reconnect: boolean;
  /** Serves sessions whose target is SHELL_TARGET (`share --shell`); without it such streams are refused. */
  shell?: StreamService;
}

/** Something on the host that takes a verified end-to-end stream directly instead of a TCP target. */
export interface StreamService {
  serve(stream: tls.TLSSocket, session: { sessionId: string; guest: { name: string } }): void;
  /** The coordinator closed the session (its streams merely dropping does not mean that). */
  closed?(sessionId: string, reason: string): void;
}

interface AgentSession {
  frame: FrameOf<ServerFrame, "session">;
  streams: Set<net.Socket>;
}

export interface AgentEvents {
  onConnected?(client: ControlClient): void;
  /** retryInMs is undefined when the agent gives up (stopped, or refused for good). */
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
    const targets = [...this.o.policy.targets, ...(this.o.shell ? [SHELL_TARGET] : [])];
    c.send({ t: "register", shareId: this.o.shareId, targets, approver: this.o.approver });
    await c.next("registered").catch((err) => {
      c.close();
      throw err;
    });
    this.attempt = 0;
    this.client = c;
    c.on("session", (f) => this.sessions.set(f.sessionId, { frame: f, streams: new Set() }));
    c.on("incoming", (f) => void this.incoming(f));
    c.on("closed", (f) => {
      this.o.shell?.closed?.(f.sessionId, f.reason);
      this.endSession(f.sessionId);
    });
    c.onClose((err) => this.lost(err));
    this.events.onConnected?.(c);
    return c;
  }

  /** Stops on purpose: the coordinator closes the share and its sessions (a lost connection would not). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const c = this.client;
    if (c && !c.ch.closed) {
      c.send({ t: "leave", shareId: this.o.shareId });
      await Promise.race([c.next("left").catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
      c.close();
    }
    for (const id of [...this.sessions.keys()]) this.endSession(id);
  }

  private lost(err?: Error): void {
    for (const id of [...this.sessions.keys()]) this.endSession(id);
    // Refusals that no retry can fix: someone else's share id, or a host the coordinator does not know.
    const fatal = err instanceof RefusedError && ["share_taken", "not_host", "version"].includes(err.code);
    if (this.stopped || !this.o.reconnect || fatal) {
      this.events.onDisconnected?.(err, undefined);
      return;
    }
    const delay = backoff(this.attempt++);
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
    let verified: (inner: tls.TLSSocket) => void;
    if (s.frame.target === SHELL_TARGET) {
      const shell = this.o.shell;
      // The agent's own options decide whether a shell is offered, whatever the coordinator asks.
      if (!shell) return this.events.onStream?.(f.sessionId, "refused a shell stream: this agent does not share a shell");
      verified = (inner) => shell.serve(inner, s.frame);
    } else {
      let dest: { host: string; port: number };
      try {
        // The coordinator is not trusted to pick targets: the agent's own list decides.
        dest = await this.o.policy.resolve(s.frame.target);
      } catch (err) {
        log.warn(`refused stream to ${s.frame.target}: ${errorMessage(err)}`);
        this.events.onStream?.(f.sessionId, errorMessage(err));
        return;
      }
      verified = (inner) => this.pipeTo(inner, s, f, dest);
    }
    const raw = dialData(this.o.address, f.token, () => this.secure(raw, s, f, verified));
    raw.on("error", () => raw.destroy());
    s.streams.add(raw);
    raw.on("close", () => s.streams.delete(raw));
  }

  /** Terminates the guest's end-to-end TLS and hands the stream on once the peer is the approved key. */
  private secure(raw: net.Socket, s: AgentSession, f: FrameOf<ServerFrame, "incoming">, verified: (inner: tls.TLSSocket) => void): void {
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
      const peer = inner.getPeerCertificate();
      // Only the key the host approved may use this session, whatever the CA signed.
      if (!peer?.raw || spkiFingerprint(derToPem(peer.raw, "CERTIFICATE")) !== s.frame.guest.spki) {
        log.warn(`stream ${f.streamId}: guest key does not match the approved key; dropped`);
        inner.destroy();
        return;
      }
      verified(inner);
    });
  }

  private pipeTo(inner: tls.TLSSocket, s: AgentSession, f: FrameOf<ServerFrame, "incoming">, dest: { host: string; port: number }): void {
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
  }
}

export function cleanlyDone(sock: { readableEnded: boolean; writableFinished: boolean }): boolean {
  return sock.readableEnded && sock.writableFinished;
}
