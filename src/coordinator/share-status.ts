// What the coordinator tells a share's host about the share (`status`): its live sessions, as the
// host's own terminal would list them, and how many requests wait for an answer.
import { MAX_STATUS_SESSIONS, type FrameOf, type ServerFrame } from "../wire/protocol.ts";
import type { LiveShare } from "./state.ts";
import { pathOf } from "./direct.ts";

/** idleTimeoutMs: the coordinator's idle limit, so the host can count down to it. */
export function shareStatus(share: LiveShare, now: number, idleTimeoutMs?: number): FrameOf<ServerFrame, "status"> {
  const all = [...share.sessions];
  const sessions = all.slice(0, MAX_STATUS_SESSIONS).map((s) => ({
    sessionId: s.id,
    guest: s.guestInfo.name,
    addr: s.guestInfo.addr,
    target: s.target,
    streams: s.streamCount,
    up: s.up,
    down: s.down,
    idleSec: Math.max(0, Math.floor((now - s.lastActive) / 1000)),
    away: !s.guest,
    path: pathOf(s),
  }));
  return {
    t: "status",
    shareId: share.id,
    online: !!share.agent,
    targets: share.targets,
    sessions,
    more: all.length - sessions.length,
    requests: share.requests.size,
    ...(idleTimeoutMs !== undefined ? { idleTimeoutSec: Math.floor(idleTimeoutMs / 1000) } : {}),
  };
}
