// What a guest does once approved, picked from join's and connect's flags before anything is asked.
import { ConfigError, TesseraError } from "../errors.ts";
import { splitAddress } from "../wire/address.ts";
import { DEFAULT_POOL, MAX_POOL } from "../guest/stream-pool.ts";

/** What the guest does once approved: forward a port, run one command through it, or carry stdin/stdout. */
export type GuestMode =
  | { kind: "forward"; local?: string; pool: number }
  | { kind: "command"; argv: string[]; local?: string; pool: number }
  | { kind: "stdio" };

/** Checks the flags that pick a mode; `--stdio` has no local listener and runs no command. */
export function guestMode(o: { local?: string; stdio?: boolean; command?: string[]; pool?: string }): GuestMode {
  if (o.stdio && o.command)
    throw new ConfigError("--stdio carries the stream over stdin/stdout; it cannot also run a command after `--`");
  if (o.stdio && o.local) throw new ConfigError("--stdio opens no local port; drop --local");
  if (o.stdio && o.pool !== undefined) throw new ConfigError("--stdio carries one stream; drop --pool");
  if (o.stdio) return { kind: "stdio" };
  if (o.local !== undefined) localAddress(o.local, 0);
  const pool = poolSize(o.pool);
  if (o.command) return { kind: "command", argv: o.command, local: o.local, pool };
  return { kind: "forward", local: o.local, pool };
}

/** `--pool N`: streams kept ready for new local connections, 0 to MAX_POOL. */
function poolSize(given: string | undefined): number {
  if (given === undefined) return DEFAULT_POOL;
  const n = /^\d+$/.test(given.trim()) ? Number(given.trim()) : NaN;
  if (!(n >= 0 && n <= MAX_POOL))
    throw new ConfigError(`--pool ${given}: give a number of streams from 0 (none kept ready) to ${MAX_POOL}`);
  return n;
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
