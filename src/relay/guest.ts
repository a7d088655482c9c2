// The guest: asks for access with a fresh key, and once approved turns each local TCP connection
// (or the one duplex it is given, for --stdio) into a stream whose end-to-end TLS only the approved host's key can answer.
import net from "node:net";
import type { Duplex } from "node:stream";
import tls from "node:tls";
import { RefusedError, TesseraError, errorMessage } from "../errors.ts";
import { createCsr, derToPem, exportPrivateKeyPem, generateKeyPair, spkiFingerprint } from "../pki/index.ts";
import { ControlClient, type DialOptions } from "./client.ts";
import { backoff, sleep } from "./backoff.ts";
import { dialData } from "./data-dial.ts";
import { cleanlyDone } from "./agent.ts";
import type { FrameOf, ServerFrame } from "./protocol.ts";

export type AccessRequest =
  | { code: string; name: string; reason: string }
  | { shareId: string; target: string; name: string; reason: string };

export type Approved = FrameOf<ServerFrame, "approved">;

export interface GuestEvents {
  onPending?(f: FrameOf<ServerFrame, "pending">): void;
  onStreamError?(message: string): void;
  /** The coordinator connection dropped (restart, network): streams ended, reconnecting in retryInMs. */
  onDetached?(message: string, retryInMs: number): void;
  /** Back on a new connection; `restarted` when the coordinator had restarted meanwhile. */
  onResumed?(f: FrameOf<ServerFrame, "resumed">): void;
  /** The session ended (revoked, host left, idle, coordinator gone). */
  onClosed?(reason: string): void;
}

export class Guest {
  private keyPem = "";
  private approved: Approved | undefined;
  private server: net.Server | undefined;
  private readonly socks = new Set<Duplex>();
  private readonly opening = new Map<string, Duplex>();
  private readonly dialing = new Map<string, { resolve: (s: tls.TLSSocket) => void; reject: (e: Error) => void }>();
  /** openStream calls made while detached: they go ahead once the session is resumed. */
  private readonly resumeWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private nextRef = 0;
  private ended = false;
  private detached = false;
  private resumeAttempt = 0;
  private detachedAt = 0;

  private constructor(private client: ControlClient, private readonly o: DialOptions, private readonly events: GuestEvents) {}

  static async connect(o: DialOptions, events: GuestEvents = {}): Promise<Guest> {
    return new Guest(await ControlClient.dial(o), o, events);
  }

  /** Sends the request and waits for the host's answer; rejects with the reason when denied. */
  async request(req: AccessRequest): Promise<Approved> {
    // The key is born here, lives in memory only, and only its public half (in the CSR) leaves.
    const keys = await generateKeyPair();
    this.keyPem = await exportPrivateKeyPem(keys.privateKey);
    const csr = await createCsr({ keys, commonName: req.name });
    this.client.send("code" in req
      ? { t: "redeem", code: req.code, csr, name: req.name, reason: req.reason }
      : { t: "request", shareId: req.shareId, target: req.target, csr, name: req.name, reason: req.reason });
    const pending = await this.client.next("pending");
    this.events.onPending?.(pending);
    const answer = await this.client.next("approved", "denied").catch((err) => this.recheck(pending.requestId, err));
    if (answer.t === "denied") {
      this.client.close();
      throw new TesseraError("denied", `access denied: ${answer.reason}`);
    }
    this.approved = answer;
    this.bind(this.client);
    return answer;
  }

  /** Lost the coordinator while waiting: ask a reconnected coordinator what became of the request. */
  private async recheck(requestId: string, lost: Error): Promise<FrameOf<ServerFrame, "denied">> {
    for (let attempt = 0; attempt < 6; attempt++) {
      await sleep(backoff(attempt, 5_000));
      try {
        const c = await ControlClient.dial(this.o);
        c.send({ t: "recheck", requestId });
        const f = await c.next("denied");
        c.close();
        return f;
      } catch (err) {
        if (err instanceof RefusedError) throw new TesseraError("denied", `access denied: ${err.message}`);
      }
    }
    throw new TesseraError("disconnected", `${lost.message} before the host answered, and could not get back to it; if the coordinator restarted, your code works again: run the same command`);
  }

  private bind(c: ControlClient): void {
    c.on("stream", (f) => this.streamReady(f));
    c.on("error", (f) => this.streamRefused(f));
    c.on("closed", (f) => this.end(f.reason));
    c.onClose((err) => this.detach(err));
  }

  /**
   * The control connection dropped with the session approved. Streams end now (the coordinator cuts
   * them anyway); the guest reconnects with its session certificate and resumes, without asking the host again.
   */
  private detach(err?: Error): void {
    if (this.ended) return;
    if (!this.detached) {
      this.detached = true;
      this.detachedAt = Date.now();
      this.resumeAttempt = 0;
      for (const s of this.socks) s.destroy();
      for (const s of this.opening.values()) s.destroy();
      for (const d of this.dialing.values()) d.reject(new TesseraError("detached", "lost the connection to the coordinator while opening a stream"));
      this.dialing.clear();
    }
    if (Date.now() - this.detachedAt > RESUME_GIVE_UP_MS) {
      return this.end(`lost the connection to the coordinator${err ? ` (${err.message})` : ""} and could not resume the session`);
    }
    const delay = backoff(this.resumeAttempt++, 10_000);
    this.events.onDetached?.(`lost the connection to the coordinator${err ? ` (${err.message})` : ""}; open connections were closed`, delay);
    setTimeout(() => void this.resume(), delay);
  }

  private async resume(): Promise<void> {
    if (this.ended || !this.approved) return;
    let c: ControlClient;
    try {
      c = await ControlClient.dial({ ...this.o, keyPem: this.keyPem, certPem: this.approved.cert });
    } catch (err) {
      return this.detach(err instanceof Error ? err : undefined);
    }
    try {
      c.send({ t: "resume", sessionId: this.approved.sessionId });
      const f = await c.next("resumed");
      if (this.ended) return c.close();
      this.client = c;
      this.detached = false;
      this.bind(c);
      this.events.onResumed?.(f);
      for (const w of this.resumeWaiters.splice(0)) w.resolve();
    } catch (err) {
      c.close();
      if (err instanceof RefusedError) return this.end(err.message);
      this.detach(err instanceof Error ? err : undefined);
    }
  }

  /** Listens on host:port and forwards every connection; resolves with the bound address. */
  listen(host: string, port: number): Promise<{ host: string; port: number }> {
    const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => this.accept(sock));
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once("error", (err: Error & { code?: string }) =>
        reject(new TesseraError("listen", err.code === "EADDRINUSE" ? `local port ${host}:${port} is already in use; pick another with --local` : `cannot listen on ${host}:${port}: ${err.message}`)));
      server.listen(port, host, () => {
        const a = server.address() as net.AddressInfo;
        resolve({ host: a.address, port: a.port });
      });
    });
  }

  /** Opens one stream without a local listener (a shell's terminal): resolves with the verified end-to-end TLS socket. */
  openStream(): Promise<tls.TLSSocket> {
    const approved = this.approved;
    if (this.ended || !approved) return Promise.reject(new TesseraError("no_session", "the session is not open"));
    // While the guest is resuming, wait for it rather than fail: the host keeps the terminal meanwhile.
    if (this.detached) return new Promise<void>((resolve, reject) => this.resumeWaiters.push({ resolve, reject })).then(() => this.openStream());
    const ref = `d${++this.nextRef}`;
    return new Promise((resolve, reject) => {
      this.dialing.set(ref, { resolve, reject });
      this.client.send({ t: "open", sessionId: approved.sessionId, ref });
    });
  }

  /**
   * Carries exactly one stream over `local` (stdin/stdout, say) instead of listening. Resolves once the
   * stream is over: true when both directions ended cleanly, false when it was refused or cut.
   */
  carry(local: Duplex): Promise<boolean> {
    return new Promise((resolve) => {
      local.pause();
      local.once("close", () => resolve(cleanlyDone(local)));
      this.accept(local);
    });
  }

  /**
   * Ends the session for everyone: tells the coordinator, then closes every stream at once. Resolves
   * when the coordinator has closed the control connection too (so it has seen the end), or after 3 s.
   */
  close(reason = "the guest ended the session"): Promise<void> {
    if (this.approved && !this.ended) this.client.send({ t: "end", sessionId: this.approved.sessionId });
    this.end(reason, false);
    const sock = this.client.socket;
    const gone = sock.closed ? Promise.resolve() : new Promise<void>((r) => {
      sock.once("close", () => r());
      setTimeout(r, 3000).unref();
    });
    this.client.close();
    return gone;
  }

  private end(reason: string, notify = true): void {
    if (this.ended) return;
    this.ended = true;
    this.server?.close();
    for (const s of this.socks) s.destroy();
    for (const s of this.opening.values()) s.destroy();
    for (const d of this.dialing.values()) d.reject(new TesseraError("closed", reason));
    this.dialing.clear();
    for (const w of this.resumeWaiters.splice(0)) w.reject(new TesseraError("closed", reason));
    if (notify) this.events.onClosed?.(reason);
  }

  private accept(sock: Duplex): void {
    if (this.ended || !this.approved || this.detached) return void sock.destroy();
    if (sock instanceof net.Socket) sock.setNoDelay(true);
    sock.on("error", () => {});
    const ref = `o${++this.nextRef}`;
    this.opening.set(ref, sock);
    sock.on("close", () => this.opening.delete(ref));
    this.client.send({ t: "open", sessionId: this.approved.sessionId, ref });
  }

  private streamRefused(f: FrameOf<ServerFrame, "error">): void {
    const d = f.ref ? this.dialing.get(f.ref) : undefined;
    if (d) {
      this.dialing.delete(f.ref!);
      return d.reject(new TesseraError(f.code, f.message));
    }
    const sock = f.ref ? this.opening.get(f.ref) : undefined;
    if (!sock) return;
    this.opening.delete(f.ref!);
    sock.destroy();
    this.events.onStreamError?.(f.message);
  }

  private streamReady(f: FrameOf<ServerFrame, "stream">): void {
    const d = this.dialing.get(f.ref);
    if (d && this.approved) {
      this.dialing.delete(f.ref);
      const approved = this.approved;
      const raw = dialData(this.o.address, f.token, () => {
        const inner = this.innerTls(raw, approved);
        inner.once("secureConnect", () => d.resolve(inner));
        inner.once("error", (err) => d.reject(new TesseraError("stream", `stream failed: ${errorMessage(err)}`)));
      });
      raw.once("error", (err) => d.reject(new TesseraError("stream", `cannot reach the coordinator's data port: ${errorMessage(err)}`)));
      this.socks.add(raw);
      raw.on("close", () => this.socks.delete(raw));
      return;
    }
    const local = this.opening.get(f.ref);
    const approved = this.approved;
    if (!local || !approved) return;
    this.opening.delete(f.ref);
    this.socks.add(local);
    local.on("close", () => this.socks.delete(local));
    const raw = dialData(this.o.address, f.token, () => this.secure(raw, local, approved));
    raw.on("error", () => local.destroy());
    this.socks.add(raw);
    raw.on("close", () => this.socks.delete(raw));
  }

  /** The guest's end of the end-to-end TLS: its own key, and only the approved host's key accepted. */
  private innerTls(raw: net.Socket, approved: Approved): tls.TLSSocket {
    const inner = tls.connect({
      socket: raw, minVersion: "TLSv1.3" as const, key: this.keyPem, cert: approved.cert, ca: this.o.caPem,
      // Only the host the coordinator named for this session may answer; the CA alone is not enough.
      checkServerIdentity: (_h, cert) =>
        cert.raw && spkiFingerprint(derToPem(cert.raw, "CERTIFICATE")) === approved.hostSpki ? undefined : new Error("the host's key is not the one this session was approved for"),
      // Accepted by node's TLSSocket though not in its types; lets the local client half-close.
      ...{ allowHalfOpen: true },
    });
    this.socks.add(inner);
    inner.on("close", () => this.socks.delete(inner));
    raw.on("error", () => inner.destroy());
    return inner;
  }

  private secure(raw: net.Socket, local: Duplex, approved: Approved): void {
    const inner = this.innerTls(raw, approved);
    inner.on("error", (err) => {
      this.events.onStreamError?.(`stream failed: ${errorMessage(err)}`);
      inner.destroy();
      local.destroy();
    });
    inner.once("secureConnect", () => {
      local.on("close", () => { if (!cleanlyDone(local)) inner.destroy(); });
      inner.on("close", () => { if (!cleanlyDone(inner)) local.destroy(); });
      local.pipe(inner);
      inner.pipe(local);
      local.resume();
    });
  }
}

/** How long a guest keeps trying to resume its session before it gives up. */
const RESUME_GIVE_UP_MS = 10 * 60_000;

