// Coordinator state over Bun's SQL client: SQLite file by default, PostgreSQL by URL.
import { SQL } from "bun";
import { MIGRATIONS } from "./schema.ts";
import { NodeStore } from "./nodes.ts";
import { StreamStore } from "./streams.ts";
import { privateFile } from "./private-file.ts";
import { PgConnection, PG_TIMEOUTS, type PgTimeouts } from "./pg-connection.ts";

export interface ShareRow {
  id: string;
  hostSpki: string;
  hostName: string;
  targets: string[];
}
export interface SessionRow {
  id: string;
  shareId: string;
  guestSpki: string;
  guestName: string;
  guestAddr: string;
  hostName: string;
  target: string;
  openedAt: number;
  streams: number;
  bytesUp: number;
  bytesDown: number;
  /** The host's scoped yes, as JSON (checked by the reader), or null. */
  scope?: string | null;
  /** The host's signed receipt, as JSON (checked by the reader), or null. */
  receipt?: string | null;
}
export interface RequestRow {
  id: string;
  shareId: string;
  codeHash: string | null;
  guestName: string;
  guestSpki: string;
  target: string;
  createdAt: number;
}
export interface CodeRow {
  shareId: string;
  target: string;
  expiresAt: number;
  usedAt: number | null;
}
export interface HostRow {
  spki: string;
  name: string;
  enrolledAt: number;
  lastSeen: number | null;
  removedAt: number | null;
  removedBy: string | null;
}
/** An enrolment token as kept at rest: its id and the SHA-256 of its secret, never the secret. */
export interface EnrollTokenRow {
  id: string;
  hash: string;
  expiresAt: number;
}

/**
 * A write about a share made by one node of several: it takes effect only while that node still holds
 * the share's lease at that epoch (see nodes.ts), so a node that lost the share cannot write about it.
 */
export interface Fence {
  node: string;
  epoch: number;
}

/** Any fixed number: the key of the advisory lock nodes take to migrate the schema. */
const MIGRATION_LOCK = 0x7e55e7a;

export class Store {
  /** What several nodes of one deployment share (PostgreSQL only; see nodes.ts). */
  readonly nodes: NodeStore;
  /** Streams open now and the sessions' totals, written in one batch (streams.ts). */
  readonly streams: StreamStore;

  private constructor(
    private readonly sql: SQL,
    readonly kind: "sqlite" | "postgres",
    /** PostgreSQL only: the connection with deadlines and an outage probe (see pg-connection.ts). */
    readonly pg?: PgConnection,
  ) {
    this.nodes = new NodeStore(sql);
    this.streams = new StreamStore(sql);
  }

  /** `path` is a file path, `sqlite://...`, `:memory:`, or `postgres://...`. */
  static async open(path: string, timeouts: PgTimeouts = PG_TIMEOUTS): Promise<Store> {
    const isPg = /^postgres(ql)?:\/\//.test(path);
    const url =
      isPg || path.startsWith("sqlite:") ? path : path === ":memory:" ? "sqlite://:memory:" : `sqlite://${path}`;
    if (!isPg) privateFile(url.slice("sqlite://".length));
    const pg = isPg ? new PgConnection(url, timeouts) : undefined;
    const sql = pg ? pg.sql : new SQL(url);
    const store = new Store(sql, isPg ? "postgres" : "sqlite", pg);
    if (!isPg) {
      await sql`PRAGMA journal_mode = WAL`;
      await sql`PRAGMA synchronous = FULL`;
      await sql`PRAGMA busy_timeout = 5000`;
    }
    await store.migrate();
    pg?.startProbe();
    return store;
  }

  private async migrate(): Promise<void> {
    if (this.kind === "postgres") {
      // Nodes starting at once: one transaction under an advisory lock applies every missing step, the
      // others wait for it and then find nothing to do (even CREATE TABLE IF NOT EXISTS races in PostgreSQL).
      await this.sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
        await this.migrateIn(tx);
      });
      return;
    }
    await this.migrateIn(this.sql);
  }

  private async migrateIn(sql: SQL): Promise<void> {
    await sql.unsafe(`CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)`);
    const [row] = await sql`SELECT v FROM meta WHERE k = 'schema_version'`;
    let version = row ? Number(row.v) : 0;
    if (version > MIGRATIONS.length) {
      throw new Error(
        `database schema version ${version} is newer than this tessera understands (${MIGRATIONS.length}); upgrade tessera`,
      );
    }
    for (; version < MIGRATIONS.length; version++) {
      const steps = MIGRATIONS[version]!;
      const apply = async (tx: SQL) => {
        for (const step of steps) await tx.unsafe(step);
        await tx`INSERT INTO meta (k, v) VALUES ('schema_version', ${String(version + 1)})
                 ON CONFLICT (k) DO UPDATE SET v = excluded.v`;
      };
      if (this.kind === "postgres") await apply(sql);
      else await sql.begin(apply);
    }
  }

  async schemaVersion(): Promise<number> {
    const [row] = await this.sql`SELECT v FROM meta WHERE k = 'schema_version'`;
    return Number(row?.v ?? 0);
  }

  async getMeta(k: string): Promise<string | undefined> {
    const [row] = await this.sql`SELECT v FROM meta WHERE k = ${k}`;
    return row?.v;
  }

  async deleteMeta(k: string): Promise<void> {
    await this.sql`DELETE FROM meta WHERE k = ${k}`;
  }

  /** Sets k only if unset; returns the value that won (so concurrent starts agree). */
  async initMeta(k: string, v: string): Promise<string> {
    await this.sql`INSERT INTO meta (k, v) VALUES (${k}, ${v}) ON CONFLICT (k) DO NOTHING`;
    return (await this.getMeta(k))!;
  }

  async addHost(spki: string, name: string, now: number): Promise<void> {
    await this.sql`INSERT INTO hosts (spki, name, enrolled_at) VALUES (${spki}, ${name}, ${now})
                   ON CONFLICT (spki) DO UPDATE SET name = excluded.name`;
  }

  /** Names of enrolled (not removed) hosts other than this key that are `base` or `base-SOMETHING`. */
  async hostNamesTaken(base: string, spki: string): Promise<Set<string>> {
    const prefix = `${base}-`;
    const rows = await this.sql`SELECT name FROM hosts WHERE removed_at IS NULL AND spki <> ${spki}
                   AND (name = ${base} OR substr(name, 1, ${prefix.length}) = ${prefix})`;
    return new Set(rows.map((r: { name: string }) => String(r.name)));
  }

  /** Enrolled and not removed. */
  async hostExists(spki: string): Promise<boolean> {
    return (await this.hostStatus(spki)) === "enrolled";
  }

  async hostStatus(spki: string): Promise<"enrolled" | "removed" | undefined> {
    const [row] = await this.sql`SELECT removed_at FROM hosts WHERE spki = ${spki}`;
    return row ? (row.removed_at == null ? "enrolled" : "removed") : undefined;
  }

  async hosts(): Promise<HostRow[]> {
    const rows = await this
      .sql`SELECT spki, name, enrolled_at, last_seen, removed_at, removed_by FROM hosts ORDER BY enrolled_at, name`;
    return rows.map((r: Record<string, unknown>) => ({
      spki: String(r.spki),
      name: String(r.name),
      enrolledAt: Number(r.enrolled_at),
      lastSeen: optNumber(r.last_seen),
      removedAt: optNumber(r.removed_at),
      removedBy: r.removed_by == null ? null : String(r.removed_by),
    }));
  }

  /** Marks a host removed; false if it already was (or is unknown). The row stays, so its key stays refused. */
  async removeHost(spki: string, by: string, now: number): Promise<boolean> {
    const r = await this
      .sql`UPDATE hosts SET removed_at = ${now}, removed_by = ${by} WHERE spki = ${spki} AND removed_at IS NULL`;
    return r.count === 1;
  }

  /** Hosts removed at or after `since` (by this node or any other sharing the database). */
  async removedHostsSince(since: number): Promise<{ spki: string; name: string }[]> {
    const rows = await this.sql`SELECT spki, name FROM hosts WHERE removed_at IS NOT NULL AND removed_at >= ${since}`;
    return rows.map((r: Record<string, unknown>) => ({ spki: String(r.spki), name: String(r.name) }));
  }

  async touchHost(spki: string, now: number): Promise<void> {
    await this.sql`UPDATE hosts SET last_seen = ${now} WHERE spki = ${spki}`;
  }

  /** Stores an enrolment token minted by the operator; false if its id is taken (here or among used tokens). */
  async putEnrollToken(t: EnrollTokenRow, createdBy: string, now: number): Promise<boolean> {
    const [used] = await this.sql`SELECT 1 AS x FROM enroll_used WHERE token_id = ${t.id}`;
    if (used) return false;
    const r = await this
      .sql`INSERT INTO enroll_tokens (id, hash, expires_at, created_at, created_by) VALUES (${t.id}, ${t.hash}, ${t.expiresAt}, ${now}, ${createdBy})
                             ON CONFLICT (id) DO NOTHING`;
    return r.count === 1;
  }

  async getEnrollToken(id: string): Promise<EnrollTokenRow | undefined> {
    const [row] = await this.sql`SELECT id, hash, expires_at FROM enroll_tokens WHERE id = ${id}`;
    return row ? { id: String(row.id), hash: String(row.hash), expiresAt: Number(row.expires_at) } : undefined;
  }

  /** Marks an enrolment token used; false if it already was (single use). */
  async useEnrollToken(tokenId: string, hostSpki: string, now: number): Promise<boolean> {
    const r = await this
      .sql`INSERT INTO enroll_used (token_id, host_spki, used_at) VALUES (${tokenId}, ${hostSpki}, ${now})
                             ON CONFLICT (token_id) DO NOTHING`;
    return r.count === 1;
  }

  async getShare(id: string): Promise<ShareRow | undefined> {
    const [row] = await this
      .sql`SELECT id, host_spki, host_name, targets FROM shares WHERE id = ${id} AND closed_at IS NULL`;
    return row ? shareRow(row) : undefined;
  }

  /** Shares no one has closed: after a restart their agents are expected back. */
  async openShares(): Promise<ShareRow[]> {
    const rows = await this
      .sql`SELECT id, host_spki, host_name, targets FROM shares WHERE closed_at IS NULL ORDER BY created_at`;
    return rows.map(shareRow);
  }

  async putShare(s: ShareRow, now: number): Promise<void> {
    await this
      .sql`INSERT INTO shares (id, host_spki, host_name, targets, created_at) VALUES (${s.id}, ${s.hostSpki}, ${s.hostName}, ${JSON.stringify(s.targets)}, ${now})
                   ON CONFLICT (id) DO UPDATE SET targets = excluded.targets, host_name = excluded.host_name, closed_at = NULL`;
  }

  async closeShare(id: string, now: number, fence?: Fence): Promise<void> {
    if (fence)
      await this
        .sql`UPDATE shares SET closed_at = ${now} WHERE id = ${id} AND node = ${fence.node} AND epoch = ${fence.epoch}`;
    else await this.sql`UPDATE shares SET closed_at = ${now} WHERE id = ${id}`;
  }

  async putCode(hash: string, shareId: string, target: string, expiresAt: number): Promise<void> {
    await this
      .sql`INSERT INTO codes (hash, share_id, target, expires_at) VALUES (${hash}, ${shareId}, ${target}, ${expiresAt})`;
  }

  /** Takes a nameplate for a new code unless a code with it is still unexpired (nameplates are unique among live codes). */
  async claimCode(hash: string, shareId: string, target: string, expiresAt: number, now: number): Promise<boolean> {
    const r = await this
      .sql`INSERT INTO codes (hash, share_id, target, expires_at) VALUES (${hash}, ${shareId}, ${target}, ${expiresAt})
      ON CONFLICT (hash) DO UPDATE SET share_id = excluded.share_id, target = excluded.target, expires_at = excluded.expires_at, used_at = NULL
      WHERE codes.expires_at <= ${now}`;
    return r.count === 1;
  }

  async getCode(hash: string): Promise<CodeRow | undefined> {
    const [row] = await this.sql`SELECT share_id, target, expires_at, used_at FROM codes WHERE hash = ${hash}`;
    return row
      ? {
          shareId: row.share_id,
          target: row.target,
          expiresAt: Number(row.expires_at),
          usedAt: row.used_at == null ? null : Number(row.used_at),
        }
      : undefined;
  }

  /** Atomically marks a code used; false if another redemption won the race. */
  async useCode(hash: string, now: number): Promise<boolean> {
    const r = await this
      .sql`UPDATE codes SET used_at = ${now} WHERE hash = ${hash} AND used_at IS NULL AND expires_at > ${now}`;
    return r.count === 1;
  }

  /** Codes of a share that could still be redeemed (unused, unexpired). */
  async liveCodes(shareId: string, now: number): Promise<number> {
    const [row] = await this
      .sql`SELECT count(*) AS n FROM codes WHERE share_id = ${shareId} AND used_at IS NULL AND expires_at > ${now}`;
    return Number(row.n);
  }

  async pruneCodes(now: number): Promise<void> {
    // Keep used/expired codes (and enrolment tokens) a day so a late redeemer hears "expired" or "used", not "unknown".
    await this.sql`DELETE FROM codes WHERE expires_at < ${now - 86_400_000}`;
    await this.sql`DELETE FROM enroll_tokens WHERE expires_at < ${now - 86_400_000}`;
  }

  /** With a fence (PostgreSQL), the row goes in only while the share's lease is still the fence's; false if refused. */
  async openSession(s: Omit<SessionRow, "streams" | "bytesUp" | "bytesDown">, fence?: Fence): Promise<boolean> {
    if (fence) {
      const r = await this
        .sql`INSERT INTO sessions (id, share_id, guest_spki, guest_name, guest_addr, host_name, target, opened_at, scope, receipt)
                   SELECT ${s.id}::text, ${s.shareId}::text, ${s.guestSpki}::text, ${s.guestName}::text, ${s.guestAddr}::text, ${s.hostName}::text, ${s.target}::text, ${s.openedAt}::bigint, ${s.scope ?? null}::text, ${s.receipt ?? null}::text
                   WHERE EXISTS (SELECT 1 FROM shares WHERE id = ${s.shareId} AND node = ${fence.node} AND epoch = ${fence.epoch})`;
      return r.count === 1;
    }
    await this
      .sql`INSERT INTO sessions (id, share_id, guest_spki, guest_name, guest_addr, host_name, target, opened_at, scope, receipt)
                   VALUES (${s.id}, ${s.shareId}, ${s.guestSpki}, ${s.guestName}, ${s.guestAddr}, ${s.hostName}, ${s.target}, ${s.openedAt}, ${s.scope ?? null}, ${s.receipt ?? null})`;
    return true;
  }

  async openSessions(): Promise<SessionRow[]> {
    const rows = await this.sql`SELECT * FROM sessions WHERE closed_at IS NULL ORDER BY opened_at`;
    return rows.map((r: Record<string, unknown>) => ({
      id: String(r.id),
      shareId: String(r.share_id),
      guestSpki: String(r.guest_spki),
      guestName: String(r.guest_name),
      guestAddr: String(r.guest_addr),
      hostName: String(r.host_name),
      target: String(r.target),
      openedAt: Number(r.opened_at),
      streams: Number(r.streams),
      bytesUp: Number(r.bytes_up),
      bytesDown: Number(r.bytes_down),
      scope: r.scope == null ? null : String(r.scope),
      receipt: r.receipt == null ? null : String(r.receipt),
    }));
  }

  /** A session's stream count and byte totals so far, so they survive a restart. */
  async setTotals(sessionId: string, streams: number, up: number, down: number, fence?: Fence): Promise<void> {
    if (fence)
      await this.sql`UPDATE sessions SET streams = ${streams}, bytes_up = ${up}, bytes_down = ${down}
                     WHERE id = ${sessionId} AND share_id IN (SELECT id FROM shares WHERE node = ${fence.node} AND epoch = ${fence.epoch})`;
    else
      await this
        .sql`UPDATE sessions SET streams = ${streams}, bytes_up = ${up}, bytes_down = ${down} WHERE id = ${sessionId}`;
  }

  async putRequest(r: RequestRow): Promise<void> {
    await this.sql`INSERT INTO requests (id, share_id, code_hash, guest_name, guest_spki, target, created_at)
                   VALUES (${r.id}, ${r.shareId}, ${r.codeHash}, ${r.guestName}, ${r.guestSpki}, ${r.target}, ${r.createdAt})`;
  }

  async deleteRequest(id: string): Promise<void> {
    await this.sql`DELETE FROM requests WHERE id = ${id}`;
  }

  /**
   * The request's code check ran: its code was one guess and is never given back, also not by a restart
   * (the row keeps SPENT_CODE instead of the hash, so takeRequests' caller releases nothing).
   */
  async spendRequestCode(id: string): Promise<void> {
    await this.sql`UPDATE requests SET code_hash = ${SPENT_CODE} WHERE id = ${id}`;
  }

  /** Requests left waiting by a coordinator that stopped; the caller denies them. */
  async takeRequests(node?: string): Promise<RequestRow[]> {
    if (node !== undefined) {
      // One node of several restarting: only the requests of the shares it holds.
      const rows = await this
        .sql`DELETE FROM requests WHERE share_id IN (SELECT id FROM shares WHERE node = ${node}) RETURNING *`;
      return rows.map(requestRow);
    }
    const rows = await this.sql`SELECT * FROM requests ORDER BY created_at`;
    await this.sql`DELETE FROM requests`;
    return rows.map(requestRow);
  }

  /** A code whose request the host never answered becomes usable again (if it has not expired). */
  async releaseCode(hash: string): Promise<void> {
    await this.sql`UPDATE codes SET used_at = NULL WHERE hash = ${hash}`;
  }

  /** False when nothing changed: already closed, or (with a fence) the share's lease is no longer the fence's. */
  async closeSession(id: string, reason: string, now: number, fence?: Fence): Promise<boolean> {
    const r = fence
      ? await this.sql`UPDATE sessions SET closed_at = ${now}, close_reason = ${reason}
                       WHERE id = ${id} AND closed_at IS NULL AND share_id IN (SELECT id FROM shares WHERE node = ${fence.node} AND epoch = ${fence.epoch})`
      : await this
          .sql`UPDATE sessions SET closed_at = ${now}, close_reason = ${reason} WHERE id = ${id} AND closed_at IS NULL`;
    return r.count === 1;
  }

  async closeSessionsOfShare(shareId: string, reason: string, now: number): Promise<void> {
    await this
      .sql`UPDATE sessions SET closed_at = ${now}, close_reason = ${reason} WHERE share_id = ${shareId} AND closed_at IS NULL`;
  }

  /** Why work that needs the database is refused now (PostgreSQL unreachable), or undefined. */
  get unavailable(): string | undefined {
    return this.pg?.unavailable;
  }

  async close(): Promise<void> {
    await this.sql.close();
  }
}

/** What a request row holds instead of its code's hash once the code's PAKE ran (no hash is this short). */
export const SPENT_CODE = "spent";

function requestRow(r: Record<string, unknown>): RequestRow {
  return {
    id: String(r.id),
    shareId: String(r.share_id),
    codeHash: r.code_hash == null ? null : String(r.code_hash),
    guestName: String(r.guest_name),
    guestSpki: String(r.guest_spki),
    target: String(r.target),
    createdAt: Number(r.created_at),
  };
}

function optNumber(x: unknown): number | null {
  return x == null ? null : Number(x);
}

function shareRow(row: Record<string, unknown>): ShareRow {
  return {
    id: String(row.id),
    hostSpki: String(row.host_spki),
    hostName: String(row.host_name),
    targets: JSON.parse(String(row.targets)),
  };
}
