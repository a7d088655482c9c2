// The agent's own rule for where it may connect: only what --allow names, and never a link-local
// or cloud-metadata address unless that address itself was named.
import dns from "node:dns/promises";
import net from "node:net";
import { TesseraError } from "../errors.ts";
import { parseTarget } from "../wire/address.ts";

const METADATA_NAMES = new Set(["metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"]);

export function isLinkLocalOrMetadata(ip: string): boolean {
  const v = ip.toLowerCase();
  if (net.isIPv4(v)) return v.startsWith("169.254.") || v === "100.100.100.200"; // link-local incl. AWS/GCP/Azure metadata; Alibaba
  if (v.startsWith("::ffff:")) return isLinkLocalOrMetadata(v.slice(7));
  return /^fe[89ab][0-9a-f]:/.test(v) || v === "fd00:ec2::254";
}

export class TargetPolicy {
  private readonly allowed: Set<string>;

  constructor(allow: string[]) {
    for (const a of allow) parseTarget(a);
    this.allowed = new Set(allow.map(normalize));
  }

  get targets(): string[] {
    return [...this.allowed];
  }

  /** Resolves the target and returns the address to dial, or throws saying why it is refused. */
  async resolve(target: string): Promise<{ host: string; port: number }> {
    const t = normalize(target);
    if (!this.allowed.has(t)) throw new TesseraError("not_allowed", `target ${target} is not on this agent's --allow list`);
    const { host, port } = parseTarget(t);
    if (net.isIP(host)) return { host, port };
    if (METADATA_NAMES.has(host)) throw new TesseraError("not_allowed", `target ${target} is a cloud metadata name; name its address explicitly in --allow if you really mean it`);
    const { address } = await dns.lookup(host);
    if (isLinkLocalOrMetadata(address)) {
      throw new TesseraError("not_allowed", `target ${target} resolves to link-local/metadata address ${address}; name that address explicitly in --allow if you really mean it`);
    }
    return { host: address, port };
  }
}

function normalize(target: string): string {
  return target.trim().toLowerCase();
}
