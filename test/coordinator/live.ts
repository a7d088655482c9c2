// A real Coordinator listening on loopback port 0 (real CA, certificate, store, audit log and /healthz) for listener tests.
import fs from "node:fs";
import type net from "node:net";
import os from "node:os";
import path from "node:path";
import tls from "node:tls";
import { randomBytes } from "node:crypto";
import { AuditLog } from "../../src/audit/log.ts";
import { makeEnrollToken, type EnrollRecord } from "../../src/coordinator/enroll.ts";
import { OperatorGate } from "../../src/coordinator/operator-gate.ts";
import { startHttp } from "../../src/coordinator/http.ts";
import { LIMITS, type Limits } from "../../src/coordinator/limits.ts";
import { Coordinator } from "../../src/coordinator/listener.ts";
import {
  certFingerprint,
  certInfo,
  createCA,
  createCsr,
  exportPrivateKeyPem,
  generateKeyPair,
  issueCert,
  sanForName,
} from "../../src/pki/index.ts";
import { Store } from "../../src/store/store.ts";
import { ControlClient } from "../../src/wire/control-client.ts";
import { encodeFrame } from "../../src/wire/codec.ts";
import { PROTOCOL_VERSION } from "../../src/wire/protocol.ts";

export const WAIT_MS = 10_000;

/** Retries `attempt` until it resolves (bounded): for what only shows as "a new connection works again". */
export async function eventually<T>(attempt: () => Promise<T>, what: string): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${(err as Error).message}`);
      await Bun.sleep(20);
    }
  }
}

/** `p`, or a rejection naming `what` after a bounded wait. */
export function within<T>(p: Promise<T>, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new Error(`no ${what} within ${WAIT_MS} ms`)), WAIT_MS);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(t));
}

/** Resolves once `sock` closes; rejects after a bounded wait (a socket the coordinator never closes). */
export function closed(sock: net.Socket, what: string): Promise<void> {
  if (sock.destroyed) return Promise.resolve();
  sock.resume(); // a paused socket never sees its close
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} was not closed within ${WAIT_MS} ms`)), WAIT_MS);
    sock.once("close", () => {
      clearTimeout(t);
      resolve();
    });
  });
}

export class Live {
  private readonly records: EnrollRecord[] = [];
  private constructor(
    readonly dir: string,
    readonly coordinator: Coordinator,
    readonly port: number,
    readonly http: ReturnType<typeof startHttp>,
    readonly ca: { certPem: string; keyPem: string },
    private readonly store: Store,
    readonly audit: AuditLog,
  ) {}

  static async start(over: Partial<Limits> = {}): Promise<Live> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-listener-"));
    const now = new Date();
    const ca = await createCA({ commonName: "test CA", now });
    const keys = await generateKeyPair();
    const certPem = await issueCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      publicKey: keys.publicKey,
      commonName: "localhost",
      ...sanForName("localhost"),
      usage: "server",
      now,
      validForSeconds: 86400,
    });
    const store = await Store.open(path.join(dir, "state.db"));
    const audit = AuditLog.open(path.join(dir, "audit.log"));
    let live: Live | undefined;
    const coordinator = new Coordinator({
      ca,
      certPem,
      keyPem: await exportPrivateKeyPem(keys.privateKey),
      store,
      audit,
      limits: { ...LIMITS, ...over },
      codeKey: randomBytes(32),
      version: "test",
      enrollRecords: () => live!.records,
    });
    const { port } = await coordinator.listen("127.0.0.1", 0);
    const http = startHttp({
      host: "127.0.0.1",
      port: 0,
      version: "test",
      broker: coordinator.broker,
      gate: new OperatorGate({ tokenHash: undefined, audit, windowMs: 60_000, maxAddresses: 100, warn: () => {} }),
      health: () => coordinator.health(),
    });
    live = new Live(dir, coordinator, port, http, ca, store, audit);
    return live;
  }

  get address(): string {
    return `localhost:${this.port}`;
  }

  /** A full control connection: TLS 1.3 verified against the CA, hello, welcome. */
  dial(identity: { keyPem?: string; certPem?: string } = {}): Promise<ControlClient> {
    return ControlClient.dial({ address: this.address, caPem: this.ca.certPem, version: "test", ...identity });
  }

  /** A one-time enrolment token for this coordinator (what `tessera link --token` takes). */
  enrolToken(): string {
    const { token, record } = makeEnrollToken(certFingerprint(this.ca.certPem), 60_000, Date.now());
    this.records.push(record);
    return token;
  }

  /** An enrolled host's certificate and key, enrolled over a real control connection. */
  async enrolledHost(name = "box"): Promise<{ keyPem: string; certPem: string; spki: string }> {
    const { token, record } = makeEnrollToken(certFingerprint(this.ca.certPem), 60_000, Date.now());
    this.records.push(record);
    const keys = await generateKeyPair();
    const c = await this.dial();
    c.send({ t: "enroll", token, csr: await createCsr({ keys, commonName: name }), name });
    const { cert } = await c.next("enrolled");
    c.close();
    return { keyPem: await exportPrivateKeyPem(keys.privateKey), certPem: cert, spki: certInfo(cert).spki };
  }

  /** A TLS connection that has said hello and nothing else, as raw bytes (so a test can send half a frame). */
  async helloed(localAddress?: string): Promise<tls.TLSSocket> {
    const s = tls.connect({
      host: "127.0.0.1",
      port: this.port,
      ca: this.ca.certPem,
      servername: "localhost",
      minVersion: "TLSv1.3",
      ...(localAddress ? { localAddress } : {}),
    });
    s.on("error", () => {});
    await new Promise<void>((resolve, reject) => {
      s.once("secureConnect", () => resolve());
      s.once("close", () => reject(new Error("closed before the TLS handshake completed")));
    });
    s.write(encodeFrame({ t: "hello", v: PROTOCOL_VERSION, client: "test" }));
    return s;
  }

  async healthz(): Promise<{ status: number; body: string }> {
    const r = await fetch(`http://127.0.0.1:${this.http.port}/healthz`);
    return { status: r.status, body: await r.text() };
  }

  async close(): Promise<void> {
    this.http.stop(true);
    await this.coordinator.close();
    await this.store.close();
    this.audit.close();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
