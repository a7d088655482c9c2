// Secret halves of codes minted by another process on this machine (`tessera mcp`), left for the host's
// `tessera share` in TESSERA_HOME/code-secrets: one 0600 file a code, with what it was minted for. A file is
// claimed by renaming it (atomic: two `share`s never both answer one code), and expired ones are pruned.
import { randomBytes } from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { formatCode, generateSecret, isNameplate } from "../wire/codes.ts";

/** What the host keeps with a code's secret half: the share and target it opens, and the host's own expiry. */
export interface Minted {
  secret: string;
  shareId: string;
  target: string;
  expiresAt: number;
}

/** The same cap as the keeper's (HOST_CODE_TTL_MS), kept here to avoid an import cycle. */
const CAP_MS = 15 * 60_000;
const CLAIMED = ".claimed-";

/** For a minter in another process (`tessera mcp`): leaves the secret half where this machine's approver finds it. */
export function leaveSecret(
  dir: string,
  nameplate: string,
  o: { shareId: string; target: string; expiresAt: number },
  now = Date.now(),
): string {
  const secret = generateSecret();
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const entry: Minted = {
    secret,
    shareId: o.shareId,
    target: o.target,
    expiresAt: Math.min(o.expiresAt, now + CAP_MS),
  };
  // Written under a temporary name and renamed: a reader never sees half a file.
  const tmp = path.join(dir, `${nameplate}.tmp-${randomBytes(6).toString("hex")}`);
  fs.writeFileSync(tmp, JSON.stringify(entry), { mode: 0o600 });
  fs.renameSync(tmp, path.join(dir, nameplate));
  return formatCode(nameplate + secret);
}

/** Takes the file for a nameplate, once: whoever renames it first owns it; anyone else finds nothing. */
export function claimSecretFile(dir: string, nameplate: string): Minted | undefined {
  if (!isNameplate(nameplate)) return undefined;
  const file = path.join(dir, nameplate);
  const mine = `${file}${CLAIMED}${process.pid}-${randomBytes(6).toString("hex")}`;
  try {
    fs.renameSync(file, mine);
  } catch {
    return undefined;
  }
  try {
    return parseEntry(fs.readFileSync(mine, "utf8"));
  } catch {
    return undefined;
  } finally {
    fs.rmSync(mine, { force: true });
  }
}

/**
 * At start: expired, unreadable and half-claimed entries go; the rest are made 0600 (and the folder 0700),
 * whatever made them, since each holds a live code.
 */
export function pruneSecretFiles(dir: string, now: number): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
    fs.chmodSync(dir, 0o700);
  } catch {
    return;
  }
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      // Another process may be writing (.tmp-) or reading (.claimed-) this one right now: a young one is left alone.
      if (!isNameplate(name) && now - fs.statSync(file).mtimeMs < 60_000) continue;
      const entry = isNameplate(name) ? parseEntry(fs.readFileSync(file, "utf8")) : undefined;
      if (!entry || entry.expiresAt <= now) fs.rmSync(file, { force: true });
      else fs.chmodSync(file, 0o600);
    } catch {
      fs.rmSync(file, { force: true });
    }
  }
}

function parseEntry(text: string): Minted | undefined {
  const e = JSON.parse(text) as Partial<Minted>;
  return typeof e.secret === "string" &&
    typeof e.shareId === "string" &&
    typeof e.target === "string" &&
    typeof e.expiresAt === "number"
    ? { secret: e.secret, shareId: e.shareId, target: e.target, expiresAt: e.expiresAt }
    : undefined;
}
