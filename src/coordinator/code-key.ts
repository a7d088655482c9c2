// The key that hashes share codes. It lives in a 0600 file beside the coordinator's other keys, not in
// the state database: a copy of the database alone (a backup, a leaked file) then holds only keyed
// hashes, and no offline search over the small code space can match them.
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { ConfigError } from "../errors.ts";
import type { Store } from "../store/store.ts";

const LEGACY_META = "code_key";

/**
 * Reads the key from `file`, creating it on first start. A database from an older tessera kept the key
 * inside: it moves to the file (so codes already handed out keep working) and leaves the database.
 */
export async function loadCodeKey(file: string, store: Store): Promise<Buffer> {
  if (fs.existsSync(file)) {
    const hex = fs.readFileSync(file, "utf8").trim();
    if (!/^[0-9a-f]{64}$/.test(hex))
      throw new ConfigError(
        `${file} is not a code key (64 hex characters); restore it from a backup, or delete it to start afresh (codes already given out then stop working)`,
      );
    if ((fs.statSync(file).mode & 0o077) !== 0) fs.chmodSync(file, 0o600);
    await store.deleteMeta(LEGACY_META);
    return Buffer.from(hex, "hex");
  }
  const hex = (await store.getMeta(LEGACY_META)) ?? randomBytes(32).toString("hex");
  // wx: two nodes starting at once must not overwrite each other's key; the loser reads the winner's.
  try {
    fs.writeFileSync(file, `${hex}\n`, { mode: 0o600, flag: "wx" });
  } catch (err) {
    if ((err as { code?: string }).code === "EEXIST") return loadCodeKey(file, store);
    throw new ConfigError(
      `cannot write the code key to ${file}: ${(err as Error).message}; make the directory writable once, or create the key with \`tessera ca --dir ${path.dirname(file)} --add-enroll-token\` (it writes a missing code key)`,
    );
  }
  await store.deleteMeta(LEGACY_META);
  return Buffer.from(hex, "hex");
}
