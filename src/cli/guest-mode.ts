// What a guest does once approved, picked from join's and connect's flags before anything is asked.
import { ConfigError, TesseraError } from "../errors.ts";
import { splitAddress } from "../wire/address.ts";

/** What the guest does once approved: forward a port, run one command through it, or carry stdin/stdout. */
export type GuestMode =
  | { kind: "forward"; local?: string }
  | { kind: "command"; argv: string[]; local?: string }
  | { kind: "stdio" };

/**
 * Checks the flags that pick a mode; `--stdio` has no local listener and runs no command. `--pool` is
 * accepted and has no effect: every stream now starts at once inside the session's data channel.
 */
export function guestMode(o: { local?: string; stdio?: boolean; command?: string[] }): GuestMode {
  if (o.stdio && o.command)
    throw new ConfigError("--stdio carries the stream over stdin/stdout; it cannot also run a command after `--`");
  if (o.stdio && o.local) throw new ConfigError("--stdio opens no local port; drop --local");
  if (o.stdio) return { kind: "stdio" };
  if (o.local !== undefined) localAddress(o.local, 0);
  if (o.command) return { kind: "command", argv: o.command, local: o.local };
  return { kind: "forward", local: o.local };
}

/**
 * Where the guest listens: `--local PORT` (as ssh users type it) is 127.0.0.1:PORT, `--local HOST` takes
 * `defaultPort`, HOST:PORT is as given; port 0 is any free port. A bad value is a ConfigError, before anything is asked.
 */
export function localAddress(local: string, defaultPort: number): { host: string; port: number } {
  const text = /^\d+$/.test(local.trim()) ? `127.0.0.1:${local.trim()}` : local;
  try {
    return splitAddress(text, defaultPort, true);
  } catch (err) {
    if (!(err instanceof TesseraError)) throw err;
    throw new ConfigError(
      `--local ${local}: give PORT, HOST or HOST:PORT with a port from 0 to 65535 (0: any free port)`,
    );
  }
}
