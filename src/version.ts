// The version this binary reports; scripts/build.ts injects the release tag at build time.
import pkg from "../package.json" with { type: "json" };

declare const TESSERA_BUILD_VERSION: string | undefined;

export const VERSION: string =
  typeof TESSERA_BUILD_VERSION === "string" && TESSERA_BUILD_VERSION ? TESSERA_BUILD_VERSION : `v${pkg.version}`;
