// The operator's view and controls: live sessions, enrolled hosts, removing a host, minting enrolment
// tokens. Every action is audited with who asked (the operator token's holder, their declared name, address).
import { TesseraError } from "../errors.ts";
import { certFingerprint } from "../pki/index.ts";
import type { Broker } from "./broker.ts";
import { makeEnrollToken } from "./enroll.ts";
import { pathOf } from "./direct.ts";
import { remoteSessions } from "./remote-sessions.ts";
import { describeScope } from "../wire/scope.ts";
import type { BrokerOptions, Session } from "./state.ts";

/** Who asked: the holder of the operator token, the name their client declared (unverified) and their address. */
export interface Operator {
  name?: string;
  addr: string;
}

/** A refusal of the operator's request, with the HTTP status that carries it. */
export class AdminError extends TesseraError {
  override name = "AdminError";
  constructor(
    readonly status: 400 | 404 | 409 | 503,
    message: string,
  ) {
    super("admin", message);
  }
}

export interface SessionView {
  id: string;
  shareId: string;
  host: string;
  hostKey: string;
  guest: string;
  guestKey: string;
  guestAddr: string;
  target: string;
  /** What the host's yes allows: this one target, until ended or idle this long. */
  scope: {
    target: string;
    idleLimitSec: number;
    /** The host's scoped yes in words ("for 15 minutes, one connection"); "" when it set none. */
    granted: string;
    /** Seconds until a time scope ends the session (absent without one). */
    timeLeftSec?: number;
    /** Streams the scope still allows (absent without a stream count). */
    streamsLeft?: number;
  };
  /** How the session's streams travel: direct (the agent dials the guest) or through the relay; unknown on another node. */
  path: "direct" | "relay" | "unknown";
  /** "on another node": held by another node of the deployment (its live streams and idle time are that node's). */
  state: "live" | "guest away" | "host away" | "on another node";
  openedAt: string;
  idleSec: number;
  streams: { live: number; total: number };
  /** Bytes relayed guest -> host and host -> guest (ciphertext), live streams included. */
  bytesUp: number;
  bytesDown: number;
}

export interface HostView {
  name: string;
  key: string;
  enrolledAt: string;
  /** Now while connected; else when its last connection ended (null: never connected since enrolling). */
  lastSeen: string | null;
  connections: number;
  shares: { id: string; targets: string[]; online: boolean; sessions: number }[];
  removedAt?: string;
  removedBy?: string;
}

export const MIN_TOKEN_TTL_MS = 60_000;
export const MAX_TOKEN_TTL_MS = 30 * 86_400_000;
/** A fingerprint prefix must be this long (after "SHA256:") to pick a host. */
const MIN_KEY_PREFIX = 8;

export class Admin {
  constructor(
    private readonly broker: Broker,
    private readonly o: Pick<BrokerOptions, "store" | "audit" | "limits" | "ca" | "enrollRecords" | "cluster">,
  ) {}

  /** This node's live sessions. */
  sessions(now = Date.now()): SessionView[] {
    return [...this.broker.sessions.all.values()].map((s) => this.sessionView(s, now));
  }

  /** The deployment's: this node's, and with several nodes the others' from the shared store. */
  async allSessions(now = Date.now()): Promise<SessionView[]> {
    const mine = this.sessions(now);
    if (!this.o.cluster) return mine;
    const idleLimitSec = Math.round(this.o.limits.idleTimeoutMs / 1000);
    return [...mine, ...(await remoteSessions(this.o.store, new Set(mine.map((s) => s.id)), idleLimitSec, now))];
  }

  private sessionView(s: Session, now: number): SessionView {
    let up = s.up;
    let down = s.down;
    let live = 0;
    for (const st of s.streams) {
      // A data channel is no stream: the operator sees the streams inside it.
      if (st.kind === "channel") continue;
      up += st.up;
      down += st.down;
      live++;
    }
    // Bytes since the last re-validation count as activity now, not at the next check.
    const idleSince = up + down !== s.lastBytes ? now : s.lastActive;
    return {
      id: s.id,
      shareId: s.share.id,
      host: s.share.hostName,
      hostKey: s.share.hostSpki,
      guest: s.guestInfo.name,
      guestKey: s.guestInfo.spki,
      guestAddr: s.guestInfo.addr,
      target: s.target,
      scope: {
        target: s.target,
        idleLimitSec: Math.round(this.o.limits.idleTimeoutMs / 1000),
        granted: describeScope(s.scope),
        ...(s.scope?.ttlMs !== undefined
          ? { timeLeftSec: Math.max(0, Math.ceil((s.openedAt + s.scope.ttlMs - now) / 1000)) }
          : {}),
        ...(s.scope?.streams !== undefined ? { streamsLeft: Math.max(0, s.scope.streams - s.streamCount) } : {}),
      },
      path: pathOf(s),
      state: s.detachedSince !== undefined ? "guest away" : s.share.agent ? "live" : "host away",
      openedAt: new Date(s.openedAt).toISOString(),
      idleSec: Math.max(0, Math.floor((now - idleSince) / 1000)),
      streams: { live, total: s.streamCount },
      bytesUp: up,
      bytesDown: down,
    };
  }

  /** Enrolled hosts (with `all`, removed ones too), with what each is serving now. */
  async hosts(all = false, now = Date.now()): Promise<HostView[]> {
    const shares = [...this.broker.liveShares.values()];
    return (await this.o.store.hosts())
      .filter((h) => all || h.removedAt === null)
      .map((h) => {
        const connections = this.broker.hosts.connections(h.spki).length;
        const lastSeen = connections > 0 ? now : h.lastSeen;
        return {
          name: h.name,
          key: h.spki,
          enrolledAt: iso(h.enrolledAt),
          lastSeen: lastSeen === null ? null : iso(lastSeen),
          connections,
          shares: shares
            .filter((sh) => sh.hostSpki === h.spki)
            .map((sh) => ({
              id: sh.id,
              targets: sh.targets,
              online: sh.agent !== undefined,
              sessions: sh.sessions.size,
            })),
          ...(h.removedAt !== null ? { removedAt: iso(h.removedAt), removedBy: h.removedBy ?? "" } : {}),
        };
      });
  }

  /**
   * Removes a host by name or key fingerprint (a unique prefix will do): from now on its certificate is
   * refused, on every node (the store says so), and its shares and sessions end at once.
   */
  async removeHost(selector: string, who: Operator, now = Date.now()) {
    const sel = selector.trim();
    const byKey = sel.startsWith("SHA256:");
    if (byKey && sel.length < "SHA256:".length + MIN_KEY_PREFIX)
      throw new AdminError(
        400,
        `give at least ${MIN_KEY_PREFIX} characters of the key after SHA256: (\`tessera admin hosts\` shows them)`,
      );
    const matches = (await this.o.store.hosts()).filter((h) => (byKey ? h.spki.startsWith(sel) : h.name === sel));
    const live = matches.filter((h) => h.removedAt === null);
    if (matches.length === 0)
      throw new AdminError(404, `no host is named "${sel}" or has that key; \`tessera admin hosts\` lists them`);
    if (live.length === 0) {
      const h = matches[0]!;
      throw new AdminError(409, `host "${h.name}" (${h.spki}) was already removed at ${iso(h.removedAt!)}`);
    }
    if (live.length > 1) {
      throw new AdminError(
        409,
        `${live.length} hosts match "${sel}": ${live.map((h) => `${h.name} ${h.spki}`).join(", ")}; remove one by its key`,
      );
    }
    const h = live[0]!;
    const by = describe(who);
    if (!(await this.o.store.removeHost(h.spki, by, now)))
      throw new AdminError(409, `host "${h.name}" (${h.spki}) was removed meanwhile`);
    this.o.audit.append("host.remove", {
      host: h.name,
      hostKey: h.spki,
      by: "operator",
      operator: who.name,
      addr: who.addr,
    });
    const cut = this.broker.removeHost(h.spki);
    return { host: h.name, key: h.spki, removedAt: iso(now), ...cut };
  }

  /** A new single-use host enrolment token; only its hash is kept (in the store, so every node knows it). */
  async enrollToken(
    ttlMs: number,
    who: Operator,
    now = Date.now(),
  ): Promise<{ token: string; id: string; expiresAt: string }> {
    if (!Number.isFinite(ttlMs) || ttlMs < MIN_TOKEN_TTL_MS || ttlMs > MAX_TOKEN_TTL_MS)
      throw new AdminError(400, "an enrolment token lives between 1 minute and 30 days (--ttl)");
    const fileIds = new Set(this.o.enrollRecords().map((r) => r.id));
    // Ids are 32 random bits: a clash with a token on file or already used is rare, and simply redrawn.
    for (let i = 0; i < 8; i++) {
      const { token, record } = makeEnrollToken(certFingerprint(this.o.ca.certPem), ttlMs, now);
      if (fileIds.has(record.id) || !(await this.o.store.putEnrollToken(record, describe(who), now))) continue;
      this.o.audit.append("enrol.token", {
        tokenId: record.id,
        expiresAt: iso(record.expiresAt),
        by: "operator",
        operator: who.name,
        addr: who.addr,
      });
      return { token, id: record.id, expiresAt: iso(record.expiresAt) };
    }
    throw new AdminError(503, "could not draw an unused token id; try again");
  }
}

function describe(who: Operator): string {
  return who.name ? `operator ${who.name} from ${who.addr}` : `operator from ${who.addr}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
