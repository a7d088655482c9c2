// Shared harness for in-process coordinator tests: a real Broker, Store, AuditLog and CA; only the peers' connections are fakes that record.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { expect } from "bun:test";
import { AuditLog } from "../../src/audit/log.ts";
import { Broker } from "../../src/coordinator/broker.ts";
import { Admin } from "../../src/coordinator/admin.ts";
import { makeEnrollToken, type EnrollRecord } from "../../src/coordinator/enroll.ts";
import { LIMITS, type Limits } from "../../src/coordinator/limits.ts";
import type { BrokerOptions, Peer, PeerLink } from "../../src/coordinator/state.ts";
import { TesseraError } from "../../src/errors.ts";
import { certFingerprint, certInfo, createCA, createCsr, generateKeyPair } from "../../src/pki/index.ts";
import { Store } from "../../src/store/store.ts";
import { hashCode, normalizeCode } from "../../src/wire/codes.ts";
import {
  PROTOCOL_VERSION,
  type ClientFrame,
  type FrameOf,
  type ServerFrame,
  type StreamReport,
} from "../../src/wire/protocol.ts";

export type SF<T extends ServerFrame["t"]> = FrameOf<ServerFrame, T>;
/** A CPace share's shape: the coordinator relays it without reading it, so these broker tests need no real one. */
/** What a guest sends of a code: its nameplate (a whole code's first half; anything else as typed). */
export const nameplateOf = (code: string) => normalizeCode(code)?.slice(0, 4) ?? code;
export const FAKE_PAKE = { sid: "A".repeat(22), msg: "A".repeat(43) };
const WAIT_MS = 3_000;

/** A PeerLink that keeps every frame and failure, and lets a test wait for a frame instead of sleeping. */
export class FakeLink implements PeerLink {
  readonly frames: ServerFrame[] = [];
  readonly failures: TesseraError[] = [];
  /** Error frames that answered one frame (or one stream of it) and kept the connection, with the ref they name. */
  readonly errors: { code: string; message: string; ref?: string }[] = [];
  private waiters: { test: (f: ServerFrame) => boolean; resolve: (f: ServerFrame) => void }[] = [];

  send(frame: ServerFrame): void {
    this.frames.push(frame);
    for (const w of [...this.waiters])
      if (w.test(frame)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(frame);
      }
  }

  fail(err: TesseraError): void {
    this.failures.push(err);
  }

  sendError(err: TesseraError, ref?: string): void {
    this.errors.push({ code: err.code, message: err.message, ...(ref === undefined ? {} : { ref }) });
  }

  /** The error frame naming `ref` (a stream's refusal is "REF.N"), if one came. */
  errorFor(ref: string): { code: string; message: string; ref?: string } | undefined {
    return this.errors.find((e) => e.ref === ref);
  }

  of<T extends ServerFrame["t"]>(t: T): SF<T>[] {
    return this.frames.filter((f): f is SF<T> => f.t === t);
  }

  /** The first frame of type t matching `pred`, already received or yet to come; rejects after a bounded wait. */
  wait<T extends ServerFrame["t"]>(t: T, pred: (f: SF<T>) => boolean = () => true): Promise<SF<T>> {
    const test = (f: ServerFrame): boolean => f.t === t && pred(f as SF<T>);
    const have = this.frames.find(test);
    if (have) return Promise.resolve(have as SF<T>);
    return new Promise((resolve, reject) => {
      const w = {
        test,
        resolve: (f: ServerFrame) => {
          clearTimeout(timer);
          resolve(f as SF<T>);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(
          new Error(
            `no "${t}" frame within ${WAIT_MS} ms; got: ${this.frames.map((f) => f.t).join(", ") || "nothing"}`,
          ),
        );
      }, WAIT_MS);
      this.waiters.push(w);
    });
  }
}

export type FakePeer = Peer & { readonly ch: FakeLink };

/** Polls a condition that no frame announces (a background store write); bounded, never a fixed sleep. */
export async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}

/** The rejection of `p` (what the Channel would send as an error frame); fails the test if `p` resolves. */
export async function refusal(p: Promise<unknown>): Promise<TesseraError & { ref?: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(TesseraError);
  return err as TesseraError;
}

export interface AuditEvent {
  seq: number;
  event: string;
  [k: string]: unknown;
}
export interface Guest {
  peer: FakePeer;
  csr: string;
  name: string;
}
export interface Approved {
  host: FakePeer;
  guest: FakePeer;
  sessionId: string;
  cert: string;
  requestId: string;
}

export const TARGET = "127.0.0.1:22";

export class World {
  private n = 0;
  private readonly records: EnrollRecord[] = [];
  private constructor(
    readonly dir: string,
    readonly options: BrokerOptions,
    public broker: Broker,
    readonly store: Store,
    readonly audit: AuditLog,
    readonly ca: { certPem: string; keyPem: string },
    readonly codeKey: Buffer,
  ) {}

  /** Production limits but a high redeem rate (fake peers are many addresses, not many minutes); each test shortens what it exercises. */
  static async open(over: Partial<Limits> = {}): Promise<World> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-broker-"));
    const store = await Store.open(path.join(dir, "state.db"));
    const audit = AuditLog.open(path.join(dir, "audit.log"));
    const ca = await createCA({ commonName: "test CA", now: new Date() });
    const codeKey = randomBytes(32);
    // Re-validation every 100 ms: a grace or idle limit a test shortens is acted on promptly.
    const limits: Limits = { ...LIMITS, approvalTimeoutMs: 60_000, redeemPerMinute: 1000, revalidateMs: 100, ...over };
    let w: World | undefined;
    const options: BrokerOptions = {
      ca,
      store,
      audit,
      limits,
      codeKey,
      version: "test",
      enrollRecords: () => w!.records,
    };
    w = new World(dir, options, new Broker(options), store, audit, ca, codeKey);
    return w;
  }

  /** The operator's view and controls over this world's broker (what the HTTP /admin/ endpoints call). */
  admin(): Admin {
    return new Admin(this.broker, this.options);
  }

  /** A coordinator restart: the broker closes and a new one restores from the same store and audit log. */
  async restart(): Promise<Awaited<ReturnType<Broker["restore"]>>> {
    await this.broker.close();
    this.broker = new Broker(this.options);
    return this.broker.restore();
  }

  async close(): Promise<void> {
    await this.broker.close();
    // One round-trip so background writes already issued (session close, code release) settle; a later one only logs a warning.
    await this.store.getMeta("schema_version");
    await this.store.close();
    this.audit.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  events(): AuditEvent[] {
    return fs
      .readFileSync(this.audit.path, "utf8")
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as AuditEvent);
  }

  names(): string[] {
    return this.events().map((e) => e.event);
  }

  one(event: string): AuditEvent {
    const found = this.events().filter((e) => e.event === event);
    expect(found.map((e) => e.event)).toEqual([event]);
    return found[0]!;
  }

  enrollToken(): string {
    const { token, record } = makeEnrollToken(certFingerprint(this.ca.certPem), 60_000, Date.now());
    this.records.push(record);
    return token;
  }

  /** A bare connection: `identity` is what the listener would derive from a client certificate; `ip` its source address (default: a new one). */
  peer(identity: Pick<Peer, "host" | "guest"> = {}, ip?: string): FakePeer {
    const n = ++this.n;
    return {
      id: `c-${n}`,
      addr: `${ip ?? `10.0.${n >> 8}.${n & 255}`}:${40000 + n}`,
      ch: new FakeLink(),
      helloed: false,
      ...identity,
    };
  }

  async hello(p: FakePeer): Promise<FakePeer> {
    await this.broker.handle(p, { t: "hello", v: PROTOCOL_VERSION, client: "test" });
    return p;
  }

  send(p: FakePeer, f: ClientFrame): Promise<void> {
    return this.broker.handle(p, f);
  }

  /** Enrols a host for real (token, CSR, issued certificate), then connects as it the way the listener identifies it. */
  async host(name = "box"): Promise<FakePeer> {
    const link = await this.hello(this.peer());
    const csr = await createCsr({ keys: await generateKeyPair(), commonName: name });
    await this.send(link, { t: "enroll", token: this.enrollToken(), csr, name });
    const info = certInfo(link.ch.of("enrolled")[0]!.cert);
    return this.hello(this.peer({ host: { spki: info.spki, name: info.commonName } }));
  }

  /** An enrolled host whose agent serves (and approves for) `shareId`; `requestsById` as `--allow-requests-by-id`. */
  async agent(shareId = "web", targets = [TARGET], name = "box", requestsById?: boolean): Promise<FakePeer> {
    const a = await this.host(name);
    await this.send(a, { t: "register", shareId, targets, approver: true, requestsById });
    return a;
  }

  /** A guest with a fresh key (or `csr`'s), from a new address (or `ip`). */
  async guest(name = "alice", o: { ip?: string; csr?: string } = {}): Promise<Guest> {
    const csr = o.csr ?? (await createCsr({ keys: await generateKeyPair(), commonName: name }));
    return { peer: await this.hello(this.peer({}, o.ip)), csr, name };
  }

  /** The one "refused" line (aggregated refusals) of address `ip`; the tally writes it at the window's end or at shutdown. */
  refusedLine(ip: string): AuditEvent | undefined {
    const lines = this.events().filter((e) => e.event === "refused" && e.addr === ip);
    expect(lines.length).toBeLessThanOrEqual(1);
    return lines[0];
  }

  /** A guest coming back with the certificate it was approved with (identified as listener.identify does). */
  async returning(cert: string): Promise<FakePeer> {
    const info = certInfo(cert);
    const uri = info.uris.find((u) => u.startsWith("tessera://guest/"))!;
    return this.hello(this.peer({ guest: { sessionId: uri.slice("tessera://guest/".length), spki: info.spki } }));
  }

  async mint(approver: FakePeer, shareId = "web"): Promise<string> {
    await this.send(approver, { t: "mint", shareId });
    return approver.ch.of("code").at(-1)!.nameplate;
  }

  codeUsed(code: string): Promise<boolean> {
    return this.store.getCode(hashCode(this.codeKey, nameplateOf(code))).then((r) => r?.usedAt !== null);
  }

  /** Redeems `code` and returns the request id from the guest's "pending" frame. */
  async redeem(g: Guest, code: string): Promise<string> {
    await this.send(g.peer, {
      t: "redeem",
      code: nameplateOf(code),
      csr: g.csr,
      name: g.name,
      reason: "testing",
      pake: FAKE_PAKE,
    });
    return g.peer.ch.of("pending").at(-1)!.requestId;
  }

  /**
   * The code's PAKE run, both confirmations relayed (the coordinator reads no tag, so fake ones do): the
   * guest confirms first, then the host. Only then may the host say yes to a code request.
   */
  async confirmed(host: FakePeer, g: Guest, requestId: string): Promise<void> {
    await this.send(host, { t: "pake", requestId, msg: "bXNn", hostSpki: host.host!.spki });
    await this.send(g.peer, { t: "confirm", requestId, tag: "Z3Q" });
    await this.send(host, { t: "confirmed", requestId, tag: "aHQ" });
  }

  /**
   * The guest asks for its session's data channel: the guest's `stream` frame for it (its id, token, and the
   * direct token when the path is direct). The agent's `incoming` for it is sent at the same time.
   */
  async channel(s: Approved, ref = `ch${++this.n}`): Promise<SF<"stream">> {
    await this.send(s.guest, { t: "open", sessionId: s.sessionId, ref, channel: true });
    return s.guest.ch.wait("stream", (f) => f.ref === ref);
  }

  /**
   * The guest opens streams `mux` on channel `via` in one frame (ref `ref`): the agent's `incoming` for each
   * stream the coordinator let through (each comes once its open line is on disk); refused ones are in the
   * guest's `errors` as "REF.N".
   */
  async stream(s: Approved, via: string, mux: number[] = [1], ref = `m${++this.n}`): Promise<SF<"incoming">[]> {
    await this.send(s.guest, { t: "open", sessionId: s.sessionId, ref, via, mux });
    const through = mux.filter((n) => !s.guest.ch.errorFor(`${ref}.${n}`));
    return Promise.all(through.map((n) => s.host.ch.wait("incoming", (f) => f.via === via && f.mux === n)));
  }

  /** The agent's word on one stream (its state and byte counts so far), as its report batch carries it. */
  report(s: Approved, r: StreamReport, from: FakePeer = s.host): Promise<void> {
    return this.send(from, { t: "direct-stream", sessionId: s.sessionId, reports: [r] });
  }

  /** A full consent round: a fresh code, a guest asks, the agent approves. */
  async session(host?: FakePeer, name = "alice"): Promise<Approved> {
    const h = host ?? (await this.agent());
    const g = await this.guest(name);
    const requestId = await this.redeem(g, await this.mint(h));
    await this.confirmed(h, g, requestId);
    await this.send(h, { t: "decision", requestId, allow: true });
    const ok = await g.peer.ch.wait("approved", (f) => f.requestId === requestId);
    return { host: h, guest: g.peer, sessionId: ok.sessionId, cert: ok.cert, requestId };
  }
}
