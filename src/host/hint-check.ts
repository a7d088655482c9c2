// Which of a guest's direct-path hints the agent may dial: its deny list and a cap, so a guest cannot
// turn the agent into a scanner of the host's network (the agent reaches nothing else a guest names).
import net from "node:net";
import type { Hint } from "../wire/hints.ts";
import { deniedAddress } from "./policy.ts";
import { embeddedIPv4 } from "./embedded-ipv4.ts";

/** Most hints the agent dials for one session, whatever a guest offers; the rest are counted, not dialled. */
export const MAX_HINTS_DIALLED = 8;

const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet("127.0.0.0", 8, "ipv4");
LOOPBACK.addAddress("::1", "ipv6");
const MULTICAST = new net.BlockList();
MULTICAST.addSubnet("224.0.0.0", 4, "ipv4");
MULTICAST.addAddress("255.255.255.255", "ipv4");
MULTICAST.addSubnet("ff00::", 8, "ipv6");

export interface HintVerdict {
  /** What the agent dials, in the guest's order, each once. */
  dial: Hint[];
  refused: { hint: Hint; why: string }[];
  /** Allowed hints past the cap (and repeats): not dialled. */
  over: number;
  offered: number;
}

/**
 * `guestOnLoopback`: the coordinator saw the guest on a loopback address, so guest, coordinator and
 * host share one machine (tests, a demo); only then may a loopback hint be dialled.
 */
export function checkHints(hints: readonly Hint[], o: { guestOnLoopback: boolean; cap?: number }): HintVerdict {
  const cap = o.cap ?? MAX_HINTS_DIALLED;
  const out: HintVerdict = { dial: [], refused: [], over: 0, offered: hints.length };
  const seen = new Set<string>();
  for (const hint of hints) {
    const why = hintRefusal(hint, o.guestOnLoopback);
    if (why) {
      out.refused.push({ hint, why });
      continue;
    }
    const key = `${hint.host.toLowerCase()} ${hint.port}`;
    if (seen.has(key) || out.dial.length >= cap) {
      out.over++;
      continue;
    }
    seen.add(key);
    out.dial.push(hint);
  }
  return out;
}

/** Why the agent will not dial this hint (undefined when it may). Private ranges are allowed: an office or VPN is the point. */
export function hintRefusal(h: Hint, guestOnLoopback: boolean): string | undefined {
  const family = net.isIPv4(h.host) ? "ipv4" : net.isIPv6(h.host) ? "ipv6" : undefined;
  if (!family) return "not an IP address";
  if (!Number.isInteger(h.port) || h.port < 1 || h.port > 65535) return "not a port";
  const denied = deniedAddress(h.host);
  if (denied) return denied;
  // An IPv4 address inside an IPv6 one (NAT64, 6to4...) reaches what that IPv4 address reaches.
  const inner = embeddedIPv4(h.host);
  const any = (list: net.BlockList) => list.check(h.host, family) || inner.some((a) => list.check(a, "ipv4"));
  if (any(MULTICAST)) return "multicast or broadcast";
  if (any(LOOPBACK) && !guestOnLoopback) return "loopback (this machine), and the guest is not on it";
  return undefined;
}

/** Whether an address as the coordinator reports it ("127.0.0.1:5123", "::1:5123", "[::1]:5123") is loopback. */
export function isLoopbackAddr(addr: string): boolean {
  const host = addr
    .replace(/^\[/, "")
    .replace(/\]?:\d+$/, "")
    .replace(/^::ffff:/i, "");
  const family = net.isIPv4(host) ? "ipv4" : net.isIPv6(host) ? "ipv6" : undefined;
  return !!family && LOOPBACK.check(host, family);
}
