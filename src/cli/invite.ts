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

/**
 * A code or invite as pasted, cleaned: surrounding spaces, spaces around the `/`, and the host's whole printed
 * line (`invite: tessera join HOST:PORT/CODE`, even with flags after it) all come down to the invite itself.
 */
export function cleanInvite(input: string): string {
  let s = input
    .trim()
    .replace(/^invite:\s*/i, "")
    .replace(/^tessera\s+join\s+/i, "")
    .replace(/\s*\/\s*/g, "/");
  // Flags pasted along with the line (`--reason "..."`) are not part of the code.
  const flag = s.search(/\s--?[a-z]/i);
  if (flag > 0) s = s.slice(0, flag);
  return s.trim();
}

/** A code as typed, or an invite: the address part (if any) and the code part. */
export function splitInvite(input: string): { address?: string; code: string } {
  input = cleanInvite(input);
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

/**
 * Where to dial for an invite's address, and which CA to trust there (linked, kept from before, or new now).
 * A new CA is kept only by `keep()`, which the caller runs once its own TLS handshake with it succeeded;
 * `pinFile` names a CA kept from before, for the message when the coordinator has changed its CA since.
 */
export async function coordinatorFor(address: string, say: (line: string) => void): Promise<InviteCoordinator> {
  const linked = process.env.TESSERA_COORDINATOR || readConfig().coordinator;
  if (linked === address) return { address, caPem: readCa() };
  const file = path.join(homeDir(), "coordinators", `${address.replace(/[^A-Za-z0-9.-]/g, "_")}.crt`);
  if (fs.existsSync(file)) return { address, caPem: fs.readFileSync(file, "utf8"), pinFile: file };
  await waitForCoordinator(address, say);
  const c = await ControlClient.dial({ address, version: VERSION });
  c.close();
  return {
    address,
    caPem: c.caPem,
    keep: () => {
      writePublic(file, c.caPem);
      say(
        `the coordinator at ${address} is new to this machine: its CA is sha256:${certFingerprint(c.caPem)}, kept in ${file} for next time (the code, not this CA, proves who you reach)`,
      );
    },
  };
}

export interface InviteCoordinator {
  address: string;
  caPem: string;
  /** A CA kept from an earlier invite to this address. */
  pinFile?: string;
  /** Keeps a CA seen for the first time; run after the join's own TLS handshake with it succeeded. */
  keep?: () => void;
}

/** A kept CA that no longer matches: name the file to delete, rather than the generic "link again". */
export function changedCa(via: InviteCoordinator, err: unknown): unknown {
  const e = err as { code?: string; cause?: { code?: string } };
  // A certificate that names another address is an address problem, said as such by the dial.
  if (!via.pinFile || e.code !== "ca_mismatch" || e.cause?.code === "ERR_TLS_CERT_ALTNAME_INVALID") return err;
  return new TesseraError(
    "ca_mismatch",
    `the coordinator at ${via.address} no longer presents the CA this machine kept for it in ${via.pinFile}; if its operator replaced the CA, delete that file and join again (otherwise someone may be in the way)`,
    { cause: err },
  );
}
