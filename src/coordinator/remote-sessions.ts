// Sessions held by the other nodes of a deployment, as the operator's view shows them: read from the
// shared store (their rows and totals, which their nodes write every few seconds), so any node's
// `tessera admin sessions` and console show the whole deployment, and revoke reaches them (cluster.ts).
import * as v from "valibot";
import type { Store } from "../store/store.ts";
import { describeScope, Scope } from "../wire/scope.ts";
import type { SessionView } from "./admin.ts";

/** Open sessions in the store that this node does not hold (`local`), in the operator's view's shape. */
export async function remoteSessions(
  store: Store,
  local: Set<string>,
  idleLimitSec: number,
  now: number,
): Promise<SessionView[]> {
  const rows = (await store.openSessions()).filter((r) => !local.has(r.id));
  if (rows.length === 0) return [];
  const hostKeys = new Map((await store.openShares()).map((s) => [s.id, s.hostSpki]));
  return rows.map((r) => {
    const scope = parseScope(r.scope);
    return {
      id: r.id,
      shareId: r.shareId,
      host: r.hostName,
      hostKey: hostKeys.get(r.shareId) ?? "",
      guest: r.guestName,
      guestKey: r.guestSpki,
      guestAddr: r.guestAddr,
      target: r.target,
      scope: {
        target: r.target,
        idleLimitSec,
        granted: describeScope(scope),
        ...(scope?.ttlMs !== undefined
          ? { timeLeftSec: Math.max(0, Math.ceil((r.openedAt + scope.ttlMs - now) / 1000)) }
          : {}),
        ...(scope?.streams !== undefined ? { streamsLeft: Math.max(0, scope.streams - r.streams) } : {}),
      },
      // What only the holding node knows (its path, idle time, live streams) is not guessed here.
      path: "unknown",
      state: "on another node",
      openedAt: new Date(r.openedAt).toISOString(),
      idleSec: 0,
      streams: { live: 0, total: r.streams },
      bytesUp: r.bytesUp,
      bytesDown: r.bytesDown,
    };
  });
}

function parseScope(raw: string | null | undefined): Scope | undefined {
  if (!raw) return undefined;
  try {
    const r = v.safeParse(Scope, JSON.parse(raw));
    return r.success ? r.output : undefined;
  } catch {
    return undefined;
  }
}
