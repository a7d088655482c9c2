// The agent's own hold on a scoped yes (`y 15m`, `y 1`, `ro`): it counts the streams it serves and keeps
// the clock itself, across its reconnects, so a coordinator cannot lift a scope by offering more streams
// or by telling a later approval time (the earliest of its word, the signed receipt's time and our first
// sight of the session wins).
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";
import { streamRefusal, type Scope } from "../wire/scope.ts";

/** Sessions remembered past a reconnect; the oldest are forgotten first (they ended long ago). */
const REMEMBERED = 10_000;

interface Held {
  scope: Scope;
  since: number;
  served: number;
  timer?: ReturnType<typeof setTimeout>;
}

export class ScopeKeeper {
  private readonly held = new Map<string, Held>();

  /** A session frame (first or again after a reconnect); `expire` runs when a time scope is over. */
  seen(f: FrameOf<ServerFrame, "session">, now: number, expire: (sessionId: string) => void): void {
    if (!f.scope) return;
    let h = this.held.get(f.sessionId);
    if (!h) {
      if (this.held.size >= REMEMBERED) this.forget(this.held.keys().next().value!);
      h = { scope: f.scope, since: Math.min(now, f.openedAt ?? now, f.receipt?.body.at ?? now), served: 0 };
      this.held.set(f.sessionId, h);
    }
    if (h.scope.ttlMs !== undefined && !h.timer) {
      h.timer = setTimeout(() => expire(f.sessionId), Math.max(0, h.since + h.scope.ttlMs - now));
      h.timer.unref?.();
    }
  }

  /** Why this session may not have another stream now, or undefined; counts it when allowed. */
  take(sessionId: string, now: number): string | undefined {
    const h = this.held.get(sessionId);
    if (!h) return undefined;
    const why = streamRefusal(h.scope, h.served, h.since, now);
    if (!why) h.served++;
    return why;
  }

  readOnly(sessionId: string): boolean {
    return !!this.held.get(sessionId)?.scope.readOnly;
  }

  forget(sessionId: string): void {
    const h = this.held.get(sessionId);
    if (h?.timer) clearTimeout(h.timer);
    this.held.delete(sessionId);
  }
}
