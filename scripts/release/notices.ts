// THIRD-PARTY-NOTICES: every npm package the bundler put into the executable (read from the build's
// metafile), with its version from bun.lock and its license and license text from the package
// itself. The build fails, rather than ship an incomplete list, when a bundled package is not a
// runtime dependency in bun.lock, when node_modules is out of step with bun.lock, or when a package
// names no license.
import fs from "node:fs";
import path from "node:path";

export interface Notice {
  /** bun.lock's key: the package name, prefixed by its parents when installed nested ("tsyringe/tslib"). */
  key: string;
  name: string;
  version: string;
  license: string;
  texts: { file: string; text: string }[];
}

interface Lock {
  workspaces: Record<string, { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string> }>;
  packages: Record<string, [string, string, { dependencies?: Record<string, string> }?, string?]>;
}

const LICENSE_FILE = /^(licen[cs]e|copying|notice)([.-].*)?$/i;

/** Package directories (relative to root) that a build's metafile shows were bundled. */
export function bundledPackages(metafileInputs: Iterable<string>): Set<string> {
  const dirs = new Set<string>();
  for (const input of metafileInputs) {
    // From the first node_modules on, so a nested copy keeps its parents ("a/node_modules/tslib").
    const at = input.indexOf("node_modules/");
    const m = at < 0 ? null : /^((?:node_modules\/(?:@[^/]+\/)?[^/]+\/)+)/.exec(input.slice(at));
    if (m) dirs.add(m[1]!.replace(/\/$/, ""));
  }
  return dirs;
}

/** bun.lock's key for a node_modules directory: "node_modules/a/node_modules/@s/b" -> "a/@s/b". */
export function lockKey(dir: string): string {
  return dir
    .split(/(?:^|\/)node_modules\//)
    .filter(Boolean)
    .join("/");
}

/** Keys of every package the workspace needs at run time (dependencies, transitively; no devDependencies). */
export function runtimeClosure(lock: Lock): Set<string> {
  const seen = new Set<string>();
  const root = lock.workspaces[""] ?? {};
  const visit = (from: string, name: string) => {
    // Bun's nesting: a package's own nested copy first, then its parents', then the top level.
    const parts = from ? from.split("/") : [];
    for (let i = parts.length; i >= 0; i--) {
      const key = [...parts.slice(0, i), name].join("/");
      if (!lock.packages[key]) continue;
      if (seen.has(key)) return;
      seen.add(key);
      for (const dep of Object.keys(lock.packages[key]![2]?.dependencies ?? {})) visit(key, dep);
      return;
    }
  };
  for (const name of Object.keys({ ...root.dependencies, ...root.optionalDependencies })) visit("", name);
  return seen;
}

export function collectNotices(root: string, bundledDirs: Set<string>): Notice[] {
  const lock = Bun.JSONC.parse(fs.readFileSync(path.join(root, "bun.lock"), "utf8")) as Lock;
  const runtime = runtimeClosure(lock);
  const notices: Notice[] = [];
  for (const dir of bundledDirs) {
    const key = lockKey(dir);
    const entry = lock.packages[key];
    if (!entry || !runtime.has(key))
      throw new Error(`${dir} is bundled but bun.lock has no runtime dependency "${key}"; run bun install`);
    const at = entry[0].lastIndexOf("@");
    const name = entry[0].slice(0, at);
    const version = entry[0].slice(at + 1);
    const pkg = JSON.parse(fs.readFileSync(path.join(root, dir, "package.json"), "utf8"));
    if (pkg.version !== version)
      throw new Error(
        `${dir} is ${pkg.name}@${pkg.version} but bun.lock says ${version}: run bun install --frozen-lockfile`,
      );
    const license = typeof pkg.license === "string" ? pkg.license : (pkg.license?.type ?? null);
    if (!license) throw new Error(`${name}@${version} names no license in its package.json`);
    const texts = fs
      .readdirSync(path.join(root, dir))
      .filter((f) => LICENSE_FILE.test(f))
      .sort()
      .map((file) => ({ file, text: fs.readFileSync(path.join(root, dir, file), "utf8").trimEnd() }));
    notices.push({ key, name, version, license, texts });
  }
  return notices.sort((a, b) => (a.name === b.name ? cmp(a.version, b.version) : cmp(a.name, b.name)));
}

export function renderNotices(notices: Notice[], version: string): string {
  const rule = "-".repeat(78);
  const head = [
    `THIRD-PARTY-NOTICES for tessera ${version}`,
    "",
    "The tessera executable bundles the JavaScript of the npm packages below (each at the version in",
    "bun.lock) and the Bun runtime (https://bun.sh, MIT; its own notices: https://bun.sh/docs/project/licensing).",
    "",
    ...notices.map((n) => `  ${n.name}@${n.version}  ${n.license}`),
    "",
  ];
  const bodies = notices.map((n) =>
    [
      rule,
      `${n.name}@${n.version}  ${n.license}  https://www.npmjs.com/package/${n.name}/v/${n.version}`,
      ...(n.texts.length
        ? n.texts.flatMap((t) => ["", `${t.file}:`, "", t.text])
        : ["", "(the package ships no license file)"]),
      "",
    ].join("\n"),
  );
  return `${head.join("\n")}\n${bodies.join("\n")}`;
}

// Byte order, not the locale's: the file must be the same on every machine.
const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
