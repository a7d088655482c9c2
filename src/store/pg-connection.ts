// A coordinator's PostgreSQL connection that fails instead of hanging. Bun's SQL client has connect and
// idle timeouts but no TCP keepalive, so a silent partition (packets held, no RST) would leave a query
// waiting forever: every query here also races a client-side deadline, the server is told the same
// deadline as statement_timeout, and a probe notices an outage within seconds. A deadline missed or a
// probe failed replaces the pool, so connections stuck behind the partition are not reused once it heals.
import { SQL } from "bun";
import { logger } from "../log.ts";

const log = logger("store");

/** Said to clients (as an `unavailable` error) while the database cannot be reached. */
export const UNAVAILABLE = "the coordinator's database is unavailable; retrying";

export interface PgTimeouts {
  /** A query (and a new connection) not answered in this time fails with DatabaseUnavailable. */
  queryMs: number;
  /** How often the probe asks `SELECT 1` (also how fast a recovery is seen). */
  probeMs: number;
}

export const PG_TIMEOUTS: PgTimeouts = { queryMs: 5_000, probeMs: 1_000 };

/** A query the database did not answer in time (or the database known to be down). */
export class DatabaseUnavailable extends Error {
  override name = "DatabaseUnavailable";
}

/**
 * Whether an error means "the database cannot be reached now" (retry later) rather than a bad query:
 * Bun's connection errors, our deadline, and PostgreSQL's own classes 08 (connection), 57 (operator
 * intervention: shutdown, statement timeout) and 53 (insufficient resources).
 */
export function isUnavailable(err: unknown): boolean {
  if (err instanceof DatabaseUnavailable) return true;
  const e = err as { name?: string; code?: string; errno?: string } | undefined;
  if (!e || (e.name !== "PostgresError" && e.name !== "SQLError")) return false;
  if (typeof e.code === "string" && /^ERR_POSTGRES_(CONNECTION|.*TIMEOUT|IDLE|LIFETIME|QUERY_CANCELLED)/.test(e.code))
    return true;
  return typeof e.errno === "string" && /^(08|57|53)/.test(e.errno);
}

/** Whether an unavailable database gave no answer at all (a silent partition), rather than saying it is down. */
export function isSilent(err: unknown): boolean {
  if (err instanceof DatabaseUnavailable) return true;
  const code = (err as { code?: string } | undefined)?.code ?? "";
  return /TIMEOUT|QUERY_CANCELLED/.test(code) || (err as { errno?: string }).errno === "57014";
}

export class PgConnection {
  private pool: SQL;
  private probing: ReturnType<typeof setInterval> | undefined;
  private lastReset = 0;
  private closed = false;
  /** When the database was first seen down in the current outage, and why; undefined while it answers. */
  downSince: number | undefined;
  downReason = "";
  /** Called after the pool was replaced (LISTEN subscriptions ride on the old one). */
  onReset: (() => void) | undefined;
  /** What the store queries through: the current pool, each query under the deadline. */
  readonly sql: SQL;

  constructor(
    private readonly url: string,
    private readonly t: PgTimeouts = PG_TIMEOUTS,
  ) {
    this.pool = this.open();
    this.sql = this.proxy();
  }

  private open(): SQL {
    return new SQL({
      url: this.url,
      connectionTimeout: Math.max(1, Math.ceil(this.t.queryMs / 1000)),
      // The server gives up on a statement before the client does, so a slow query is cancelled there too.
      connection: { statement_timeout: String(Math.max(100, this.t.queryMs - 500)) },
    } as ConstructorParameters<typeof SQL>[0]);
  }

  /** Starts the probe (after the first successful use: a node that cannot reach the database does not start). */
  startProbe(): void {
    this.probing ??= setInterval(() => void this.probe(), this.t.probeMs);
  }

  /** Why new work that needs the database is refused now, or undefined. */
  get unavailable(): string | undefined {
    return this.downSince === undefined ? undefined : `database unavailable: ${this.downReason}`;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.probing);
    await this.pool.close({ timeout: 0 }).catch(() => {});
  }

  private async probe(): Promise<void> {
    try {
      await this.sql`SELECT 1`;
    } catch {
      // Already noted by the deadline or the error path.
    }
  }

  /** The pool's promise with the deadline; the outcome updates the up/down state. */
  private guard<T>(q: PromiseLike<T> & { cancel?: () => unknown }): Promise<T> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        q.cancel?.();
        reject(new DatabaseUnavailable(`no answer from PostgreSQL within ${this.t.queryMs / 1000}s`));
      }, this.t.queryMs);
    });
    return Promise.race([Promise.resolve(q), late]).then(
      (v) => {
        clearTimeout(timer);
        this.up();
        return v;
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (isUnavailable(err)) this.down(err);
        throw err;
      },
    );
  }

  private up(): void {
    if (this.downSince === undefined) return;
    log.info(`database reachable again after ${((Date.now() - this.downSince) / 1000).toFixed(1)}s`);
    this.downSince = undefined;
  }

  private down(err: unknown): void {
    const why = err instanceof Error ? err.message : String(err);
    if (this.downSince === undefined) {
      this.downSince = Date.now();
      log.warn(`database unavailable: ${why}`);
    }
    this.downReason = why;
    // Connections that hang behind a partition would be handed out again after it heals: start afresh,
    // at most once per deadline (a fresh pool needs that long to show whether it works).
    const now = Date.now();
    if (this.closed || now - this.lastReset < this.t.queryMs) return;
    this.lastReset = now;
    const old = this.pool;
    this.pool = this.open();
    void old.close({ timeout: 0 }).catch(() => {});
    this.onReset?.();
  }

  private proxy(): SQL {
    const isQuery = (a: unknown) => Array.isArray(a) && "raw" in (a as object);
    const call = (...args: unknown[]) => {
      const pool = this.pool as unknown as (...a: unknown[]) => PromiseLike<unknown>;
      // sql(values) inside a template is a helper, not a query: only queries get a deadline.
      return isQuery(args[0]) ? this.guard(pool(...args)) : pool(...args);
    };
    return new Proxy(call, {
      apply: (_t, _this, args: unknown[]) => call(...args),
      get: (_t, prop) => {
        const pool = this.pool as unknown as Record<string | symbol, unknown>;
        if (prop === "unsafe" || prop === "notify")
          return (...a: unknown[]) => this.guard((pool[prop] as (...x: unknown[]) => PromiseLike<unknown>)(...a));
        if (prop === "close") return (o?: { timeout?: number }) => this.close().then(() => void o);
        const v = pool[prop];
        return typeof v === "function" ? (v as (...x: unknown[]) => unknown).bind(this.pool) : v;
      },
    }) as unknown as SQL;
  }
}
