// Approved sessions: their streams, how they end (guest, host, operator, idle, absence) and how a guest
// that lost the coordinator picks its session up again.
import { RefusedError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import {
  actors,
  background,
  newId,
  pendingOf,
  scopeCheck,
  type BrokerOptions,
  type LiveShare,
  type Peer,
  type Session,
} from "./state.ts";
import type { ServerFrame } from "../wire/protocol.ts";
import { describeScope } from "../wire/scope.ts";
import { Splicer, type Stream } from "./splice.ts";
import { metrics } from "./metrics.ts";
import { noteActivity, sessionFails, type CheckContext, type Condition } from "./revalidate.ts";
import { DirectBook } from "./direct.ts";
import { StreamLedger } from "./stream-ledger.ts";
import type { Fence } from "../store/store.ts";

const log = logger("coordinator");
const ENDED_MEMORY = 1000;
/** How long a closed session's channel may finish on its own before it is cut (see close). */
const CHANNEL_GRACE_MS = 2_000;
/** Data channels a session may hold at once: the one in use and those it replaced, until their streams end. */
const MAX_CHANNELS = 4;

export class SessionBook {
  readonly all = new Map<string, Session>();
  readonly splicer: Splicer;
  /** The direct path: hints, path per session, direct streams' reports (direct.ts). */
  readonly direct: DirectBook;
  private streamTotal = 0;
  /** Sessions released to another node whose streams still run here (a graceful stop), until those end. */
  private readonly leaving = new Map<string, Session>();
  /** Sessions released to another node lately: a resume that still reaches this node is told to retry. */
  private readonly movedAway = new Set<string>();
  /** Why recent sessions ended (bounded), for a guest that comes back after its session closed. */
  private readonly ended = new Map<string, string>();
  /**
   * The agent that served each of those sessions: what it says about one before it heard of the end (a
   * refusal, a direct channel's final report) is taken quietly, as an error frame without a ref would
   * answer (reject) whatever request that agent has in flight, a code it is minting.
   */
  private readonly endedAgent = new Map<string, Peer>();

  /**
   * Open streams and changed totals, for the store. A database write per stream would sit on the
   * stream-setup path (SQLite syncs each commit); the audit log has every stream at once, the store
   * catches up once a second, at a session's end and at shutdown (stream-ledger.ts).
   */
  readonly ledger: StreamLedger;
  private readonly flusher: ReturnType<typeof setInterval>;

  constructor(private readonly o: BrokerOptions) {
    this.splicer = new Splicer(
      { onSpliced: () => {}, onClosed: (s, r) => this.onStreamClosed(s, r) },
      o.limits.streamTokenTtlMs,
      o.cluster?.tag,
    );
    this.direct = new DirectBook({
      audit: o.audit,
      splicer: this.splicer,
      actors,
      session: (id) => this.all.get(id),
      servedLately: (id, peer) => this.servedLately(id, peer),
      idleTimeoutMs: o.limits.idleTimeoutMs,
      injectHint: o.injectHint,
    });
    this.ledger = new StreamLedger(o.store, o.audit, o.cluster?.name ?? "", (s) => this.fence(s));
    const cluster = o.cluster;
    if (cluster) this.splicer.forward = (sock, head) => cluster.forwardData(sock, head);
    this.flusher = setInterval(() => void this.flush(), 1_000);
    this.flusher.unref?.();
  }

  /** Writes open streams and changed sessions' totals to the store (one transaction). */
  flush(): Promise<void> {
    return this.ledger.flush();
  }

  stop(): void {
    clearInterval(this.flusher);
  }

  /** Streams offered and not yet ended, paired or not. */
  get streams(): number {
    return this.streamTotal;
  }

  /** Of those, the ones still waiting for their guest or agent to connect. */
  get pendingStreams(): number {
    return this.splicer.pending;
  }

  /** Of those, sessions' data channels (read at scrape time: one pass over the live streams). */
  get channels(): number {
    let n = 0;
    for (const s of this.all.values()) for (const st of s.streams) if (st.kind === "channel") n++;
    return n;
  }

  add(s: Session): void {
    this.all.set(s.id, s);
    s.share.sessions.add(s);
  }

  /**
   * A guest asks for its session's data channel (`channel`), or for a stream on one (`via`, `mux`). The
   * channel is a connection, paired here like any data connection (direct when proven), that carries no
   * audit line: what it carries are streams, each opened here, audited durably, and only then admitted by
   * the agent (the guest's first bytes wait in the channel at the agent meanwhile).
   */
  async open(
    peer: Peer,
    f: { sessionId: string; ref: string; channel?: true; via?: string; mux?: number[] },
  ): Promise<void> {
    const { sessionId, ref } = f;
    let s = this.guestSession(peer, sessionId, ref);
    // Its share is being taken over from a stopping node: the agent registering is a moment away.
    if (!s.share.agent && s.share.arriving) {
      await s.share.arriving;
      s = this.guestSession(peer, sessionId, ref);
    }
    if (f.channel) return this.openChannel(s, this.agentOf(s, ref), peer, ref);
    if (f.via === undefined || f.mux === undefined)
      throw new RefusedError(
        "version",
        "streams are opened on the session's data channel (this guest is older than the coordinator); update it",
        { ref },
      );
    // Looked up once for the frame's (up to 256) streams, not once each over every stream of the session.
    const channel = [...s.streams].find((st) => st.id === f.via && st.kind === "channel" && !st.ended);
    for (const n of f.mux) {
      // Each stream is answered on its own: one refused (a scope spent, a limit) leaves the others.
      try {
        this.openStream(s, f.via, channel, n);
      } catch (err) {
        if (!(err instanceof RefusedError)) throw err;
        peer.ch.sendError?.(err, `${ref}.${n}`);
      }
    }
  }

  private agentOf(s: Session, ref?: string): Peer {
    const agent = s.share.agent;
    if (!agent)
      throw new RefusedError(
        "host_offline",
        "the host's agent is reconnecting to the coordinator; try again in a moment",
        { ref },
      );
    return agent;
  }

  /** The session's caps on streams (a channel counts as one), before another is added. */
  private roomFor(s: Session, ref?: string): void {
    if (s.streams.size >= this.o.limits.maxStreamsPerSession || this.streamTotal >= this.o.limits.maxStreams)
      throw new RefusedError("limit", "stream limit reached for this session", { ref });
  }

  /** Stream `n` of channel `via` (`channel`, if it is open): audited durably, then the agent hears it may reach the target. */
  private openStream(s: Session, via: string, channel: Stream | undefined, n: number): void {
    const agent = this.agentOf(s);
    this.roomFor(s);
    if (!channel) throw new RefusedError("no_channel", `data channel "${via}" is not open for this session`);
    scopeCheck(s, "");
    const streamId = newId("t");
    const path = channel.direct ? "direct" : "relay";
    const durable = this.o.audit.appendDurable("stream.open", { ...actors(s), streamId, target: s.target, path });
    const stream = this.splicer.reported(streamId, s.id, { via, id: n, direct: !!channel.direct });
    this.streamTotal++;
    s.streams.add(stream);
    this.counted(s, path, stream);
    const reportMs = this.direct.reportMs;
    durable.then(
      () => stream.ended || agent.ch.send({ t: "incoming", sessionId: s.id, streamId, via, mux: n, reportMs }),
      () => this.splicer.end(stream, "the audit log could not record the stream"),
    );
  }

  /** The session's data channel: paired here (or direct), never in the audit log as a stream. */
  private openChannel(s: Session, agent: Peer, peer: Peer, ref: string): void {
    this.roomFor(s, ref);
    let live = 0;
    for (const st of s.streams) if (st.kind === "channel" && !st.ended) live++;
    // One in use, and the ones it replaced while their last streams finish (a move, the path going direct).
    if (live >= MAX_CHANNELS)
      throw new RefusedError("limit", `${live} data channels of this session are open; no more now`, { ref });
    const waiting = pendingOf(s);
    if (waiting >= this.o.limits.maxPendingStreamsPerSession)
      throw new RefusedError("limit", `${waiting} connections of this session are still waiting to connect`, { ref });
    const streamId = newId("c");
    const direct = this.direct.route(s);
    const { stream, guestToken, agentToken } = this.splicer.create(streamId, s.id, undefined, !!direct);
    stream.kind = "channel";
    stream.ref = ref;
    this.streamTotal++;
    s.streams.add(stream);
    if (direct)
      return this.direct.offer(s, stream, { agentToken, guestToken, direct, ref, channel: true }, Promise.resolve());
    agent.ch.send({ t: "incoming", sessionId: s.id, streamId, token: agentToken, channel: true });
    peer.ch.send({ t: "stream", sessionId: s.id, streamId, token: guestToken, ref });
  }

  /** The session, if it is this guest's; the same answer whether it is unknown or someone else's: ids are not capabilities. */
  private guestSession(peer: Peer, sessionId: string, ref: string): Session {
    const s = this.all.get(sessionId);
    // Its share just moved here (a graceful stop elsewhere) and the guest's own connection, certified for
    // this very session, asks before it resumed: that is a resume, as a `resume` frame would be.
    if (s && !s.guest && peer.guest?.sessionId === s.id && peer.guest.spki === s.guestInfo.spki)
      this.resume(peer, sessionId);
    if (!s || s.guest !== peer)
      throw new RefusedError("no_session", `no session "${sessionId}" belongs to this guest`, { ref });
    return s;
  }

  private counted(s: Session, path: "direct" | "relay", stream: Stream): void {
    metrics.streamsTotal.inc();
    metrics.streamsByPath.inc(1, { path });
    // Not activity: only bytes moved keep a session from idling out (see sweep).
    s.streamCount++;
    this.ledger.opened(stream, s);
  }

  private onStreamClosed(stream: Stream, reason: string): void {
    this.streamTotal--;
    this.direct.ended(stream);
    const s = this.all.get(stream.sessionId) ?? this.leaving.get(stream.sessionId);
    s?.streams.delete(stream);
    if (s && s.streams.size === 0) this.leaving.delete(s.id);
    // A channel is no stream in the log's eyes: it closes without a line, and its bytes (its streams',
    // and their frames') count in no total (a session's bytes are the sum of its streams' lines).
    if (stream.kind === "channel") {
      // Ended before it was set up (its agent went, its token lapsed): the guest, which may be waiting for a
      // direct connection that will never come, asks again rather than wait.
      if (s && !stream.spliced && stream.ref)
        s.guest?.ch.sendError?.(
          new RefusedError("no_channel", `the data channel was not set up: ${reason}`),
          stream.ref,
        );
      return void (s && this.orphaned(s, stream));
    }
    // A direct stream ended here, not by the agent: its line waits for the agent's final counts (direct.ts).
    if (!this.direct.awaitFinal(stream, s, () => this.closeLine(stream, s, reason))) this.closeLine(stream, s, reason);
    if (s) this.closeIfScopeDone(s);
  }

  /**
   * A channel ended here: the agent reports its streams' ends as it sees the channel go; any it has not
   * reported a moment later (an agent gone quiet) are ended here, their lines waiting for its counts as usual.
   */
  private orphaned(s: Session, channel: Stream): void {
    const inside = [...s.streams].filter((st) => st.via === channel.id);
    if (!inside.length) return;
    setTimeout(() => {
      for (const st of inside) this.splicer.end(st, "its data channel ended");
    }, CHANNEL_GRACE_MS).unref?.();
  }

  private closeLine(stream: Stream, s: Session | undefined, reason: string): void {
    if (s) {
      s.up += stream.up;
      s.down += stream.down;
      if (stream.direct) metrics.bytesDirect.inc(stream.up + stream.down);
      else if (stream.kind === "mux") {
        // Carried by a relayed channel: the splice copied these bytes (its own count holds the frames too).
        metrics.bytesRelayed.inc(stream.up, { direction: "guest_to_agent" });
        metrics.bytesRelayed.inc(stream.down, { direction: "agent_to_guest" });
      }
      // A session released to another node is that node's to write (a line may come after the release).
      if (this.all.has(s.id)) this.ledger.dirty.add(s);
    }
    this.ledger.ended(stream.id);
    // Records what already happened and gates nothing: durable with the next sync, within 50 ms.
    this.o.audit
      .appendSoon("stream.close", {
        ...(s ? actors(s) : { sessionId: stream.sessionId }),
        streamId: stream.id,
        bytesUp: stream.up,
        bytesDown: stream.down,
        reason,
      })
      .catch((err) => log.error(`audit log: ${errorMessage(err)}`));
  }

  /** `y 1`: the connection the host allowed is over (its channel does not count), and so is the session. */
  private closeIfScopeDone(s: Session): void {
    if (s.scope?.streams === undefined || s.streamCount < s.scope.streams) return;
    for (const st of s.streams) if (st.kind !== "channel") return;
    this.close(s, `the host allowed ${describeScope({ streams: s.scope.streams })}, and it has closed`, "scope");
  }

  /** The agent refused a stream it was offered: it ends now, with the agent's reason in its close line. */
  refuse(peer: Peer, f: { sessionId: string; streamId: string; reason: string }): void {
    const s = this.all.get(f.sessionId);
    if (!s && this.servedLately(f.sessionId, peer)) return;
    if (!s || s.share.agent !== peer)
      throw new RefusedError("no_session", `no session "${f.sessionId}" is served by you`);
    for (const st of s.streams) {
      if (st.id !== f.streamId) continue;
      this.splicer.end(st, `the host refused the stream: ${f.reason}`);
      // The guest's client would otherwise only see its connection close, with no word why.
      return s.guest?.ch.send({ t: "refused", sessionId: s.id, streamId: st.id, reason: f.reason });
    }
  }

  /** Whether `peer` served session `id`, which ended here lately. */
  private servedLately(id: string, peer: Peer): boolean {
    return this.endedAgent.get(id) === peer;
  }

  /** Ends a session's live streams at once (its guest or agent went away) without ending the session. */
  cutStreams(s: Session, reason: string): void {
    for (const st of [...s.streams]) this.splicer.end(st, reason);
  }

  /** A `resume` on a connection whose certificate the coordinator issued for this very session. */
  resume(peer: Peer, sessionId: string): void {
    const s = this.all.get(sessionId);
    // Released here a moment ago (its share moved): the store may not say so yet where this came from.
    if (!s && this.movedAway.has(sessionId) && peer.guest?.sessionId === sessionId)
      throw new RefusedError("unavailable", "this session's share moved to another coordinator node; resuming again");
    if (!s || !peer.guest || peer.guest.sessionId !== sessionId || peer.guest.spki !== s.guestInfo.spki) {
      // The session's own guest (its certificate names the session) hears why it ended; anyone else, nothing.
      const why = !s && peer.guest?.sessionId === sessionId ? this.ended.get(sessionId) : undefined;
      throw new RefusedError(
        "no_session",
        why ?? `session "${sessionId}" has ended (or was never yours); ask the host for a new code`,
      );
    }
    const old = s.guest;
    // The new connection is the guest's before the old one is failed: failing a stand-in (a connection
    // held by another node) drops it at once, and a drop of the session's guest would detach it.
    s.guest = peer;
    if (old && old !== peer)
      old.ch.fail(new RefusedError("replaced", "this session was resumed on another connection"));
    const wasRestored = s.restored;
    s.detachedSince = undefined;
    s.awayReason = undefined;
    s.restored = false;
    s.lastActive = Date.now();
    this.o.audit.append("session.resume", { ...actors(s), addr: peer.addr, afterRestart: wasRestored });
    peer.ch.send({
      t: "resumed",
      sessionId: s.id,
      target: s.target,
      idleTimeoutSec: Math.round(this.o.limits.idleTimeoutMs / 1000),
      restarted: wasRestored,
      hostOnline: s.share.agent !== undefined,
    });
  }

  /** The guest's connection went away: its streams end now, the session waits a grace period for it. */
  detach(s: Session, now: number, reason?: string): void {
    s.guest = undefined;
    s.detachedSince = now;
    s.awayReason = reason;
    this.cutStreams(s, reason ?? "the guest lost its connection to the coordinator");
    this.o.audit.append("session.detach", {
      ...actors(s),
      graceMs: this.o.limits.resumeGraceMs,
      ...(reason ? { reason } : {}),
    });
  }

  end(peer: Peer, sessionId: string, shares: Map<string, LiveShare>, reason?: string): void {
    const s = this.all.get(sessionId);
    if (!s) return;
    // Frames cap a reason at 200 characters: the side's own words are cut to fit after the prefix.
    const why = reason ? `: ${reason}`.slice(0, 160) : "";
    if (s.guest === peer) this.close(s, `the guest ended the session${why}`);
    else if (s.share.approvers.has(peer) || s.share.agent === peer) this.close(s, `the host ended the session${why}`);
    else if (!shares.has(s.share.id)) return;
    else throw new RefusedError("no_session", `no session "${sessionId}" belongs to you`);
  }

  /** Operator revoke: streams are destroyed at once, not drained. */
  revoke(sessionId: string, by: string): boolean {
    const s = this.all.get(sessionId);
    if (!s) return false;
    this.o.audit.append("revoke", { ...actors(s), by });
    this.close(s, "revoked by the operator");
    return true;
  }

  /** Another node holds the session's share now: it leaves memory, its totals go to the store, it stays open. */
  /** Whether a session released to another node still has streams (its channel among them) running here. */
  isLeaving(sessionId: string): boolean {
    return this.leaving.has(sessionId);
  }

  /** What this node's writes about the session carry when it is one node of several (see Fence). */
  private fence(s: Session): Fence | undefined {
    return this.o.cluster?.fence(s.share.id);
  }

  /**
   * `keepStreams` (a graceful stop): streams under way run on here until they end, their lines written
   * here, and so does their channel, until the guest, moved, lets it go once they have.
   */
  release(s: Session, reason: string, keepStreams = false): void {
    if (keepStreams && s.streams.size) this.leaving.set(s.id, s);
    else this.cutStreams(s, reason);
    if (this.movedAway.size >= ENDED_MEMORY) this.movedAway.delete(this.movedAway.values().next().value!);
    this.movedAway.add(s.id);
    this.all.delete(s.id);
    s.share.sessions.delete(s);
    this.ledger.dirty.delete(s);
    background(this.o.store.setTotals(s.id, s.streamCount, s.up, s.down, this.fence(s)), "stream totals", log.warn);
  }

  /** `condition` names the re-validation check that failed, when one did (see revalidate.ts). */
  close(s: Session, reason: string, condition?: Condition): void {
    if (!this.all.has(s.id)) return;
    // The lease as it is now: the share may be let go of before the agent's final counts come in.
    const fence = this.fence(s);
    // Streams end first, while the session is still found, so their bytes count in its total. A channel is
    // left to its ends for a moment: the last bytes of streams already over both ways (a `y 1` session ends as
    // its stream does) are still in it; the agent resets the rest and closes it as it hears of the end.
    for (const st of [...s.streams]) {
      if (st.kind !== "channel") this.splicer.end(st, reason);
      else if (!st.ended) setTimeout(() => this.splicer.end(st, reason), CHANNEL_GRACE_MS).unref?.();
    }
    this.all.delete(s.id);
    s.share.sessions.delete(s);
    if (this.ended.size >= ENDED_MEMORY) {
      const oldest = this.ended.keys().next().value!;
      this.ended.delete(oldest);
      this.endedAgent.delete(oldest);
    }
    this.ended.set(s.id, reason);
    if (s.share.agent) this.endedAgent.set(s.id, s.share.agent);
    // Its totals are the sum of its streams' lines: after the agent's final counts for direct ones.
    this.direct.afterFinals(s, () => {
      this.o.audit.append("session.close", {
        ...actors(s),
        reason,
        condition,
        streams: s.streamCount,
        bytesUp: s.up,
        bytesDown: s.down,
      });
      this.ledger.dirty.delete(s);
      background(
        this.o.store
          .setTotals(s.id, s.streamCount, s.up, s.down, fence)
          .then(() => this.o.store.closeSession(s.id, reason, Date.now(), fence)),
        "session close",
        log.warn,
      );
    });
    const frame: ServerFrame = { t: "closed", sessionId: s.id, reason };
    s.guest?.ch.send(frame);
    s.share.agent?.ch.send(frame);
    for (const a of s.share.approvers) if (a !== s.share.agent) a.ch.send(frame);
  }

  /**
   * Re-checks every live session (revalidate.ts): the first condition that fails ends it, with that
   * condition as the reason on both terminals and in the audit log.
   */
  revalidate(c: CheckContext): void {
    for (const s of [...this.all.values()]) {
      noteActivity(s, c.now);
      const failed = sessionFails(s, c);
      if (!failed) continue;
      if (failed.condition === "idle")
        this.o.audit.append("session.idle", { ...actors(s), idleMs: c.now - s.lastActive });
      this.close(s, failed.reason, failed.condition);
    }
  }
}
