// Several nodes' audit logs at once: the given files grouped into chains by their rotation lines (a file
// continues another only through its first line), then every chain verified on its own.
import fs from "node:fs";
import path from "node:path";
import { previousOf, sha256, splitLines } from "./files.ts";
import { parseLine, verifyChain, type VerifyOptions, type VerifyResult } from "./verify.ts";
import { ConfigError } from "../errors.ts";

export interface Chain {
  /** Oldest first, with the rotated files it continues that sit beside it. */
  files: string[];
  /** The file its oldest continues (named by its rotation line), which is not here. */
  missing?: string;
}

export interface ChainsResult {
  ok: boolean;
  chains: VerifyResult[];
  warnings: string[];
}

/** A rotation line: this file continues the one whose last line hashes to `prev`, at seq - 1. */
interface Link {
  previousFile: string;
  seq: number;
  prev: string;
}

function firstLine(file: string): Buffer | undefined {
  const fd = fs.openSync(file, "r");
  try {
    const head = Buffer.alloc(64 * 1024);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    return splitLines(head.subarray(0, n))[0];
  } finally {
    fs.closeSync(fd);
  }
}

function rotationOf(file: string): Link | undefined {
  const b = firstLine(file);
  const rec = b ? parseLine(b) : undefined;
  const named = (rec as { previousFile?: unknown } | undefined)?.previousFile;
  if (rec?.event !== "rotate" || typeof named !== "string") return undefined;
  return { previousFile: named, seq: rec.seq, prev: rec.prev };
}

/** The last line's hash and seq: what a rotation line in the next file must name. */
function endOf(file: string): { hash: string; seq: number } | undefined {
  const last = splitLines(fs.readFileSync(file)).at(-1);
  const rec = last ? parseLine(last) : undefined;
  return rec && last ? { hash: sha256(last), seq: rec.seq } : undefined;
}

/**
 * Groups files into chains. A file continues the one its rotation line names beside it (as the writer
 * left them); failing that, the given file whose last line its rotation line hashes (files gathered from
 * several machines and renamed). Names of folders or files never decide which node wrote what.
 */
export function groupChains(inputs: string[]): { chains: Chain[]; warnings: string[] } {
  const real = (f: string) => fs.realpathSync(f);
  const given = new Map<string, string>();
  for (const f of inputs) if (!given.has(real(f))) given.set(real(f), f);
  const ends = new Map<string, { hash: string; seq: number } | undefined>();
  const end = (f: string) => {
    if (!ends.has(f)) ends.set(f, endOf(f));
    return ends.get(f);
  };
  const prevOf = new Map<string, string | undefined>();
  const missing = new Map<string, string>();
  const link = (key: string, shown: string): string | undefined => {
    if (prevOf.has(key)) return prevOf.get(key);
    const r = rotationOf(shown);
    let prev: string | undefined;
    if (r) {
      const beside = previousOf(shown);
      if (beside && fs.existsSync(beside)) prev = real(beside);
      else {
        const match = [...given.keys()].filter(
          (g) => g !== key && end(g)?.hash === r.prev && end(g)?.seq === r.seq - 1,
        );
        if (match.length === 1) prev = match[0];
        else missing.set(key, path.basename(r.previousFile));
      }
    }
    prevOf.set(key, prev);
    return prev;
  };
  const shownOf = new Map(given);
  // Walk back from every given file, so rotated files beside them join their chains.
  for (const [key, shown] of given) {
    let k: string | undefined = key;
    let s = shown;
    for (let guard = 0; k && !prevOf.has(k) && guard < 100_000; guard++) {
      const p = link(k, s);
      if (p && !shownOf.has(p)) shownOf.set(p, previousOf(s) ?? p);
      k = p;
      s = p ? shownOf.get(p)! : s;
    }
  }
  const continued = new Map<string, string[]>();
  for (const [k, p] of prevOf) if (p) continued.set(p, [...(continued.get(p) ?? []), k]);
  const warnings: string[] = [];
  for (const [p, next] of continued) {
    if (next.length > 1)
      warnings.push(
        `${shownOf.get(p)} is continued by ${next.length} files (${next.map((n) => shownOf.get(n)).join(", ")}): one writer never forks its chain, so all but one are copies or forgeries`,
      );
  }
  const chains: Chain[] = [];
  const placed = new Set<string>();
  const tips = [...prevOf.keys()].filter((k) => !continued.has(k));
  // A loop of rotation links has no tip: each file left over starts its own walk.
  for (const tip of [...tips, ...prevOf.keys()]) {
    if (placed.has(tip)) continue;
    const files: string[] = [];
    const seen = new Set<string>();
    let k: string | undefined = tip;
    let oldest = tip;
    while (k && !seen.has(k)) {
      seen.add(k);
      placed.add(k);
      files.unshift(shownOf.get(k)!);
      oldest = k;
      k = prevOf.get(k);
    }
    chains.push({ files, missing: missing.get(oldest) });
  }
  // In the order the files were given: the chain holding the first given file comes first.
  const order = [...given.keys()];
  const rank = (c: Chain) => Math.min(...c.files.map((f) => order.indexOf(real(f))).filter((i) => i >= 0));
  return { chains: chains.sort((a, b) => rank(a) - rank(b)), warnings };
}

/** A signed head belongs to one node's chain: refuse to check several against it. */
export function oneChainForHead(chains: number): void {
  if (chains > 1) {
    throw new ConfigError(
      `--against checks one node's log against that node's signed head, but these files hold ${chains} separate chains: verify each node's files with its own --against, or all of them without it`,
    );
  }
}

/** Every chain among `inputs`, each verified with every check; ok only when all are. */
export function verifyChains(inputs: string[], o: VerifyOptions = {}): ChainsResult {
  const { chains, warnings } = groupChains(inputs);
  if (o.head) oneChainForHead(chains.length);
  const results = chains.map((c) => verifyChain(c.files, c.missing, o));
  return { ok: results.every((r) => r.ok), chains: results, warnings };
}
