// Which streams this coordinator holds open, and the sessions' totals, written to the store in one batch a
// second (store/streams.ts): cheap (one transaction a second under load, none when idle; nothing on the
// stream-setup path) and consistent, so a restart or an adopting node can close every stream left open
// (orphans.ts). The batch also records the audit seq it reflects: what came after is replayed from the log.
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { AuditLog } from "../audit/log.ts";
import type { LedgerBatch, OpenStreamRow } from "../store/streams.ts";
import type { Fence, Store } from "../store/store.ts";
import type { Session } from "./state.ts";
import type { Stream } from "./splice.ts";

const log = logger("coordinator");

export class StreamLedger {
  /** Counted streams not in the store yet. */
  private readonly fresh = new Map<string, { stream: Stream; row: OpenStreamRow }>();
  /** Streams whose row is in the store (or in the batch being written), with the bytes it says. */
  private readonly stored = new Map<string, { stream: Stream; bytes: number }>();
  private closed: string[] = [];
  /** Sessions whose totals changed since the last batch. */
  readonly dirty = new Set<Session>();
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: Store,
    private readonly audit: AuditLog,
    private readonly node: string,
    /** What a node of several writes a session's totals under (its share's lease), so a stale node's are refused. */
    private readonly fenceOf: (s: Session) => Fence | undefined = () => undefined,
  ) {}

  /** A stream was counted (its opening audited): it is open until its close line. */
  opened(stream: Stream, s: Session): void {
    this.fresh.set(stream.id, {
      stream,
      row: { id: stream.id, sessionId: s.id, node: this.node, openedAt: Date.now(), bytesUp: 0, bytesDown: 0 },
    });
    this.dirty.add(s);
  }

  /** The stream's close line is written: its row goes (or never comes, if it was not written yet). */
  ended(id: string): void {
    if (this.fresh.delete(id)) return;
    if (this.stored.delete(id)) this.closed.push(id);
  }

  /** Writes what changed, after any batch still being written; a failed batch is kept for the next. */
  flush(): Promise<void> {
    this.writing = this.writing.then(() => this.write());
    return this.writing;
  }

  private async write(): Promise<void> {
    const batch: LedgerBatch = {
      node: this.node,
      opened: [],
      closed: this.closed,
      bytes: [],
      totals: [...this.dirty].map((s) => ({
        sessionId: s.id,
        streams: s.streamCount,
        up: s.up,
        down: s.down,
        fence: this.fenceOf(s),
      })),
      auditSeq: this.audit.lastSeq,
    };
    const moved: [string, { stream: Stream; row: OpenStreamRow }][] = [];
    for (const [id, f] of this.fresh) {
      f.row.bytesUp = f.stream.up;
      f.row.bytesDown = f.stream.down;
      batch.opened.push(f.row);
      moved.push([id, f]);
    }
    for (const [id, st] of this.stored) {
      const now = st.stream.up + st.stream.down;
      if (now !== st.bytes) batch.bytes.push({ id, up: st.stream.up, down: st.stream.down });
    }
    if (!batch.opened.length && !batch.closed.length && !batch.bytes.length && !batch.totals.length) return;
    const dirty = [...this.dirty];
    this.dirty.clear();
    this.closed = [];
    for (const [id, f] of moved) {
      this.fresh.delete(id);
      this.stored.set(id, { stream: f.stream, bytes: f.row.bytesUp + f.row.bytesDown });
    }
    for (const b of batch.bytes) {
      const st = this.stored.get(b.id);
      if (st) st.bytes = b.up + b.down;
    }
    try {
      await this.store.streams.apply(batch);
    } catch (err) {
      log.warn(`store: open streams and totals: ${errorMessage(err)}; kept for the next try`);
      // Put it back: rows not known to be written are fresh again, closes and totals are owed again.
      for (const [id, f] of moved) if (this.stored.delete(id)) this.fresh.set(id, f);
      this.closed.push(...batch.closed);
      for (const s of dirty) this.dirty.add(s);
    }
  }
}
