// Re-validation: every live share and session is checked again on a short interval against the
// conditions it was allowed under; the first that fails ends it, and is named as the reason.
import { formatDuration, type LiveShare, type Session } from "./state.ts";
import type { Limits } from "./limits.ts";
import { timeOver } from "../wire/scope.ts";

export type Condition = "host_removed" | "share_closed" | "agent_away" | "guest_away" | "scope" | "idle";

export interface Failed {
  condition: Condition;
  /** What both terminals and the audit log say. */
  reason: string;
}

export interface CheckContext {
  now: number;
  limits: Pick<Limits, "resumeGraceMs" | "idleTimeoutMs">;
  /** Keys of the hosts the operator removed. */
  removed: ReadonlySet<string>;
  /** The shares open now, by id. */
  shares: ReadonlyMap<string, LiveShare>;
}

export const HOST_REMOVED_REASON = "the host was removed by the operator";

/** A share stands while its host is enrolled and its agent is connected or within its grace. */
export function shareFails(share: LiveShare, c: CheckContext): Failed | undefined {
  if (c.removed.has(share.hostSpki)) return { condition: "host_removed", reason: HOST_REMOVED_REASON };
  if (!share.agent && share.offlineSince !== undefined && c.now - share.offlineSince >= c.limits.resumeGraceMs) {
    return { condition: "agent_away", reason: share.awayReason ?? "the host's agent disconnected" };
  }
  return undefined;
}

/**
 * A session stands while its share does, its share is still the one open under that id, its guest is
 * connected or within its grace, the host still offers its target, and it has not been idle too long.
 * Checked in that order; the first failure is the one named.
 */
export function sessionFails(s: Session, c: CheckContext): Failed | undefined {
  if (c.removed.has(s.share.hostSpki)) return { condition: "host_removed", reason: HOST_REMOVED_REASON };
  if (c.shares.get(s.share.id) !== s.share) return { condition: "share_closed", reason: "the host stopped sharing" };
  const share = shareFails(s.share, c);
  if (share) return share;
  if (s.detachedSince !== undefined && c.now - s.detachedSince >= c.limits.resumeGraceMs) {
    return {
      condition: "guest_away",
      reason: s.restored
        ? "the guest did not come back after the coordinator restarted"
        : (s.awayReason ?? "the guest disconnected"),
    };
  }
  if (!s.share.targets.includes(s.target))
    return { condition: "scope", reason: "the host no longer offers this target" };
  const over = timeOver(s.scope, s.openedAt, c.now);
  if (over) return { condition: "scope", reason: over };
  if (c.now - s.lastActive >= c.limits.idleTimeoutMs)
    return { condition: "idle", reason: `idle for ${formatDuration(c.limits.idleTimeoutMs)}` };
  return undefined;
}

/** Bytes moved since the last check count as activity (live streams included): the idle clock restarts. */
export function noteActivity(s: Session, now: number): void {
  let bytes = s.up + s.down;
  // A data channel's bytes are its streams' (reported by the agent) and their frames': counted there.
  for (const st of s.streams) if (st.kind !== "channel") bytes += st.up + st.down;
  if (bytes !== s.lastBytes) {
    s.lastBytes = bytes;
    s.lastActive = now;
  }
}
