// A port the coordinator cannot open, in the operator's words: which flag, which address, and what to change.
import { ConfigError } from "../errors.ts";
import { formatTarget } from "../wire/address.ts";

/** flag: the option that named the address (--listen, --http); err: what Bun.listen or Bun.serve threw. */
export function listenError(flag: string, host: string, port: number, err: unknown): ConfigError {
  const code = (err as { code?: string }).code;
  const at = formatTarget(host, port);
  const why: Record<string, string> = {
    EADDRINUSE: `${at} is already in use (another coordinator?); stop it, or give ${flag} another port`,
    EADDRNOTAVAIL: `${at} is not an address of this machine; give ${flag} one of its addresses (or 0.0.0.0 for all)`,
    EACCES: `${at} needs privileges to open (ports below 1024); give ${flag} a port from 1024 up`,
  };
  return new ConfigError(
    `cannot listen on ${flag} ${at}: ${why[code ?? ""] ?? (err as Error).message ?? String(err)}`,
    { cause: err },
  );
}
