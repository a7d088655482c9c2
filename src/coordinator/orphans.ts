// Every open gets a close: streams a lost coordinator left open (it was killed, or its node died) get their
// stream.close line here, with reason "coordinator lost", their last known byte counts and `estimated: true`,
// and their sessions' totals in the store then include them. Called at start (a node's own rows, plus what
// its own audit log holds past the store's last batch) and when a node adopts a dead node's share (that
// share's rows: the dead node's log is not here, so a stream it opened in its last second is not known).
import fs from "node:fs";
import type { AuditLog } from "../audit/log.ts";
import type { Store, SessionRow } from "../store/store.ts";
import type { OpenStreamRow } from "../store/streams.ts";

export const LOST = "coordinator lost";

interface Tail {
  /** Streams opened after the store's last batch (not counted in its totals). */
  opened: Map<string, string>;
  /** Close lines after the store's last batch: their bytes are not in its totals. */
  closed: Map<string, { sessionId: string; up: number; down: number }>;
}

/**
 * Without `shareId`: this coordinator's restart (`node`: its node name, "" or absent for a single
 * coordinator): its rows, and its own log past the last batch. With `shareId`: adopting that share from
 * the dead node `node` (all writers when absent): the rows of that share's sessions. Never call it for a
 * node still alive: its streams are live. Idempotent: what it closed is no longer open in the store.
 */
export async function closeOrphans(
  store: Store,
  audit: AuditLog,
  o: { node?: string; shareId?: string },
): Promise<{ streams: number; sessions: number }> {
  const own = o.shareId === undefined;
  const node = o.node ?? "";
  const rows = await store.streams.open(own ? { node } : { shareId: o.shareId, node: o.node });
  const tail = own ? readTail(audit.path, await store.streams.applied(node)) : { opened: new Map(), closed: new Map() };
  const sessions = new Map((await store.openSessions()).map((s) => [s.id, s]));
  const delta = new Map<string, { streams: number; up: number; down: number }>();
  const add = (sid: string, streams: number, up: number, down: number) => {
    const d = delta.get(sid) ?? { streams: 0, up: 0, down: 0 };
    d.streams += streams;
    d.up += up;
    d.down += down;
    delta.set(sid, d);
  };
  const lines: Promise<void>[] = [];
  const lost = (id: string, sid: string, up: number, down: number) =>
    lines.push(
      audit.appendDurable("stream.close", {
        ...who(sessions.get(sid), sid),
        streamId: id,
        bytesUp: up,
        bytesDown: down,
        reason: LOST,
        estimated: true,
      }),
    );
  const settled = new Set<string>();
  for (const r of rows) {
    settled.add(r.id);
    const done = tail.closed.get(r.id);
    if (done) add(r.sessionId, 0, done.up, done.down);
    else {
      lost(r.id, r.sessionId, r.bytesUp, r.bytesDown);
      add(r.sessionId, 0, r.bytesUp, r.bytesDown);
    }
  }
  // Past the last batch: opened and maybe closed in the log, not yet in the store.
  for (const [id, sid] of tail.opened) {
    if (settled.has(id)) continue;
    const done = tail.closed.get(id);
    if (done) add(sid, 1, done.up, done.down);
    else {
      lost(id, sid, 0, 0);
      add(sid, 1, 0, 0);
    }
  }
  await Promise.all(lines);
  const totals = [...delta]
    .filter(([sid]) => sessions.has(sid))
    .map(([sid, d]) => {
      const s = sessions.get(sid)!;
      return { sessionId: sid, streams: s.streams + d.streams, up: s.bytesUp + d.up, down: s.bytesDown + d.down };
    });
  // The lines just written are past the seq recorded now, so a second run finds nothing to do.
  await store.streams.settle(
    rows.map((r) => r.id),
    totals,
    own ? { node, auditSeq: audit.lastSeq } : undefined,
  );
  const closed = own && node === "" ? await closeShareless(store, audit, totals) : 0;
  return { streams: lines.length, sessions: closed };
}

/**
 * A single coordinator's sessions the store holds open whose share is closed: nothing will resume them,
 * so they close here, with a line (their totals as the store has them now, marked estimated).
 */
async function closeShareless(
  store: Store,
  audit: AuditLog,
  totals: { sessionId: string; streams: number; up: number; down: number }[],
): Promise<number> {
  const shares = new Set((await store.openShares()).map((s) => s.id));
  const now = new Map(totals.map((t) => [t.sessionId, t]));
  let n = 0;
  for (const s of await store.openSessions()) {
    if (shares.has(s.shareId)) continue;
    const t = now.get(s.id);
    const reason = `${LOST}; its share was closed`;
    await audit.appendDurable("session.close", {
      ...who(s, s.id),
      reason,
      streams: t?.streams ?? s.streams,
      bytesUp: t?.up ?? s.bytesUp,
      bytesDown: t?.down ?? s.bytesDown,
      estimated: true,
    });
    await store.closeSession(s.id, reason, Date.now());
    n++;
  }
  return n;
}

function who(s: SessionRow | undefined, sessionId: string) {
  if (!s) return { sessionId };
  return {
    sessionId,
    shareId: s.shareId,
    host: s.hostName,
    guest: s.guestName,
    guestKey: s.guestSpki,
    addr: s.guestAddr,
  };
}

/**
 * The stream lines of this node's current audit file after `applied` (read from the end: normally only
 * the last second's lines). A chain rotated since is not followed: its streams are in the store's rows.
 */
function readTail(file: string, applied: number): Tail {
  const tail: Tail = { opened: new Map(), closed: new Map() };
  if (!fs.existsSync(file)) return tail;
  const text = fs.readFileSync(file, "utf8");
  const found: { event: string; streamId: string; sessionId: string; up: number; down: number }[] = [];
  for (let end = text.length; end > 0; ) {
    const start = text.lastIndexOf("\n", end - 2) + 1;
    const line = text.slice(start, end);
    end = start;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (Number(rec.seq) <= applied) break;
    if (rec.event !== "stream.open" && rec.event !== "stream.close") continue;
    found.push({
      event: String(rec.event),
      streamId: String(rec.streamId),
      sessionId: String(rec.sessionId),
      up: Number(rec.bytesUp ?? 0),
      down: Number(rec.bytesDown ?? 0),
    });
  }
  for (const f of found.reverse()) {
    if (f.event === "stream.open") tail.opened.set(f.streamId, f.sessionId);
    else tail.closed.set(f.streamId, { sessionId: f.sessionId, up: f.up, down: f.down });
  }
  return tail;
}

export type { OpenStreamRow };
