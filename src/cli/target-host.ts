// `share --host`: the target's host checked before anything is registered, in the host's words: a name with
// characters no host name has, or one that does not resolve here, is said as such (not as "a bad port").
import dns from "node:dns/promises";
import net from "node:net";
import { ConfigError } from "../errors.ts";

const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?)*\.?$/;

export async function checkTargetHost(host: string): Promise<void> {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (net.isIP(bare)) return;
  if (!HOST_NAME.test(host))
    throw new ConfigError(`--host "${host}" is not a host name or IP address (letters, digits, dots and dashes)`);
  try {
    await dns.lookup(host);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new ConfigError(
      code === "ENOTFOUND" || code === "EAI_NONAME"
        ? `--host ${host} does not resolve on this machine (no such host name); check the spelling, or give its IP address`
        : `--host ${host} could not be resolved (${code ?? (err as Error).message}); give its IP address instead`,
      { cause: err },
    );
  }
}
