// Invites: `HOST:PORT/XXXX-XXXX` carries the coordinator's address with the code, so a guest needs no `link`.
// An unknown coordinator's CA is trusted on first use (safe now: the code, not the CA, authenticates the host)
// and kept under TESSERA_HOME/coordinators/ for next time; a linked coordinator keeps its linked CA.
import fs from "node:fs";
import path from "node:path";
import { TesseraError } from "../errors.ts";
import { certFingerprint } from "../pki/index.ts";
import { splitAddress } from "../wire/address.ts";
import { ControlClient } from "../wire/control-client.ts";
import { homeDir, readCa, readConfig, writePublic } from "./home.ts";
import { waitForCoordinator } from "./coordinator-wait.ts";
import { VERSION } from "../version.ts";

/** A code as typed, or an invite: the address part (if any) and the code part. */
export function splitInvite(input: string): { address?: string; code: string } {
  const slash = input.lastIndexOf("/");
  if (slash < 0) return { code: input };
  const address = input.slice(0, slash);
  try {
    splitAddress(address);
  } catch (err) {
    throw new TesseraError(
      "bad_address",
      `"${address}" (before the /) is not a coordinator address: an invite is HOST:PORT/XXXX-XXXX; ask the host for the exact line`,
      { cause: err },
    );
  }
  return { address, code: input.slice(slash + 1) };
}

/** Where to dial for an invite's address, and which CA to trust there (linked, kept from before, or new now). */
export async function coordinatorFor(
  address: string,
  say: (line: string) => void,
): Promise<{ address: string; caPem: string }> {
  const linked = process.env.TESSERA_COORDINATOR || readConfig().coordinator;
  if (linked === address) return { address, caPem: readCa() };
  const file = path.join(homeDir(), "coordinators", `${address.replace(/[^A-Za-z0-9.-]/g, "_")}.crt`);
  if (fs.existsSync(file)) return { address, caPem: fs.readFileSync(file, "utf8") };
  await waitForCoordinator(address, say);
  const c = await ControlClient.dial({ address, version: VERSION });
  c.close();
  writePublic(file, c.caPem);
  say(
    `the coordinator at ${address} is new to this machine: its CA is sha256:${certFingerprint(c.caPem)}, kept in ${file} for next time (the code, not this CA, proves who you reach)`,
  );
  return { address, caPem: c.caPem };
}
