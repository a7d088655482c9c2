// What the coordinator holds in memory about connections, shares, requests and sessions.
import { randomBytes } from "node:crypto";
import { RefusedError, errorMessage } from "../errors.ts";
import type { AuditLog } from "../audit/log.ts";
import type { Store } from "../store/store.ts";
import type { EnrollRecord } from "./enroll.ts";
import type { Limits } from "./limits.ts";
import type { Peer } from "./peer.ts";
import { streamRefusal, type Scope } from "../wire/scope.ts";
import type { Receipt } from "../wire/receipt.ts";
import type { Stream } from "./splice.ts";
import type { Cluster } from "./cluster.ts";

export type { Peer, PeerLink } from "./peer.ts";

export interface GuestInfo {
  name: string;
  addr: string;
  spki: string;
}

export interface LiveShare {
  id: string;
  hostSpki: string;
  hostName: string;
  targets: string[];
  /** The host lets guests ask by share id, without a code (set by each register). */
  requestsById?: boolean;
  /** Absent while the agent is away (lost connection, coordinator restarted); see offlineSince. */
  agent?: Peer;
  offlineSince?: number;
  /** Why the agent is away, for the share's close line if it does not come back. */
  awayReason?: string;
  /** Set while the share is taken over for an agent registering here (resolves once it has, or soon after). */
  arriving?: Promise<void>;
  agentArrived?: () => void;
  approvers: Set<Peer>;
  /** Connections attached mint-only (`tessera mcp`): they may mint codes, never answer a request. */
  minters?: Set<Peer>;
  requests: Set<Request>;
  sessions: Set<Session>;
}

export interface Request {
  id: string;
  share: LiveShare;
  guest: Peer;
  guestInfo: GuestInfo;
  publicKey: CryptoKey;
  target: string;
  /** The redeemed code's hash, given back if the host never gets to answer. */
  codeHash?: string;
  /** The guest's CPace share, relayed to the approvers; absent for a request by share id. */
  pake?: { nameplate: string; sid: string; msg: string };
  /** The approver that answered the PAKE: it alone hears the guest's confirmation. The code is spent from then on. */
  pakeFrom?: Peer;
  /** The host checked the guest's confirmation and sent its own: the run is confirmed (or failed: mismatch audited). */
  pakeDone?: "confirmed" | "mismatch";
  /** The guest's long-term identity and its signature over this request, relayed to the approvers. */
  identity?: { pub: string; sig: string; fingerprint: string };
  timer: ReturnType<typeof setTimeout>;
}

export interface Session {
  id: string;
  share: LiveShare;
  /** Absent while the guest is away; see detachedSince. */
  guest?: Peer;
  detachedSince?: number;
  /** Why the guest is away, for the session's close line if it does not come back. */
  awayReason?: string;
  /** Restored from the store by a restarted coordinator and not yet resumed. */
  restored: boolean;
  approver?: Peer;
  guestInfo: GuestInfo;
  target: string;
  openedAt: number;
  /** The host's scoped yes, if any: the coordinator holds the session to it (so does the agent). */
  scope?: Scope;
  /** The host's signed receipt for this session's approval, passed on to the agent (see wire/receipt.ts). */
  receipt?: Receipt;
  streams: Set<Stream>;
  streamCount: number;
  up: number;
  down: number;
  lastActive: number;
  lastBytes: number;
}

export interface BrokerOptions {
  ca: { certPem: string; keyPem: string };
  store: Store;
  audit: AuditLog;
  limits: Limits;
  codeKey: Buffer;
  version: string;
  enrollRecords: () => EnrollRecord[];
  /** Set when this coordinator is one node of several sharing PostgreSQL (see cluster.ts). */
  cluster?: Cluster;
  /** Test only (TESSERA_TEST_INJECT_HINT): a direct-path hint added to every guest's, to prove agents refuse it. */
  injectHint?: { host: string; port: number };
}

export function requireHost(peer: Peer): { spki: string; name: string } {
  if (!peer.host)
    throw new RefusedError(
      "not_host",
      "this needs an enrolled host certificate; run `tessera link COORDINATOR --token TOKEN` on this machine first",
    );
  return peer.host;
}

export function newId(prefix: string): string {
  return `${prefix}-${randomBytes(9).toString("base64url")}`;
}

export function ip(addr: string): string {
  return addr.replace(/:\d+$/, "");
}

export function formatDuration(ms: number): string {
  if (ms % 60_000 === 0) return `${ms / 60_000} minute${ms === 60_000 ? "" : "s"}`;
  return `${ms / 1000}s`;
}

/** Store writes that follow an audited action: a failure is logged, never silently dropped (the promise never rejects). */
export function background(p: Promise<unknown>, what: string, warn: (m: string) => void): Promise<void> {
  return p.then(
    () => {},
    (err) => warn(`store: ${what} failed: ${errorMessage(err)}`),
  );
}

/** A session's streams offered and not yet paired (bounded by maxStreamsPerSession). */
export function pendingOf(s: Session): number {
  let n = 0;
  for (const st of s.streams) if (!st.spliced) n++;
  return n;
}

/** Who a session line is about: the guest (name, key, address it asked from), the host and the share. */
export function actors(s: Session) {
  return {
    sessionId: s.id,
    shareId: s.share.id,
    host: s.share.hostName,
    guest: s.guestInfo.name,
    guestKey: s.guestInfo.spki,
    addr: s.guestInfo.addr,
  };
}

/** The host's scoped yes (`y 15m`, `y 1`): counted in streams opened, as the agent counts them too. */
export function scopeCheck(s: Session, ref: string): void {
  const scoped = streamRefusal(s.scope, s.streamCount, s.openedAt, Date.now());
  if (scoped) throw new RefusedError("limit", scoped, { ref });
}
