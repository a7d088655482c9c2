// Tells every host (each share's agent and approvers) something that ends nothing, such as the audit disk
// filling up: their terminals print it, so a host knows why new requests fail before a guest asks why.
import type { LiveShare, Peer } from "./state.ts";

export function tellHosts(shares: ReadonlyMap<string, LiveShare>, message: string, code = "audit_full"): number {
  const told = new Set<Peer>();
  for (const share of shares.values()) {
    for (const p of [share.agent, ...share.approvers]) {
      if (!p || told.has(p)) continue;
      told.add(p);
      p.ch.send({ t: "notice", code, message: message.slice(0, 500) });
    }
  }
  return told.size;
}
