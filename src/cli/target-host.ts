// `share --host`: the target's host checked before anything is registered, in the host's words: a name with
// characters no host name has is refused, one that does not resolve here is warned about (it may resolve
// later, on a VPN; the agent's policy still decides each stream), neither as "a bad port".
import dns from "node:dns/promises";
import net from "node:net";
import { ConfigError } from "../errors.ts";

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)*\.?$/;

/** Throws for a host that is not a name or address; says (through `warn`) when a name does not resolve. */
export async function checkTargetHost(host: string, warn: (line: string) => void): Promise<void> {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (net.isIP(bare)) return;
  if (!HOST_NAME.test(host))
    throw new ConfigError(`--host "${host}" is not a host name or IP address (letters, digits, dots and dashes)`);
  try {
    await dns.lookup(host);
  } catch (err) {
    const code = (err as { code?: string }).code;
    warn(
      code === "ENOTFOUND" || code === "EAI_NONAME"
        ? `--host ${host} does not resolve on this machine (no such host name): guests will reach nothing until it does; check the spelling, or give its IP address`
        : `--host ${host} could not be resolved (${code ?? (err as Error).message}); give its IP address if guests reach nothing`,
    );
  }
}
