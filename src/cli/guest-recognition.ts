// The prompt's lines about who a guest is: its identity key and what known_guests says of it.
import type { Recognition } from "../host/known-guests.ts";
import { showName } from "../wire/untrusted-text.ts";

const ordinal = (n: number) =>
  `${n}${n % 100 >= 11 && n % 100 <= 13 ? "th" : (["th", "st", "nd", "rd"][n % 10] ?? "th")}`;

export function ago(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 90) return "just now";
  if (s < 90 * 60) return `${Math.round(s / 60)} minutes ago`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)} hours ago`;
  return `${Math.round(s / 86400)} days ago`;
}

/** The prompt's `identity` and `known` lines (a loud block when something does not add up). */
export function recognitionLines(
  id: string | undefined,
  r: Recognition | undefined,
  name: string,
  now = Date.now(),
): string {
  if (!id || !r)
    return "  known   this guest sent no identity key (an older tessera): there is no telling whether you know them\n";
  const head = `  identity ${id}\n`;
  switch (r.kind) {
    case "new":
      return `${head}  known   new guest: this identity has never been approved here\n`;
    case "known":
      return `${head}  known   known as ${showName(r.guest.names[0]!)} (${ordinal(r.guest.visits + 1)} visit, last ${ago(now - r.guest.last)})\n`;
    case "renamed":
      return (
        `${head}  !!! WARNING: this identity is known here as ${r.guest.names.map((n) => showName(n)).join(", ")} (${r.guest.visits} visit(s)), but now calls itself ${showName(name)}.\n` +
        "  !!! The same person renamed, or their key is in someone else's hands: ask them before you answer.\n"
      );
    case "impostor":
      return (
        `${head}  !!! WARNING: ${showName(name)} is known here with ANOTHER identity key (${r.others.map((g) => g.id).join(", ")}).\n` +
        `  !!! This may be someone else using the name ${showName(name)}; a new machine or TESSERA_HOME also does this. Ask them before you answer.\n`
      );
  }
}
