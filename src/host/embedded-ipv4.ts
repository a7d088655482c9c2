// IPv4 addresses carried inside IPv6 ones, so a deny list written for IPv4 also catches the IPv6 spellings
// that reach the same host: IPv4-compatible (::/96), IPv4-mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96 and
// the local-use 64:ff9b:1::/48, RFC 6052 / 8215), 6to4 (2002::/16) and Teredo's client (2001::/32).
import net from "node:net";

/** The eight 16-bit groups of an IPv6 address (zone id dropped), or undefined if it is not one. */
export function ipv6Groups(ip: string): number[] | undefined {
  const bare = ip.replace(/%.*$/, "");
  if (!net.isIPv6(bare)) return undefined;
  let text = bare.toLowerCase();
  // A trailing dotted quad is two groups.
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const fill = tail === undefined ? 0 : 8 - h.length - t.length;
  const groups = [...h, ...Array<string>(fill).fill("0"), ...t].map((g) => Number.parseInt(g, 16));
  return groups.length === 8 && groups.every((g) => g >= 0 && g <= 0xffff) ? groups : undefined;
}

/** Every IPv4 address this IPv6 address may stand for (none for plain IPv6, for :: and for ::1). */
export function embeddedIPv4(ip: string): string[] {
  const g = ipv6Groups(ip);
  if (!g) return [];
  const b = g.flatMap((x) => [x >> 8, x & 0xff]);
  const at = (...i: number[]) => i.map((k) => b[k]).join(".");
  const zero = (from: number, to: number) => b.slice(from, to).every((x) => x === 0);
  const out: string[] = [];
  // ::a.b.c.d (compatible) and ::ffff:a.b.c.d (mapped); :: and ::1 are IPv6's own.
  const mapped = zero(0, 10) && b[10] === 0xff && b[11] === 0xff;
  if (mapped || (zero(0, 12) && !(zero(12, 15) && b[15]! <= 1))) out.push(at(12, 13, 14, 15));
  // NAT64 well-known prefix 64:ff9b::/96.
  if (g[0] === 0x64 && g[1] === 0xff9b && zero(4, 12)) out.push(at(12, 13, 14, 15));
  // NAT64 local-use 64:ff9b:1::/48, with the address after whatever prefix is in use (RFC 6052: /48, /56,
  // /64 or /96; byte 8 is reserved and the suffix zero): every reading the address fits is checked.
  if (g[0] === 0x64 && g[1] === 0xff9b && g[2] === 1) {
    if (b[8] === 0 && zero(11, 16)) out.push(at(6, 7, 9, 10));
    if (b[8] === 0 && zero(12, 16)) out.push(at(7, 9, 10, 11));
    if (b[8] === 0 && zero(13, 16)) out.push(at(9, 10, 11, 12));
    if (zero(6, 12)) out.push(at(12, 13, 14, 15));
  }
  // 6to4: 2002:AABB:CCDD::/48.
  if (g[0] === 0x2002) out.push(at(2, 3, 4, 5));
  // Teredo (2001:0::/32): the client's address, inverted, in the last 32 bits.
  if (g[0] === 0x2001 && g[1] === 0)
    out.push(
      b
        .slice(12)
        .map((x) => x ^ 0xff)
        .join("."),
    );
  return [...new Set(out)];
}
