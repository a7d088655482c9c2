// The guest: asks for access with a fresh key, and once approved turns each local TCP connection
// (channel-forward.ts) or node stream (node-streams.ts: a shell's terminal, --stdio) into a stream of the
// session's data channel (channel-link.ts), whose end-to-end TLS only the approved host's key can answer. A session outlives a lost coordinator: the
// guest resumes it with the certificate issued for the session, without asking the host again.
import type { Duplex } from "node:stream";
import type { Socket } from "bun";
import { RefusedError, TesseraError, errorMessage } from "../errors.ts";
import { createCsr, exportPrivateKeyPem, generateKeyPair, readCsr, spkiFingerprint } from "../pki/index.ts";
import { identityPublic, signIdentity, viaCode, viaShare } from "../pki/identity.ts";
import { approvalMismatch, startCode } from "./code-check.ts";
import { TLS_1_3, type InnerTls } from "../data/data-dial.ts";
import type { End } from "../data/pipe.ts";
import { ControlClient, type DialOptions } from "../wire/control-client.ts";
import type { ClientFrame, FrameOf, ServerFrame } from "../wire/protocol.ts";
import { Reconnector } from "../wire/reconnect.ts";
import { NodeStreams } from "./node-streams.ts";
import { ChannelLink } from "./channel-link.ts";
import { ChannelForward } from "./channel-forward.ts";
import { recheckRequest } from "./recheck.ts";
import { guestTls, type Approved, type StreamContext } from "./stream-context.ts";
import { DirectListener } from "./direct-listener.ts";
import { localHints, type Hint } from "../wire/hints.ts";

export type { Approved } from "./stream-context.ts";

/** identityKeyPem: the guest's long-term identity key (PKCS#8 PEM), which signs the request (pki/identity.ts). */
export type AccessRequest =
  | { code: string; name: string; reason: string; identityKeyPem?: string }
  | { shareId: string; target: string; name: string; reason: string; identityKeyPem?: string };

export interface GuestEvents {
  onPending?(f: FrameOf<ServerFrame, "pending">): void;
  /** The host proved it minted the code; `verify` is the short string both sides can compare (`--verify`). */
  onCodeConfirmed?(verify: string, hostSpki: string): void;
  onStreamError?(message: string): void;
  /** The coordinator could not take the request now (its database is down): sent again in retryInMs. */
  onRetry?(reason: string, retryInMs: number): void;
  /** The coordinator connection dropped (restart, network): streams ended, reconnecting in retryInMs. */
  onDetached?(reason: string | undefined, retryInMs: number): void;
  /** Back on a new connection; `restarted` when the coordinator had restarted meanwhile. */
  onResumed?(f: FrameOf<ServerFrame, "resumed">): void;
  /** The session ended (revoked, host left, idle, coordinator gone). */
  onClosed?(reason: string): void;
  /** Streams now go direct to the host, or through the coordinator (said when it changes). */
  onPath?(path: "direct" | "relay"): void;
}

export interface DirectOptions {
  /** `--relay-only`: no listener, no hints; every stream goes through the coordinator. */
  relayOnly?: boolean;
  /** Which addresses to offer (default: this machine's, see DirectListener.hints); tests offer their own. */
  hints?: (port: number, coordinatorOnLoopback: boolean) => Hint[];
}

/** How long a session's end waits for what the host's side already sent to arrive (see ChannelLink.settle). */
const SETTLE_MS = 2_000;
/** How long a guest keeps trying to resume its session before it gives up. */
const RESUME_GIVE_UP_MS = 10 * 60_000;
/**
 * A move (see Guest.move) tries this often, at most this far apart, while the old connection stands. Local
 * connections wait meanwhile, so the first retries come sooner (a balancer may still send one attempt to
 * the stopping node until its health check notices).
 */
const MOVE_ATTEMPTS = 60;
const MOVE_RETRY_MS = 500;
const MOVE_FIRST_RETRY_MS = 50;

export class Guest {
  private keyPem = "";
  private approved: Approved | undefined;
  private tls: InnerTls | undefined;
  private ended = false;
  private detached = false;
  private moving = false;
  private refs = 0;
  /** openStream calls made while detached: they go ahead once the session is resumed. */
  private readonly resumeWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  /** The latest TLS ticket from this session's host: later streams resume with it (see End.resume). */
  private readonly ticket: { ticket?: Buffer } = {};
  /** The host certificate already checked against the approved key (see peerKeyIs). */
  private readonly hostCert: { checked?: Buffer } = {};
  private readonly socks = new Set<Socket<End>>();
  private readonly link: ChannelLink;
  private readonly ports: ChannelForward;
  private readonly nodes: NodeStreams;
  private readonly reconnect: Reconnector;
  private directListener: DirectListener | undefined;
  private path: "direct" | "relay" | undefined;
  /** The host's hints when they came before this guest's own direct side was up. */
  private pendingHints: FrameOf<ServerFrame, "hints"> | undefined;

  private constructor(
    private client: ControlClient,
    private readonly o: DialOptions,
    private readonly events: GuestEvents,
    private readonly directOpts: DirectOptions = {},
  ) {
    const ctx: StreamContext = {
      send: (f) => this.client.send(f),
      dataAddress: () => this.client.peer,
      live: () => (this.approved && !this.ended && !this.detached ? { approved: this.approved } : undefined),
      nextRef: (prefix) => `${prefix}${++this.refs}`,
      verify: () => ({
        tls: this.tls!,
        isServer: false,
        peerRole: "host",
        peerSpki: this.approved!.hostSpki,
        checked: this.hostCert,
        resume: this.ticket,
      }),
      socks: this.socks,
      onStreamError: (m) => this.events.onStreamError?.(m),
      direct: () => this.directListener,
      onPath: (p) => this.pathIs(p),
    };
    this.link = new ChannelLink(ctx);
    this.ports = new ChannelForward({
      link: this.link,
      live: () => !!ctx.live(),
      onStreamError: (m) => this.events.onStreamError?.(m),
    });
    this.nodes = new NodeStreams(this.link);
    this.reconnect = new Reconnector({
      connect: () => this.resume(),
      capMs: 10_000,
      giveUpAfterMs: RESUME_GIVE_UP_MS,
      onRetry: (err, delay) => this.events.onDetached?.(err?.message, delay),
      onGiveUp: (err) =>
        this.end(
          `lost the connection to the coordinator${err ? ` (${err.message})` : ""} and could not resume the session`,
        ),
    });
  }

  static async connect(o: DialOptions, events: GuestEvents = {}, direct: DirectOptions = {}): Promise<Guest> {
    return new Guest(await ControlClient.dial(o), o, events, direct);
  }

  /** Sends the request and waits for the host's answer; rejects with the reason when denied. */
  async request(req: AccessRequest): Promise<Approved> {
    // The key is born here, lives in memory only, and only its public half (in the CSR) leaves.
    const keys = await generateKeyPair();
    this.keyPem = await exportPrivateKeyPem(keys.privateKey);
    const csr = await createCsr({ keys, commonName: req.name });
    const spki = (await readCsr(csr)).spki;
    // The identity's fingerprint goes into the PAKE too: the code then vouches for the identity the host sees.
    const idPem = req.identityKeyPem;
    const identityFp = idPem ? spkiFingerprint(identityPublic(idPem)) : undefined;
    const code =
      "code" in req
        ? startCode(req.code, { spki, name: req.name, reason: req.reason, identity: identityFp })
        : undefined;
    const via = code
      ? viaCode(code.redeem.code)
      : viaShare((req as { shareId: string }).shareId, (req as { target: string }).target);
    const identity = idPem
      ? { identity: signIdentity(idPem, { tlsSpki: spki, name: req.name, reason: req.reason, via }) }
      : {};
    // The host's hints (`share --direct-listen`) may come right behind the approval: heard from now on.
    this.client.on("hints", (f) => this.hostHints(f));
    const ask = (): ClientFrame =>
      code
        ? { t: "redeem", ...code.redeem, csr, name: req.name, reason: req.reason, ...identity }
        : {
            t: "request",
            shareId: (req as { shareId: string }).shareId,
            target: (req as { target: string }).target,
            csr,
            name: req.name,
            reason: req.reason,
            ...identity,
          };
    // A denial may come first (a coordinator that never said "pending" still ends the request at its timeout).
    const pending = await this.askUntilAnswered(ask);
    if (pending.t === "denied") {
      this.client.close();
      throw new TesseraError("denied", `access denied: ${pending.reason}`);
    }
    this.events.onPending?.(pending);
    let confirmed: Awaited<ReturnType<NonNullable<typeof code>["confirm"]>> | undefined;
    if (code) {
      confirmed = await code.confirm(this.client, pending).catch(async (err) => {
        this.client.close();
        // The coordinator went while the code check ran (a restart): it says what became of the request.
        if (err instanceof TesseraError && err.code === "disconnected") {
          const f = await recheckRequest(this.o, pending.requestId, err);
          throw new TesseraError("denied", `access denied: ${f.reason}`);
        }
        throw err;
      });
      this.events.onCodeConfirmed?.(confirmed.verify, confirmed.hostSpki);
    }
    const answer = await (confirmed?.answer ?? this.client.next("approved", "denied")).catch((err) =>
      recheckRequest(this.o, pending.requestId, err),
    );
    if (answer.t === "denied") {
      this.client.close();
      throw new TesseraError("denied", `access denied: ${answer.reason}`);
    }
    const swapped = confirmed && approvalMismatch(answer, confirmed, spki);
    if (swapped) {
      this.client.send({
        t: "end",
        sessionId: answer.sessionId,
        reason: "refused by the guest: the coordinator named keys the code did not confirm",
      });
      // The host hears why through the session's close; wait (briefly) for the coordinator to act on it.
      await Promise.race([this.client.next("closed").catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
      this.client.close();
      throw new TesseraError(
        "key_mismatch",
        `refused: ${swapped}. The coordinator is not behaving honestly; tell its operator`,
      );
    }
    this.approved = answer;
    this.tls = guestTls(this.keyPem, answer.cert, this.o.caPem, TLS_1_3);
    this.bind(this.client);
    if (!this.directOpts.relayOnly) this.offerDirect(answer);
    this.link.ensure();
    return answer;
  }

  /**
   * Sends the redeem (or request) until the coordinator takes it: `unavailable` (its database is down) is
   * no answer, so the same frame goes again after a growing wait, for as long as a session would wait
   * to be resumed; any other refusal is final.
   */
  private async askUntilAnswered(
    ask: () => ClientFrame,
  ): Promise<FrameOf<ServerFrame, "pending"> | FrameOf<ServerFrame, "denied">> {
    const since = Date.now();
    for (let attempt = 0; ; attempt++) {
      this.client.send(ask());
      try {
        return await this.client.next("pending", "denied");
      } catch (err) {
        const retry = err instanceof RefusedError && err.code === "unavailable";
        if (!retry || Date.now() - since > RESUME_GIVE_UP_MS) throw err;
        const delay = Math.min(200 * 2 ** attempt, 2_000);
        this.events.onRetry?.(err.message, delay);
        await Bun.sleep(delay);
      }
    }
  }

  /** The direct path: a listener the host's agent may dial, offered with this machine's addresses (see DirectListener.offer). */
  private offerDirect(approved: Approved): void {
    const onLoopback = /^(127\.|::1$|::ffff:127\.)/.test(this.client.socket.localAddress ?? "");
    const listener = new DirectListener({
      sessionId: approved.sessionId,
      tls: this.tls!,
      resume: this.ticket,
      hostSpki: approved.hostSpki,
      checked: this.hostCert,
      socks: this.socks,
      send: (f) => this.client.send(f),
      coordinatorOnLoopback: onLoopback,
      onProven: () => this.link.renew("direct"),
    });
    try {
      listener.offer(this.keyPem, (port) => (this.directOpts.hints ?? localHints)(port, onLoopback));
    } catch (err) {
      this.events.onStreamError?.(
        `no direct path (cannot listen: ${errorMessage(err)}); streams go through the coordinator`,
      );
      return;
    }
    this.directListener = listener;
    if (this.pendingHints) void listener.hostHints(this.pendingHints);
    this.pendingHints = undefined;
  }

  private hostHints(f: FrameOf<ServerFrame, "hints">): void {
    if (this.directListener) void this.directListener.hostHints(f);
    else this.pendingHints = f;
  }

  /**
   * `told`: the coordinator said it (the path went direct, the host's agent came back, the node the channel
   * passes through is stopping): a fresh channel on that path takes the session's new streams.
   */
  private pathIs(p: "direct" | "relay", told = false): void {
    if (told) return this.link.renew(p);
    if (this.path === p) return;
    this.path = p;
    this.events.onPath?.(p);
  }

  /** Listens on host:port and forwards every connection; resolves with the bound address. */
  async listen(host: string, port: number): Promise<{ host: string; port: number }> {
    return this.ports.listen(host, port);
  }

  /** Opens one stream without a local listener (a shell's terminal): resolves with the verified end-to-end stream. */
  openStream(): Promise<Duplex> {
    const approved = this.approved;
    if (this.ended || !approved) return Promise.reject(new TesseraError("no_session", "the session is not open"));
    // While the guest is resuming, wait for it rather than fail: the host keeps the terminal meanwhile.
    if (this.detached)
      return new Promise<void>((resolve, reject) => this.resumeWaiters.push({ resolve, reject })).then(() =>
        this.openStream(),
      );
    return this.nodes.open();
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
    return NodeStreams.carry(local, inner);
  }

  /**
   * Ends the session for everyone: tells the coordinator, then closes every stream at once. Resolves
   * when the coordinator has closed the control connection too (so it has seen the end), or after 3 s.
   */
  close(reason = "the guest ended the session"): Promise<void> {
    if (this.approved && !this.ended) this.client.send({ t: "end", sessionId: this.approved.sessionId });
    this.end(reason, false);
    const sock = this.client.socket;
    const gone = sock.closed
      ? Promise.resolve()
      : new Promise<void>((r) => {
          sock.once("close", () => r());
          setTimeout(r, 3000).unref();
        });
    this.client.close();
    return gone;
  }

  private bind(c: ControlClient): void {
    c.on("stream", (f) => this.link.ready(f));
    c.on("error", (f) => this.link.owns(f.ref) && this.link.refused(f));
    c.on("refused", (f) => this.events.onStreamError?.(`a connection was refused by the host's side: ${f.reason}`));
    c.on("fallback", (f) => this.directListener?.fallback(f.streamId));
    // Only a guest that offered hints goes direct; any guest renews its channel when told (see pathIs).
    c.on(
      "path",
      (f) => f.sessionId === this.approved?.sessionId && this.pathIs(this.directListener ? f.path : "relay", true),
    );
    c.on("closed", (f) => this.end(f.reason));
    c.onClose((err) => this.detach(err));
    c.onMove(() => void this.move(c));
  }

  /**
   * The coordinator node is stopping (a graceful stop): resume on a new connection (through the balancer)
   * while the old one still stands, so streams under way are not dropped; the old one's end is then no
   * detach, and it is left to the stopping node to close (answers to opens asked on it still come that
   * way). Meanwhile nothing new is opened (the share may already have left the node the old connection
   * speaks to): new local connections wait, and go on a fresh channel of the new node once the move is
   * through; the old channel ends once its streams have. Attempts go on while the old connection stands;
   * once it is gone, the usual reconnect takes over.
   */
  private async move(old: ControlClient): Promise<void> {
    if (this.ended || this.detached || this.client !== old || this.moving) return;
    this.moving = true;
    this.link.pause();
    old.onClose(() => {});
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          await this.resume();
          break;
        } catch (err) {
          if (old.ch.closed || attempt >= MOVE_ATTEMPTS) throw err;
          await Bun.sleep(Math.min(MOVE_FIRST_RETRY_MS * 2 ** attempt, MOVE_RETRY_MS));
        }
      }
      this.link.resume(this.client !== old);
    } catch (err) {
      old.close();
      this.detach(err as Error);
    } finally {
      this.moving = false;
      this.link.resume(false);
    }
  }

  /**
   * `notify`: the session ended elsewhere (the coordinator said so, or could not be reached again). Streams
   * the host's side already finished still deliver their last bytes (see ChannelLink.settle) before the rest
   * is cut and the end is reported.
   */
  private end(reason: string, notify = true): void {
    if (this.ended) return;
    this.ended = true;
    this.reconnect.stop();
    this.ports.close();
    this.directListener?.stop();
    const why = new TesseraError("closed", reason);
    for (const w of this.resumeWaiters.splice(0)) w.reject(why);
    const finish = () => {
      this.dropStreams(why);
      if (notify) this.events.onClosed?.(reason);
    };
    if (!notify) return finish();
    void this.link.settle(SETTLE_MS, why).then(finish);
  }

  /**
   * The control connection dropped with the session approved. Streams end now (the coordinator cuts
   * them anyway); the guest reconnects with its session certificate and resumes.
   */
  private detach(err?: Error): void {
    if (this.ended) return;
    if (!this.detached) {
      this.detached = true;
      this.dropStreams(new TesseraError("detached", "lost the connection to the coordinator while opening a stream"));
    }
    this.reconnect.lost(err);
  }

  /** One attempt to resume; a refusal ends the session, anything else is retried by the Reconnector. */
  private async resume(): Promise<void> {
    if (this.ended || !this.approved) return;
    const c = await ControlClient.dial({ ...this.o, keyPem: this.keyPem, certPem: this.approved.cert });
    try {
      c.send({ t: "resume", sessionId: this.approved.sessionId });
      const f = await c.next("resumed");
      if (this.ended) return c.close();
      this.client = c;
      this.detached = false;
      this.bind(c);
      c.on("hints", (h) => this.hostHints(h));
      this.link.ensure();
      this.events.onResumed?.(f);
      for (const w of this.resumeWaiters.splice(0)) w.resolve();
    } catch (err) {
      c.close();
      // The coordinator's database down is no answer about the session: try again (within the give-up time).
      if (err instanceof RefusedError && err.code !== "unavailable") return this.end(err.message);
      throw err;
    }
  }

  /** Every stream of the session ends now (detached or ended); the session itself is another matter. */
  private dropStreams(why: Error): void {
    this.link.drop(why);
    this.nodes.drop();
    for (const s of [...this.socks]) s.terminate();
  }
}
