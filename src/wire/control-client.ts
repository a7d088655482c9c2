// Client end of a control connection: dial with TLS 1.3, say hello, then await frames by type.
import net from "node:net";
import tls from "node:tls";
import { RefusedError, TesseraError, type ErrorCode } from "../errors.ts";
import { certFingerprint, derToPem, verifyIssuedBy } from "../pki/index.ts";
import { splitAddress } from "./address.ts";
import { Channel } from "./channel.ts";
import { PROTOCOL_VERSION, ServerFrame, type ClientFrame, type FrameOf } from "./protocol.ts";
import { escapeUnsafe } from "./untrusted-text.ts";
import { logger } from "../log.ts";

const log = logger("coordinator");

export interface DialOptions {
  /** host:port of the coordinator. */
  address: string;
  /** The CA to verify the coordinator against; omitted only to fetch and pin it (link). */
  caPem?: string;
  /** With caPem omitted: the CA's SHA-256 (hex) that must match what the coordinator presents. */
  caPinHex?: string;
  keyPem?: string;
  certPem?: string;
  version: string;
}

/** The coordinator closes a refused connection at once, and forcibly 2 s later (Channel.fail). */
const REFUSAL_CLOSE_MS = 5_000;

type Waiter = { types: string[]; resolve: (f: ServerFrame) => void; reject: (e: Error) => void };

export class ControlClient {
  private readonly waiters: Waiter[] = [];
  private readonly handlers = new Map<string, ((f: ServerFrame) => void)[]>();
  private closeHandler: ((err?: Error) => void) | undefined;
  private moveHandler: ((why: string) => void) | undefined;
  /** An error frame nobody was waiting for: the coordinator's reason for closing, if it closes right after. */
  private refused: { err: RefusedError; at: number } | undefined;
  readonly ch: Channel<ServerFrame, ClientFrame>;
  /** The CA certificate the coordinator announced in its welcome. */
  caPem = "";

  private constructor(
    readonly socket: tls.TLSSocket,
    private readonly address: string,
  ) {
    this.ch = new Channel<ServerFrame, ClientFrame>(socket, ServerFrame, {
      // The coordinator is authenticated and answers a burst of streams with a burst of frames (an
      // agent gets one "incoming" per stream of every guest): the flood guard sized for untrusted
      // peers would cut the agent off. Still bounded, by the coordinator's own stream caps.
      maxQueued: 4096,
      onFrame: (f) => this.dispatch(f),
      onClose: (closedWith) => {
        // The coordinator refuses (error frame) and closes at once; a refusal from long before explains nothing.
        const err =
          closedWith ??
          (this.refused && Date.now() - this.refused.at < REFUSAL_CLOSE_MS ? this.refused.err : undefined);
        const e = new TesseraError(
          "disconnected",
          `lost the connection to the coordinator${err ? `: ${err.message}` : ""}`,
        );
        for (const w of this.waiters.splice(0)) w.reject(e);
        this.closeHandler?.(err);
      },
    });
  }

  static async dial(o: DialOptions): Promise<ControlClient> {
    const { host, port } = splitAddress(o.address);
    const socket = await new Promise<tls.TLSSocket>((resolve, reject) => {
      const s = tls.connect({
        host,
        port,
        minVersion: "TLSv1.3",
        ca: o.caPem,
        key: o.keyPem,
        cert: o.certPem,
        servername: net.isIP(host) ? undefined : host,
        rejectUnauthorized: o.caPem !== undefined,
      });
      s.once("secureConnect", () => resolve(s));
      s.once("error", (err) => reject(dialError(o.address, err)));
      s.setTimeout(10_000, () => s.destroy(new Error("timed out")));
    });
    socket.setTimeout(0);
    socket.setNoDelay(true);
    const c = new ControlClient(socket, o.address);
    c.ch.send({ t: "hello", v: PROTOCOL_VERSION, client: o.version });
    const welcome = await c.next("welcome");
    c.caPem = welcome.ca;
    // A coordinator that went silent (its machine vanished, a network path died) is noticed as fast
    // as it notices us, and the caller reconnects as after a restart.
    c.ch.beat(welcome.heartbeat);
    if (o.caPem === undefined) await c.checkPinned(host, o.caPinHex);
    return c;
  }

  /** Without a trusted CA yet: the announced CA must match the pin and must have signed the server's certificate. */
  private async checkPinned(host: string, pinHex?: string): Promise<void> {
    const got = certFingerprint(this.caPem);
    if (pinHex !== undefined && got !== pinHex) {
      this.close();
      throw new TesseraError(
        "ca_mismatch",
        `the coordinator's CA has fingerprint sha256:${got}, not the expected sha256:${pinHex}; someone may be intercepting, or the token is for another coordinator`,
      );
    }
    const raw = this.socket.getPeerCertificate()?.raw;
    const leaf = raw ? derToPem(raw, "CERTIFICATE") : "";
    await verifyIssuedBy(leaf, this.caPem, new Date());
    const cert = this.socket.getPeerCertificate();
    const bad = tls.checkServerIdentity(host, cert);
    if (bad) {
      this.close();
      throw new TesseraError("ca_mismatch", wrongName(this.address, cert?.subjectaltname));
    }
  }

  /** The coordinator's resolved address as this connection reached it; data connections dial the same. */
  get peer(): { host: string; port: number } {
    return { host: this.socket.remoteAddress!, port: this.socket.remotePort! };
  }

  send(f: ClientFrame): void {
    this.ch.send(f);
  }

  /** Resolves with the next frame of one of these types; an unreferenced error frame rejects it. */
  next<T extends ServerFrame["t"]>(...types: T[]): Promise<FrameOf<ServerFrame, T>> {
    if (this.ch.closed) return Promise.reject(new TesseraError("disconnected", "not connected to the coordinator"));
    return new Promise((resolve, reject) =>
      this.waiters.push({ types, resolve: resolve as (f: ServerFrame) => void, reject }),
    );
  }

  on<T extends ServerFrame["t"]>(type: T, fn: (f: FrameOf<ServerFrame, T>) => void): void {
    const list = this.handlers.get(type) ?? [];
    list.push(fn as (f: ServerFrame) => void);
    this.handlers.set(type, list);
  }

  /**
   * Stops serving or approving a share on purpose (the coordinator acts on it, unlike a dropped
   * connection), waits a moment for the acknowledgement, and closes.
   */
  async leave(shareId: string): Promise<void> {
    if (!this.ch.closed) {
      this.send({ t: "leave", shareId });
      await Promise.race([this.next("left").catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
    }
    this.close();
  }

  onClose(fn: (err?: Error) => void): void {
    this.closeHandler = fn;
  }

  /** The coordinator node is stopping and asks this client to reconnect elsewhere now (see "moving"). */
  onMove(fn: (why: string) => void): void {
    this.moveHandler = fn;
  }

  close(): void {
    this.ch.close();
  }

  private dispatch(f: ServerFrame): void {
    // Only the last word before a close explains it.
    this.refused = undefined;
    if (f.t === "ping") return this.send({ t: "pong" });
    // Not an answer to anything this client waits for: a request in flight must not read it as a refusal.
    if (f.t === "error" && f.code === "moving") return this.moveHandler?.(f.message);
    if (f.t === "error" && !f.ref && this.waiters.length) {
      this.waiters.shift()!.reject(refusal(f));
      return;
    }
    const i = this.waiters.findIndex((w) => w.types.includes(f.t));
    if (i >= 0) return this.waiters.splice(i, 1)[0]!.resolve(f);
    const hs = this.handlers.get(f.t);
    if (hs) for (const h of hs) h(f);
    else if (f.t === "error") this.refused = { err: refusal(f), at: Date.now() };
    // Whoever holds this connection shows a notice the same way unless it listens for one itself.
    else if (f.t === "notice") log.warn(`the coordinator says: ${escapeUnsafe(f.message)}`);
  }
}

/** An error frame from the coordinator as a typed refusal (a newer coordinator may send a code we do not list). */
export function refusal(f: FrameOf<ServerFrame, "error">): RefusedError {
  return new RefusedError(f.code as ErrorCode, f.message, { ref: f.ref });
}

/** The names a certificate holds, from Node's subjectaltname ("DNS:a, IP Address:127.0.0.1"). */
function certNames(san: string | undefined): string[] {
  return (san ?? "")
    .split(",")
    .map((s) => s.trim().replace(/^(DNS|IP Address):/, ""))
    .filter(Boolean);
}

/** A certificate that does not name the address dialled: say which names it holds and the address to use. */
function wrongName(address: string, san: string | undefined): string {
  const names = certNames(san);
  if (names.length === 0)
    return `the coordinator at ${address} presents a certificate that names no address at all; the operator must make a new one for the name you dial`;
  const { host, port } = splitAddress(address);
  const loopback = host === "127.0.0.1" || host === "::1" || host === "localhost";
  const pick = (loopback && names.find((n) => n === "localhost" || n === "127.0.0.1" || n === "::1")) || names[0]!;
  const list = names.length === 1 ? pick : names.join(", ");
  return `the coordinator's certificate names ${list}, not ${host}; use ${pick.includes(":") ? `[${pick}]` : pick}:${port}`;
}

function dialError(address: string, err: Error & { code?: string; cert?: { subjectaltname?: string } }): TesseraError {
  const unreachable: Record<string, string> = {
    ECONNREFUSED: "connection refused (is the coordinator running?)",
    ENOTFOUND: "host not found",
    ETIMEDOUT: "timed out",
  };
  // These mean the coordinator answered, but not with a certificate this machine trusts.
  const untrusted: Record<string, string> = {
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: "its certificate is not signed by the CA this machine linked",
    SELF_SIGNED_CERT_IN_CHAIN: "its certificate is not signed by the CA this machine linked",
    DEPTH_ZERO_SELF_SIGNED_CERT: "it presented a self-signed certificate, not one from the CA this machine linked",
    ERR_TLS_CERT_ALTNAME_INVALID: "its certificate does not name this address",
    CERT_HAS_EXPIRED: "its certificate has expired",
  };
  const code = err.code ?? "";
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID")
    return new TesseraError("ca_mismatch", wrongName(address, err.cert?.subjectaltname), { cause: err });
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || /WRONG_VERSION_NUMBER/.test(err.message))
    return new TesseraError(
      "connect",
      `${address} answered without TLS: that is the coordinator's HTTP port (--http), or not a coordinator; use the --listen port (8443 by default)`,
      { cause: err },
    );
  if (untrusted[code]) {
    return new TesseraError(
      "ca_mismatch",
      `reached the coordinator at ${address}, but ${untrusted[code]}; if the CA file or address is wrong, link again: \`tessera link ${address} --ca-file CA.crt\` (or --ca-pin sha256:... from the operator)`,
      { cause: err },
    );
  }
  return new TesseraError(
    "connect",
    `cannot reach the coordinator at ${address}: ${unreachable[code] ?? err.message}`,
    { cause: err },
  );
}
