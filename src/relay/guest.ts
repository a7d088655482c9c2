// The guest: asks for access with a fresh key, and once approved turns each local TCP connection
// into a stream whose end-to-end TLS only the approved host's key can answer.
import net from "node:net";
import tls from "node:tls";
import { TesseraError, errorMessage } from "../errors.ts";
import { createCsr, exportPrivateKeyPem, generateKeyPair } from "../pki/index.ts";
import { ControlClient, type DialOptions } from "./client.ts";
import { dialData } from "./data-dial.ts";
import { cleanlyDone, peerKeyIs } from "./agent.ts";
import type { FrameOf, ServerFrame } from "./protocol.ts";

export type AccessRequest =
  | { code: string; name: string; reason: string }
  | { shareId: string; target: string; name: string; reason: string };

export type Approved = FrameOf<ServerFrame, "approved">;

export interface GuestEvents {
  onPending?(f: FrameOf<ServerFrame, "pending">): void;
  onStreamError?(message: string): void;
  /** The session ended (revoked, host left, idle, coordinator gone). */
  onClosed?(reason: string): void;
}

export class Guest {
  private keyPem = "";
  private approved: Approved | undefined;
  private server: net.Server | undefined;
  private readonly socks = new Set<net.Socket>();
  private readonly opening = new Map<string, net.Socket>();
  private nextRef = 0;
  private ended = false;
  /** Built once per session: a context per stream would re-parse the key and certificates every time. */
  private ctx: tls.SecureContext | undefined;
  /**
   * The latest TLS session ticket from this session's host: later streams resume with it, skipping the
   * certificate signatures of a full handshake (several times faster). The resumed session still carries
   * the host's certificate, and each stream checks it against the approved key as before.
   */
  private tlsSession: Buffer | undefined;
  /** The host certificate already checked against the approved key (see peerKeyIs). */
  private readonly hostCert: { checked?: Buffer } = {};

  private constructor(private readonly client: ControlClient, private readonly o: DialOptions, private readonly events: GuestEvents) {}

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
    this.events.onPending?.(await this.client.next("pending"));
    const answer = await this.client.next("approved", "denied");
    if (answer.t === "denied") {
      this.client.close();
      throw new TesseraError("denied", `access denied: ${answer.reason}`);
    }
    this.approved = answer;
    this.ctx = tls.createSecureContext({ key: this.keyPem, cert: answer.cert, ca: this.o.caPem, minVersion: "TLSv1.3" });
    this.client.on("stream", (f) => this.streamReady(f));
    this.client.on("error", (f) => this.streamRefused(f));
    this.client.on("closed", (f) => this.end(f.reason));
    this.client.onClose((err) => this.end(`lost the connection to the coordinator${err ? ` (${err.message})` : ""}`));
    return answer;
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

  /** Ends the session for everyone: tells the coordinator, then closes every stream at once. */
  close(reason = "the guest ended the session"): void {
    if (this.approved && !this.ended) this.client.send({ t: "end", sessionId: this.approved.sessionId });
    this.end(reason, false);
    this.client.close();
  }

  private end(reason: string, notify = true): void {
    if (this.ended) return;
    this.ended = true;
    this.server?.close();
    for (const s of this.socks) s.destroy();
    for (const s of this.opening.values()) s.destroy();
    if (notify) this.events.onClosed?.(reason);
  }

  private accept(sock: net.Socket): void {
    if (this.ended || !this.approved) return void sock.destroy();
    sock.setNoDelay(true);
    sock.on("error", () => {});
    const ref = `o${++this.nextRef}`;
    this.opening.set(ref, sock);
    sock.on("close", () => this.opening.delete(ref));
    this.client.send({ t: "open", sessionId: this.approved.sessionId, ref });
  }

  private streamRefused(f: FrameOf<ServerFrame, "error">): void {
    const sock = f.ref ? this.opening.get(f.ref) : undefined;
    if (!sock) return;
    this.opening.delete(f.ref!);
    sock.destroy();
    this.events.onStreamError?.(f.message);
  }

  private streamReady(f: FrameOf<ServerFrame, "stream">): void {
    const local = this.opening.get(f.ref);
    const approved = this.approved;
    if (!local || !approved) return;
    this.opening.delete(f.ref);
    this.socks.add(local);
    local.on("close", () => this.socks.delete(local));
    const raw = dialData(this.client.peer, f.token, () => this.secure(raw, local, approved));
    raw.on("error", () => local.destroy());
    this.socks.add(raw);
    raw.on("close", () => this.socks.delete(raw));
  }

  private secure(raw: net.Socket, local: net.Socket, approved: Approved): void {
    const inner = tls.connect({
      socket: raw, minVersion: "TLSv1.3" as const, secureContext: this.ctx, session: this.tlsSession,
      // The chain is checked against the CA by TLS; the key is checked below, against this session's host.
      checkServerIdentity: () => undefined,
      // Accepted by node's TLSSocket though not in its types; lets the local client half-close.
      ...{ allowHalfOpen: true },
    });
    this.socks.add(inner);
    inner.on("session", (ticket: Buffer) => { this.tlsSession = ticket; });
    inner.on("close", () => this.socks.delete(inner));
    raw.on("error", () => inner.destroy());
    inner.on("error", (err) => {
      this.events.onStreamError?.(`stream failed: ${errorMessage(err)}`);
      inner.destroy();
      local.destroy();
    });
    inner.once("secureConnect", () => {
      // Only the host the coordinator named for this session may answer; the CA alone is not enough.
      if (!peerKeyIs(inner, approved.hostSpki, this.hostCert)) {
        this.events.onStreamError?.("stream failed: the host's key is not the one this session was approved for");
        inner.destroy();
        local.destroy();
        return;
      }
      local.on("close", () => { if (!cleanlyDone(local)) inner.destroy(); });
      inner.on("close", () => { if (!cleanlyDone(inner)) local.destroy(); });
      local.pipe(inner);
      inner.pipe(local);
      local.resume();
    });
  }
}
