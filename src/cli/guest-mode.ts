// What a guest does once approved, picked from join's and connect's flags before anything is asked.
import { ConfigError } from "../errors.ts";

/** What the guest does once approved: forward a port, run one command through it, or carry stdin/stdout. */
export type GuestMode =
  | { kind: "forward"; local?: string }
  | { kind: "command"; argv: string[]; local?: string }
  | { kind: "stdio" };

/** Checks the flags that pick a mode; `--stdio` has no local listener and runs no command. */
export function guestMode(o: { local?: string; stdio?: boolean; command?: string[] }): GuestMode {
  if (o.stdio && o.command) throw new ConfigError("--stdio carries the stream over stdin/stdout; it cannot also run a command after `--`");
  if (o.stdio && o.local) throw new ConfigError("--stdio opens no local port; drop --local");
  if (o.stdio) return { kind: "stdio" };
  if (o.command) return { kind: "command", argv: o.command, local: o.local };
  return { kind: "forward", local: o.local };
}
