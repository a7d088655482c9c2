// The version this binary reports; scripts/build.ts injects the release tag, the commit and the
// commit's date at build time (never the clock, so builds of one commit stay byte-identical).
import pkg from "../package.json" with { type: "json" };

declare const TESSERA_BUILD_VERSION: string | undefined;
declare const TESSERA_BUILD_COMMIT: string | undefined;
declare const TESSERA_BUILD_DATE: string | undefined;

export const VERSION: string =
  typeof TESSERA_BUILD_VERSION === "string" && TESSERA_BUILD_VERSION ? TESSERA_BUILD_VERSION : `v${pkg.version}`;

export interface BuildDetails {
  version: string;
  commit: string;
  /** The Bun runtime inside this executable (the one it was compiled with). */
  bun: string;
  /** The commit's time (SOURCE_DATE_EPOCH style), ISO 8601 UTC; "unknown" when run from source. */
  buildDate: string;
  platform: string;
}

export function buildDetails(): BuildDetails {
  return {
    version: VERSION,
    commit: typeof TESSERA_BUILD_COMMIT === "string" && TESSERA_BUILD_COMMIT ? TESSERA_BUILD_COMMIT : "unknown",
    bun: Bun.version,
    buildDate: typeof TESSERA_BUILD_DATE === "string" && TESSERA_BUILD_DATE ? TESSERA_BUILD_DATE : "unknown",
    platform: `${process.platform === "win32" ? "windows" : process.platform}-${process.arch}`,
  };
}
