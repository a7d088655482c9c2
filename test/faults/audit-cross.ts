// Reads every node's audit log together and counts what must never happen across nodes: a session
// closed twice (by two nodes, or twice by one), a stream opened on a session another node had already
// closed, a stream opened by a node on a share it had let go of, and a stream.open with no close.
// (The faults-audit branch's audit-check.ts verifies the chains; this checks the cluster's promises.)
import type { AuditLine, Rig } from "./cluster.ts";

export interface CrossCheck {
  sessionsClosedTwice: string[];
  streamsOnClosedSessions: string[];
  streamsAfterLetGo: string[];
  streamsWithoutClose: string[];
}

export function crossCheck(rig: Rig): CrossCheck {
  const all = rig.all();
  const t = (e: AuditLine) => Date.parse(String(e.ts));
  const closes = new Map<string, { node: string; at: number }[]>();
  for (const e of all.filter((e) => e.event === "session.close")) {
    const list = closes.get(String(e.sessionId)) ?? [];
    list.push({ node: e.node, at: t(e) });
    closes.set(String(e.sessionId), list);
  }
  const opens = all.filter((e) => e.event === "stream.open");
  const closedStreams = new Set(all.filter((e) => e.event === "stream.close").map((e) => String(e.streamId)));
  // Per node and share, when it let go (share.moved) and when it took the share (open/adopt) again.
  const streamsAfterLetGo: string[] = [];
  for (const o of opens) {
    const mine = rig.nodes.find((n) => n.name === o.node)!.events();
    let held = false;
    for (const e of mine) {
      if (e.shareId !== o.shareId) continue;
      if (Date.parse(String(e.ts)) > t(o)) break;
      if (e.event === "share.open" || e.event === "share.adopt" || e.event === "share.back") held = true;
      if (e.event === "share.moved" || e.event === "share.close") held = false;
    }
    if (!held) streamsAfterLetGo.push(`${o.node} ${o.streamId} at ${o.ts}`);
  }
  return {
    sessionsClosedTwice: [...closes].filter(([, l]) => l.length > 1).map(([id, l]) => `${id}: ${JSON.stringify(l)}`),
    streamsOnClosedSessions: opens
      .filter((o) => (closes.get(String(o.sessionId)) ?? []).some((c) => c.node !== o.node && c.at < t(o)))
      .map((o) => `${o.node} ${o.streamId} on ${o.sessionId} at ${o.ts}`),
    streamsAfterLetGo,
    streamsWithoutClose: opens
      .filter((o) => !closedStreams.has(String(o.streamId)))
      .map((o) => `${o.node} ${o.streamId}`),
  };
}
