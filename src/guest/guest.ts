// The guest: asks for access with a fresh key, and once approved turns each local TCP connection
// (or one node stream: a shell's terminal, stdin/stdout for --stdio) into a stream whose end-to-end TLS
// only the approved host's key can answer. A session outlives a lost coordinator: the guest resumes it.
import type { Duplex } from "node:stream";
import type { Socket, TCPSocketListener } from "bun";
import { RefusedError, TesseraError, errorMessage } from "../errors.ts";
import { createCsr, exportPrivateKeyPem, generateKeyPair } from "../pki/index.ts";
import { cleanlyDone } from "../host/agent.ts";
import { backoff } from "../wire/backoff.ts";
import { ControlClient, refusal, type DialOptions } from "../wire/control-client.ts";
import { recheckRequest } from "./recheck.ts";
import { asDuplex } from "../data/socket-duplex.ts";
import { connectData, peerKeyIs, startData, TLS_1_3, type InnerTls } from "../data/data-dial.ts";
import { cut, newEnd, pair, type End, PIPE_HANDLERS } from "../data/pipe.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";

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

/** Most "open" frames unanswered at once: well under the coordinator's per-connection frame queue (64). */
const MAX_ASKED = 32;
/** Most local connections waiting for their turn to ask; past it new ones are refused. */
const MAX_WAITING_OPENS = 4096;

export class Guest {
  private keyPem = "";
  private approved: Approved | undefined;
  private server: TCPSocketListener<End> | undefined;
  /** Every live socket of every stream (local, raw and TLS), so the session's end cuts them all. */
  private readonly socks = new Set<Socket<End>>();
  private readonly opening = new Map<string, Socket<End>>();
  /**
   * Local connections whose "open" is not sent yet, and the refs of those sent and unanswered. A
   * burst of connections (a client's pool) is asked for a few at a time: the coordinator cuts a
   * control connection that floods it with frames (Channel's maxQueued).
   */
  private readonly waiting: string[] = [];
  private readonly asked = new Set<string>();
  /**
   * The data connection of each asked stream, dialled while its token is on the way (one round trip
   * less per stream); closed if the stream is refused. The coordinator drops one left silent (10 s).
   */
  private readonly predialed = new Map<string, Promise<Socket<End> | Error>>();
  /** Streams opened for a node stream rather than a local socket (openStream), by ref. */
  private readonly dialing = new Map<string, { resolve: (d: Duplex) => void; reject: (e: Error) => void }>();
  private readonly duplexes = new Set<Duplex>();
  /** openStream calls made while detached: they go ahead once the session is resumed. */
  private readonly resumeWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private nextRef = 0;
  private ended = false;
  private detached = false;
  private resumeAttempt = 0;
  private detachedAt = 0;
  /** The inner TLS client's options, fixed once approved: this session's key and certificate. */
  private tls: InnerTls | undefined;
  /**
   * The latest TLS ticket from this session's host: later streams resume with it and skip the
   * certificate signatures of a full handshake. A resumed session still carries the host's
   * certificate, and every stream checks it against the approved key as before.
   */
  private readonly ticket: { ticket?: Buffer } = {};
  /** The host certificate already checked against the approved key (see peerKeyIs). */
  private readonly hostCert: { checked?: Buffer } = {};

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
    const answer = await this.client.next("approved", "denied").catch((err) => recheckRequest(this.o, pending.requestId, err));
    if (answer.t === "denied") {
      this.client.close();
      throw new TesseraError("denied", `access denied: ${answer.reason}`);
    }
    this.approved = answer;
    // The chain is checked against the CA (see secured()); the key per stream against this session's host.
    this.tls = { key: this.keyPem, cert: answer.cert, ca: this.o.caPem, rejectUnauthorized: false, minVersion: TLS_1_3 } as InnerTls;
    this.bind(this.client);
    return answer;
  }

  private bind(c: ControlClient): void {
    c.on("stream", (f) => void this.streamReady(f));
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
      this.dropStreams(new TesseraError("detached", "lost the connection to the coordinator while opening a stream"));
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

  /** Every stream of the session ends now (detached or ended); the session itself is another matter. */
  private dropStreams(why: Error): void {
    for (const s of [...this.socks]) s.terminate();
    for (const s of [...this.opening.values()]) s.terminate();
    this.opening.clear();
    this.waiting.length = 0;
    this.asked.clear();
    for (const p of this.predialed.values()) void p.then((raw) => raw instanceof Error || raw.terminate());
    this.predialed.clear();
    for (const d of this.dialing.values()) d.reject(why);
    this.dialing.clear();
    for (const d of [...this.duplexes]) d.destroy();
  }

  /** Listens on host:port and forwards every connection; resolves with the bound address. */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    try {
      this.server = Bun.listen<End>({
        hostname: host, port, allowHalfOpen: true,
        socket: { ...PIPE_HANDLERS, open: (sock) => this.accept(sock) },
      });
    } catch (err) {
      const code = (err as { code?: string }).code;
      throw new TesseraError("listen", code === "EADDRINUSE" ? `local port ${host}:${port} is already in use; pick another with --local` : `cannot listen on ${host}:${port}: ${errorMessage(err)}`);
    }
    return { host, port: this.server.port };
  }

  /** Opens one stream without a local listener (a shell's terminal): resolves with the verified end-to-end stream. */
  openStream(): Promise<Duplex> {
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
  async carry(local: Duplex): Promise<boolean> {
    local.pause();
    let inner: Duplex;
    try {
      inner = await this.openStream();
    } catch (err) {
      this.events.onStreamError?.(errorMessage(err));
      local.destroy();
      return false;
    }
    return new Promise((resolve) => {
      local.once("close", () => resolve(cleanlyDone(local)));
      local.on("close", () => { if (!cleanlyDone(local)) inner.destroy(); });
      inner.on("close", () => { if (!cleanlyDone(inner)) local.destroy(); });
      inner.on("error", () => local.destroy());
      local.on("error", () => inner.destroy());
      local.pipe(inner);
      inner.pipe(local);
      local.resume();
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
    this.server?.stop(true);
    this.dropStreams(new TesseraError("closed", reason));
    for (const w of this.resumeWaiters.splice(0)) w.reject(new TesseraError("closed", reason));
    if (notify) this.events.onClosed?.(reason);
  }

  private accept(sock: Socket<End>): void {
    // What the local client sends before its stream is up waits in memory, bounded, and is delivered
    // in order with an early half-close once the stream is paired (see pipe.ts).
    const ref = `o${++this.nextRef}`;
    sock.data = newEnd({ onClose: (s) => { this.opening.delete(ref); this.socks.delete(s); } });
    if (this.ended || !this.approved || this.detached) return void sock.terminate();
    if (this.waiting.length >= MAX_WAITING_OPENS) {
      this.events.onStreamError?.(`more than ${MAX_WAITING_OPENS} connections are waiting for a stream; refused one`);
      return void sock.terminate();
    }
    sock.setNoDelay(true);
    this.opening.set(ref, sock);
    this.waiting.push(ref);
    this.askMore();
  }

  /** Sends "open" for waiting connections while fewer than MAX_ASKED are unanswered. */
  private askMore(): void {
    while (this.asked.size < MAX_ASKED && this.waiting.length && this.approved && !this.ended && !this.detached) {
      const ref = this.waiting.shift()!;
      if (!this.opening.has(ref)) continue; // the local client left while it waited
      this.asked.add(ref);
      this.client.send({ t: "open", sessionId: this.approved.sessionId, ref });
      this.predialed.set(ref, connectData(this.client.peer).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e)))));
    }
  }

  /** The reply to an "open" came: returns its pre-dialled data connection and asks for the next. */
  private answered(ref: string | undefined): Promise<Socket<End> | Error> | undefined {
    if (!ref || !this.asked.delete(ref)) return undefined;
    const raw = this.predialed.get(ref);
    this.predialed.delete(ref);
    this.askMore();
    return raw;
  }

  private streamRefused(f: FrameOf<ServerFrame, "error">): void {
    const d = f.ref ? this.dialing.get(f.ref) : undefined;
    if (d) {
      this.dialing.delete(f.ref!);
      return d.reject(refusal(f));
    }
    void this.answered(f.ref)?.then((raw) => raw instanceof Error || raw.terminate());
    const sock = f.ref ? this.opening.get(f.ref) : undefined;
    if (!sock) return;
    this.opening.delete(f.ref!);
    sock.terminate();
    this.events.onStreamError?.(f.message);
  }

  private async streamReady(f: FrameOf<ServerFrame, "stream">): Promise<void> {
    const d = this.dialing.get(f.ref);
    if (d) {
      this.dialing.delete(f.ref);
      return this.duplexReady(f, d);
    }
    const predialed = this.answered(f.ref);
    const local = this.opening.get(f.ref);
    const approved = this.approved;
    if (!local || !approved || !this.tls) {
      void predialed?.then((raw) => raw instanceof Error || raw.terminate());
      return;
    }
    this.opening.delete(f.ref);
    this.socks.add(local);
    const end = newEnd({
      resume: this.ticket,
      onHandshake: (inner, ok, err) => this.secured(inner, local, ok, err, approved),
      onClose: (inner) => {
        this.socks.delete(inner);
        // Closed before it was paired (refused, failed handshake): the local client goes too.
        if (!inner.data.peer) local.terminate();
      },
    });
    let dialed: { raw: Socket<End>; inner: Socket<End> };
    try {
      const raw = await (predialed ?? connectData(this.client.peer));
      if (raw instanceof Error) throw raw;
      dialed = startData(raw, f.token, this.tls, end);
    } catch (err) {
      this.events.onStreamError?.(`stream failed: ${errorMessage(err)}`);
      return local.terminate();
    }
    const { raw, inner } = dialed;
    if (this.ended || local.data.closed) return cut(inner);
    this.socks.add(raw);
    this.socks.add(inner);
    raw.data.onClose = () => this.socks.delete(raw);
    // The local client leaving before the handshake ends the stream.
    local.data.onClose = (s) => {
      this.socks.delete(s);
      if (!s.data.peer) cut(inner);
    };
  }

  private secured(inner: Socket<End>, local: Socket<End>, ok: boolean, err: Error | null, approved: Approved): void {
    // Bun reports a chain that does not lead to the CA first, and only then that no name matches. Names
    // mean nothing here (the host is pinned by key below), so only a clean chain or a name miss passes.
    if ((!ok && !err) || (err && (err as { code?: string }).code !== "ERR_TLS_CERT_ALTNAME_INVALID")) {
      this.events.onStreamError?.(`stream failed: ${err?.message ?? "TLS handshake failed"}`);
      cut(inner);
      return local.terminate();
    }
    // Only the host the coordinator named for this session may answer; the CA alone is not enough.
    if (!peerKeyIs(inner, approved.hostSpki, this.hostCert)) {
      this.events.onStreamError?.("stream failed: the host's key is not the one this session was approved for");
      cut(inner);
      return local.terminate();
    }
    if (local.data.closed) return cut(inner);
    pair(local, inner);
  }

  /** A stream for openStream: same end-to-end TLS and host check, handed over as a node stream. */
  private async duplexReady(f: FrameOf<ServerFrame, "stream">, d: { resolve: (d: Duplex) => void; reject: (e: Error) => void }): Promise<void> {
    const approved = this.approved;
    if (!approved || !this.tls) return d.reject(new TesseraError("no_session", "the session is not open"));
    const end = newEnd({
      resume: this.ticket,
      onHandshake: (inner, _ok, err) => {
        if (err && (err as { code?: string }).code !== "ERR_TLS_CERT_ALTNAME_INVALID") {
          cut(inner);
          return d.reject(new TesseraError("stream", `stream failed: ${err.message}`));
        }
        if (!peerKeyIs(inner, approved.hostSpki, this.hostCert)) {
          cut(inner);
          return d.reject(new TesseraError("stream", "stream failed: the host's key is not the one this session was approved for"));
        }
        const duplex = asDuplex(inner);
        this.duplexes.add(duplex);
        duplex.on("close", () => this.duplexes.delete(duplex));
        d.resolve(duplex);
      },
      onClose: (inner) => this.socks.delete(inner),
    });
    try {
      const { raw, inner } = startData(await connectData(this.client.peer), f.token, this.tls, end);
      this.socks.add(raw);
      this.socks.add(inner);
      raw.data.onClose = () => this.socks.delete(raw);
    } catch (err) {
      d.reject(new TesseraError("stream", `cannot reach the coordinator's data port: ${errorMessage(err)}`));
    }
  }
}

/** How long a guest keeps trying to resume its session before it gives up. */
const RESUME_GIVE_UP_MS = 10 * 60_000;
