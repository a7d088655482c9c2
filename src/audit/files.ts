// Where an audit chain lives: lines with their exact bytes, their hashes, and the rotated files a file continues.
import fs from "node:fs";
import path from "node:path";
import { createHash } from "node:crypto";

export const GENESIS = "0".repeat(64);

export function sha256(s: string | Uint8Array): string {
  return createHash("sha256").update(s).digest("hex");
}

/** Splits into lines keeping each line's exact bytes (with its "\n"), which is what `prev` hashes. */
export function splitLines(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let start = 0;
  for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, start)) {
    out.push(buf.subarray(start, i + 1));
    start = i + 1;
  }
  if (start < buf.length) out.push(buf.subarray(start));
  return out;
}

/** The file `file` continues, when its first line is a rotation and that file sits beside it. */
export function previousOf(file: string): string | undefined {
  const fd = fs.openSync(file, "r");
  try {
    const head = Buffer.alloc(4096);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    const first = head.subarray(0, n).toString("utf8").split("\n")[0]!;
    const rec = JSON.parse(first) as { event?: string; previousFile?: unknown };
    if (rec.event !== "rotate" || typeof rec.previousFile !== "string" || rec.previousFile.includes("/"))
      return undefined;
    return path.join(path.dirname(file), rec.previousFile);
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** Orders `files` oldest first, adding the rotated files each one continues when they are present. */
export function chainFiles(files: string[]): { files: string[]; missing?: string } {
  const out = [...files];
  for (let guard = 0; guard < 100_000; guard++) {
    const prev = previousOf(out[0]!);
    if (!prev || out.includes(prev)) break;
    if (!fs.existsSync(prev)) return { files: out, missing: path.basename(prev) };
    out.unshift(prev);
  }
  return { files: out };
}
