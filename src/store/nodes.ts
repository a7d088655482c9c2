// What the nodes of one deployment share in PostgreSQL: who is alive, which node holds each share, mail
// between nodes (the row is the message; NOTIFY only wakes its addressee) and deployment-wide rate counts.
import type { SQL } from "bun";

export interface NodeRow {
  name: string;
  advertise: string;
  heartbeatAt: number;
}
export interface Mail {
  id: string;
  from: string;
  body: string;
}

/** The LISTEN channel of one node (names are checked by the caller: lowercase letters, digits, dashes). */
export function nodeChannel(name: string): string {
  return `tessera_node_${name.replace(/-/g, "__")}`;
}

export class NodeStore {
  constructor(private readonly sql: SQL) {}

  /** Announces (or refreshes) a node; its row expires when the heartbeat stops. */
  async beat(name: string, advertise: string, now: number): Promise<void> {
    await this
      .sql`INSERT INTO nodes (name, advertise, started_at, heartbeat_at) VALUES (${name}, ${advertise}, ${now}, ${now})
                   ON CONFLICT (name) DO UPDATE SET advertise = excluded.advertise, heartbeat_at = excluded.heartbeat_at`;
  }

  async all(): Promise<NodeRow[]> {
    const rows = await this.sql`SELECT name, advertise, heartbeat_at FROM nodes ORDER BY name`;
    return rows.map((r: Record<string, unknown>) => ({
      name: String(r.name),
      advertise: String(r.advertise),
      heartbeatAt: Number(r.heartbeat_at),
    }));
  }

  /** A node leaving cleanly: its row goes, so the others do not wait out its heartbeat. */
  async leave(name: string): Promise<void> {
    await this.sql`DELETE FROM nodes WHERE name = ${name}`;
  }

  /** The node holding an open share ('' on a single node), or undefined when the share is closed or unknown. */
  async shareNode(shareId: string): Promise<string | undefined> {
    const [row] = await this.sql`SELECT node FROM shares WHERE id = ${shareId} AND closed_at IS NULL`;
    return row ? String(row.node) : undefined;
  }

  /**
   * Takes an open share's lease for `me` until `until`, with a new epoch (returned; undefined when not
   * taken). With `from`, only from that node (it let go, or died); with `expiredBy` too, only once its
   * lease ran out by then (a dead node's share is never taken while its lease could still be served).
   */
  async claimShare(
    shareId: string,
    me: string,
    until: number,
    from?: string,
    expiredBy?: number,
  ): Promise<number | undefined> {
    const r =
      from === undefined
        ? await this.sql`UPDATE shares SET node = ${me}, epoch = epoch + 1, lease_until = ${until}
                         WHERE id = ${shareId} AND closed_at IS NULL RETURNING epoch`
        : expiredBy === undefined
          ? await this.sql`UPDATE shares SET node = ${me}, epoch = epoch + 1, lease_until = ${until}
                           WHERE id = ${shareId} AND closed_at IS NULL AND node = ${from} RETURNING epoch`
          : await this.sql`UPDATE shares SET node = ${me}, epoch = epoch + 1, lease_until = ${until}
                           WHERE id = ${shareId} AND closed_at IS NULL AND node = ${from} AND lease_until < ${expiredBy} RETURNING epoch`;
    return r.length === 1 ? Number(r[0].epoch) : undefined;
  }

  /** A node stopping gracefully lets go of a share: no node holds it, and its lease is over (any node may claim it). */
  async handOff(shareId: string, me: string): Promise<void> {
    await this.sql`UPDATE shares SET node = '', lease_until = 0 WHERE id = ${shareId} AND node = ${me}`;
  }

  /** A restarted node takes back, with new epochs, the open shares the store says it holds. */
  async reclaimMine(me: string, until: number): Promise<Map<string, number>> {
    const rows = await this.sql`UPDATE shares SET epoch = epoch + 1, lease_until = ${until}
                                WHERE node = ${me} AND closed_at IS NULL RETURNING id, epoch`;
    return new Map(rows.map((r: Record<string, unknown>) => [String(r.id), Number(r.epoch)]));
  }

  /** Extends every lease `me` holds to `until`; returns what it holds, with epochs (compared with what it thinks). */
  async renewLeases(me: string, until: number): Promise<Map<string, number>> {
    const rows = await this.sql`UPDATE shares SET lease_until = ${until}
                                WHERE node = ${me} AND closed_at IS NULL RETURNING id, epoch`;
    return new Map(rows.map((r: Record<string, unknown>) => [String(r.id), Number(r.epoch)]));
  }

  async sessionShare(sessionId: string): Promise<string | undefined> {
    const [row] = await this.sql`SELECT share_id FROM sessions WHERE id = ${sessionId} AND closed_at IS NULL`;
    return row ? String(row.share_id) : undefined;
  }

  async requestShare(requestId: string): Promise<string | undefined> {
    const [row] = await this.sql`SELECT share_id FROM requests WHERE id = ${requestId}`;
    return row ? String(row.share_id) : undefined;
  }

  async codeShare(hash: string): Promise<string | undefined> {
    const [row] = await this.sql`SELECT share_id FROM codes WHERE hash = ${hash}`;
    return row ? String(row.share_id) : undefined;
  }

  /** Requests of the shares a node holds (a restarted node denies them, leaving other nodes' alone). */
  async requestIdsOfNode(node: string): Promise<string[]> {
    const rows = await this.sql`SELECT r.id FROM requests r JOIN shares s ON s.id = r.share_id WHERE s.node = ${node}`;
    return rows.map((r: Record<string, unknown>) => String(r.id));
  }

  /** Writes the message, then wakes its addressee; `seq` orders one sender's messages. */
  async send(from: string, to: string, seq: number, body: string, now: number): Promise<void> {
    await this
      .sql`INSERT INTO node_mail (id, to_node, from_node, seq, body, created_at) VALUES (${`${from}:${seq}:${now}`}, ${to}, ${from}, ${seq}, ${body}, ${now})`;
    await this.sql.notify(nodeChannel(to), "");
  }

  /** Takes (reads and deletes) a node's mail, each sender's in order. */
  async take(to: string, max = 500): Promise<Mail[]> {
    const rows = await this
      .sql`DELETE FROM node_mail WHERE id IN (SELECT id FROM node_mail WHERE to_node = ${to} ORDER BY from_node, seq LIMIT ${max})
                                RETURNING id, from_node, seq, body`;
    return rows
      .map((r: Record<string, unknown>) => ({
        id: String(r.id),
        from: String(r.from_node),
        seq: Number(r.seq),
        body: String(r.body),
      }))
      .sort((a: { from: string; seq: number }, b: { from: string; seq: number }) =>
        a.from < b.from ? -1 : a.from > b.from ? 1 : a.seq - b.seq,
      );
  }

  /** Mail to a node that is gone is never read: dropped with it. */
  async dropMailTo(node: string): Promise<void> {
    await this.sql`DELETE FROM node_mail WHERE to_node = ${node}`;
  }

  async listen(channel: string, wake: () => void): Promise<{ unlisten(): Promise<void> }> {
    return await this.sql.listen(
      channel,
      () => wake(),
      () => wake(),
    );
  }

  /** Counts one attempt under `key` in the window starting at `win`; returns the window's count so far. */
  async hit(key: string, win: number): Promise<number> {
    const [row] = await this.sql`INSERT INTO rate_hits (k, win, n) VALUES (${key}, ${win}, 1)
                                 ON CONFLICT (k, win) DO UPDATE SET n = rate_hits.n + 1 RETURNING n`;
    return Number(row.n);
  }

  async pruneHits(before: number): Promise<void> {
    await this.sql`DELETE FROM rate_hits WHERE win < ${before}`;
  }
}
