// The streams a coordinator holds open, kept in the store so a restart (or a node adopting a dead node's
// share) can write each one's close: written in one batch a second with the sessions' totals, so the store
// is consistent at every commit (a session's totals count its closed streams' bytes; its open streams are
// rows here with their last known bytes), and stamped with the audit seq the batch reflects.
import type { SQL } from "bun";

export interface OpenStreamRow {
  id: string;
  sessionId: string;
  node: string;
  openedAt: number;
  bytesUp: number;
  bytesDown: number;
}

export interface LedgerBatch {
  node: string;
  /** Streams opened since the last batch and still open. */
  opened: OpenStreamRow[];
  /** Streams of earlier batches that have closed. */
  closed: string[];
  /** Last known bytes of streams still open. */
  bytes: { id: string; up: number; down: number }[];
  /** Sessions whose totals changed. */
  /** With a fence (a node of several), written only while this node still holds the share at that epoch. */
  totals: { sessionId: string; streams: number; up: number; down: number; fence?: { node: string; epoch: number } }[];
  /** The audit log's last seq this batch reflects (the restart replays closes after it from the log). */
  auditSeq: number;
}

export class StreamStore {
  constructor(private readonly sql: SQL) {}

  /** One transaction: rows, totals and the seq they reflect change together or not at all. */
  async apply(b: LedgerBatch): Promise<void> {
    await this.sql.begin(async (tx) => {
      for (const r of b.opened)
        await tx`INSERT INTO open_streams (id, session_id, node, opened_at, bytes_up, bytes_down)
                 VALUES (${r.id}, ${r.sessionId}, ${r.node}, ${r.openedAt}, ${r.bytesUp}, ${r.bytesDown})
                 ON CONFLICT (id) DO UPDATE SET bytes_up = excluded.bytes_up, bytes_down = excluded.bytes_down`;
      for (const id of b.closed) await tx`DELETE FROM open_streams WHERE id = ${id}`;
      for (const x of b.bytes)
        await tx`UPDATE open_streams SET bytes_up = ${x.up}, bytes_down = ${x.down} WHERE id = ${x.id}`;
      for (const t of b.totals)
        if (t.fence)
          await tx`UPDATE sessions SET streams = ${t.streams}, bytes_up = ${t.up}, bytes_down = ${t.down}
                   WHERE id = ${t.sessionId} AND share_id IN (SELECT id FROM shares WHERE node = ${t.fence.node} AND epoch = ${t.fence.epoch})`;
        else
          await tx`UPDATE sessions SET streams = ${t.streams}, bytes_up = ${t.up}, bytes_down = ${t.down} WHERE id = ${t.sessionId}`;
      await tx`INSERT INTO meta (k, v) VALUES (${appliedKey(b.node)}, ${String(b.auditSeq)})
               ON CONFLICT (k) DO UPDATE SET v = excluded.v`;
    });
  }

  /** The audit seq the store reflects for this node (0: none recorded). */
  async applied(node: string): Promise<number> {
    const [row] = await this.sql`SELECT v FROM meta WHERE k = ${appliedKey(node)}`;
    return row ? Number(row.v) : 0;
  }

  /** Open stream rows: of one node, or of one share's sessions (written by `node`, or by any when absent). */
  async open(filter: { node?: string; shareId?: string }): Promise<OpenStreamRow[]> {
    const rows =
      filter.shareId === undefined
        ? await this.sql`SELECT * FROM open_streams WHERE node = ${filter.node ?? ""} ORDER BY opened_at`
        : filter.node === undefined
          ? await this.sql`SELECT o.* FROM open_streams o JOIN sessions s ON s.id = o.session_id
                           WHERE s.share_id = ${filter.shareId} ORDER BY o.opened_at`
          : await this.sql`SELECT o.* FROM open_streams o JOIN sessions s ON s.id = o.session_id
                           WHERE s.share_id = ${filter.shareId} AND o.node = ${filter.node} ORDER BY o.opened_at`;
    return rows.map((r: Record<string, unknown>) => ({
      id: String(r.id),
      sessionId: String(r.session_id),
      node: String(r.node),
      openedAt: Number(r.opened_at),
      bytesUp: Number(r.bytes_up),
      bytesDown: Number(r.bytes_down),
    }));
  }

  /** Rows whose close line is written, with the session totals that now include them (one transaction). */
  async settle(
    ids: string[],
    totals: LedgerBatch["totals"],
    applied?: { node: string; auditSeq: number },
  ): Promise<void> {
    await this.sql.begin(async (tx) => {
      for (const id of ids) await tx`DELETE FROM open_streams WHERE id = ${id}`;
      for (const t of totals)
        await tx`UPDATE sessions SET streams = ${t.streams}, bytes_up = ${t.up}, bytes_down = ${t.down} WHERE id = ${t.sessionId}`;
      if (applied)
        await tx`INSERT INTO meta (k, v) VALUES (${appliedKey(applied.node)}, ${String(applied.auditSeq)})
                 ON CONFLICT (k) DO UPDATE SET v = excluded.v`;
    });
  }
}

function appliedKey(node: string): string {
  return `ledger_audit_seq:${node}`;
}
