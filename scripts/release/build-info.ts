// What a build says about itself (commit, build date), taken only from the source tree so that two
// builds of one commit are byte-identical: the date is the commit's time, never the clock
// (SOURCE_DATE_EPOCH, https://reproducible-builds.org/specs/source-date-epoch/, overrides it).
import fs from "node:fs";

export interface BuildInfo {
  /** Full commit hash (with "-dirty" when tracked files differ from it), "unknown" outside a git checkout. */
  commit: string;
  /** Seconds since the epoch, or null when neither SOURCE_DATE_EPOCH nor git can say. */
  epoch: number | null;
}

export function buildInfo(cwd: string, env: Record<string, string | undefined> = process.env): BuildInfo {
  // Only cwd's own checkout counts: a source tarball unpacked inside some other repository is not that repository.
  const top = git(cwd, ["rev-parse", "--show-toplevel"]);
  const own = top !== null && fs.realpathSync(top) === fs.realpathSync(cwd);
  const commit = own ? git(cwd, ["rev-parse", "HEAD"]) : null;
  let epoch: number | null = null;
  if (env.SOURCE_DATE_EPOCH !== undefined && env.SOURCE_DATE_EPOCH !== "") {
    if (!/^\d{1,12}$/.test(env.SOURCE_DATE_EPOCH))
      throw new Error(`SOURCE_DATE_EPOCH must be whole seconds since 1970, not "${env.SOURCE_DATE_EPOCH}"`);
    epoch = Number(env.SOURCE_DATE_EPOCH);
  } else if (commit) {
    // %ct: committer time, the same in every clone of the commit (author time survives rebases).
    const ct = git(cwd, ["log", "-1", "--format=%ct", "HEAD"]);
    if (ct && /^\d+$/.test(ct)) epoch = Number(ct);
  }
  if (!commit || !/^[0-9a-f]{40,64}$/.test(commit)) {
    // Outside git (the Docker build stage), the builder may say which commit this is.
    const given = env.TESSERA_COMMIT;
    if (given && !/^[0-9a-f]{40,64}$/.test(given))
      throw new Error(`TESSERA_COMMIT must be a full commit hash, not "${given}"`);
    return { commit: given || "unknown", epoch };
  }
  // Tracked files changed since the commit: say so, since the binary is then not that commit's.
  const dirty = git(cwd, ["status", "--porcelain", "--untracked-files=no"]);
  return { commit: dirty ? `${commit}-dirty` : commit, epoch };
}

/** The build date as the binary prints it: ISO 8601 in UTC, seconds precision. */
export function isoDate(epoch: number | null): string {
  return epoch === null ? "unknown" : new Date(epoch * 1000).toISOString().replace(/\.000Z$/, "Z");
}

function git(cwd: string, args: string[]): string | null {
  try {
    const r = Bun.spawnSync(["git", ...args], { cwd, stdout: "pipe", stderr: "ignore" });
    return r.exitCode === 0 ? r.stdout.toString().trim() : null;
  } catch {
    return null; // no git installed: a source-tarball build
  }
}
