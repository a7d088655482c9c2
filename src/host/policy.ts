// The agent's own rule for where it may connect: only what --allow names, and never an unspecified,
// link-local or cloud-metadata address unless that very address (not a name for it) was named.
import dns from "node:dns/promises";
import net from "node:net";
import { TesseraError } from "../errors.ts";
import { formatTarget, parseTarget } from "../wire/address.ts";
import { embeddedIPv4 } from "./embedded-ipv4.ts";

/** Metadata service names, compared after normalising (lower case, no trailing dot). */
const METADATA_NAMES = new Set([
  "metadata.google.internal",
  "metadata.goog",
  "metadata",
  "instance-data",
  "instance-data.ec2.internal",
]);

/** What a name may never resolve to. IPv4 rules also match IPv4-mapped IPv6 (::ffff:a.b.c.d, in any spelling). */
const DENIED: { what: string; list: net.BlockList }[] = [
  // Connecting to 0.0.0.0 (or ::) reaches this machine's own listeners on Linux: a back door to local targets.
  deny("an unspecified address (it reaches this machine)", ["0.0.0.0/8"], ["::/128"]),
  deny("link-local", ["169.254.0.0/16"], ["fe80::/10"]),
  // AWS/GCP/Azure/DigitalOcean use 169.254.169.254 (link-local, above); these are the others.
  deny(
    "a cloud metadata or host endpoint",
    ["100.100.100.200/32", "168.63.129.16/32", "192.0.0.192/32"],
    ["fd00:ec2::254/128"],
  ),
];

function deny(what: string, v4: string[], v6: string[]): { what: string; list: net.BlockList } {
  const list = new net.BlockList();
  for (const [cidrs, family] of [
    [v4, "ipv4"],
    [v6, "ipv6"],
  ] as const) {
    for (const cidr of cidrs) {
      const [base, bits] = cidr.split("/");
      list.addSubnet(base!, Number(bits), family);
    }
  }
  return { what, list };
}

/**
 * Why the agent will not dial this address unless it was named exactly, or undefined when it may. An IPv6
 * address carrying an IPv4 one (NAT64, 6to4, compatible, mapped, Teredo) is judged by that IPv4 address too.
 */
export function deniedAddress(ip: string): string | undefined {
  const family = net.isIPv4(ip) ? "ipv4" : net.isIPv6(ip) ? "ipv6" : undefined;
  if (!family) return undefined;
  const own = DENIED.find((d) => d.list.check(ip, family))?.what;
  if (own) return own;
  for (const inner of embeddedIPv4(ip)) {
    const what = DENIED.find((d) => d.list.check(inner, "ipv4"))?.what;
    if (what) return `${what} (the IPv4 address ${inner} inside ${ip})`;
  }
  return undefined;
}

/** Name to address, as the operating system resolves it (tests give their own). */
export type Lookup = (host: string) => Promise<{ address: string }>;

export class TargetPolicy {
  private readonly allowed: Set<string>;

  constructor(
    allow: string[],
    private readonly lookup: Lookup = (host) => dns.lookup(host),
  ) {
    this.allowed = new Set(allow.map((a) => normalize(a)));
  }

  get targets(): string[] {
    return [...this.allowed];
  }

  /** Resolves the target and returns the address to dial, or throws saying why it is refused. */
  async resolve(target: string): Promise<{ host: string; port: number }> {
    let t: string;
    try {
      t = normalize(target);
    } catch {
      throw new TesseraError("not_allowed", `target ${target} is not on this agent's --allow list`);
    }
    if (!this.allowed.has(t))
      throw new TesseraError("not_allowed", `target ${target} is not on this agent's --allow list`);
    const { host, port } = parseTarget(t);
    // An address named exactly in --allow is the host's own choice, whatever range it is in.
    if (net.isIP(host)) return { host, port };
    if (METADATA_NAMES.has(host))
      throw new TesseraError(
        "not_allowed",
        `target ${target} is a cloud metadata name; name its address explicitly in --allow if you really mean it`,
      );
    const { address } = await this.lookup(host);
    const why = deniedAddress(address);
    if (why)
      throw new TesseraError(
        "not_allowed",
        `target ${target} resolves to ${address}, ${why}; name that address explicitly in --allow if you really mean it`,
      );
    return { host: address, port };
  }
}

/**
 * One spelling per target, so the allow list and the names checked against it cannot be told apart by
 * case or by a fully qualified name's trailing dot ("Metadata.Google.Internal.:80" is "metadata.google.internal:80").
 */
function normalize(target: string): string {
  const { host, port } = parseTarget(target.trim().toLowerCase());
  const bare = net.isIP(host) ? host : host.replace(/\.+$/, "");
  if (!bare) throw new TesseraError("bad_address", `"${target}" has no host name`);
  return formatTarget(bare, port);
}
