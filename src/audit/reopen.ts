// Where an existing log ends, read before a coordinator writes to it: the last whole line's seq, hash
// and time, and a torn last line (a crash mid-write) kept apart, never built on.
import fs from "node:fs";
import { GENESIS, sha256 } from "./files.ts";
import * as v from "valibot";
import { TesseraError } from "../errors.ts";
import { logger } from "../log.ts";
import { AuditLine } from "./line.ts";

const log = logger("audit");

export interface LogEnd {
  seq: number;
  prev: string;
  lastTs: string;
  /** The file's whole lines. */
  text: string;
  /** A last line with no end, and the bytes before it. */
  torn?: { text: string; keep: number };
}

export function readEnd(file: string): LogEnd {
  const end: LogEnd = { seq: 0, prev: GENESIS, lastTs: "", text: "" };
  if (!fs.existsSync(file)) return end;
  let text = fs.readFileSync(file, "utf8");
  const cut = text.lastIndexOf("\n") + 1;
  if (cut < text.length) {
    end.torn = { text: text.slice(cut), keep: Buffer.byteLength(text.slice(0, cut)) };
    text = text.slice(0, cut);
  }
  end.text = text;
  const last = text.slice(text.lastIndexOf("\n", text.length - 2) + 1);
  if (last) {
    end.prev = sha256(last);
    const rec = lastRecord(last);
    if (!rec)
      throw new TesseraError(
        "audit_broken",
        `the last line of ${file} is not an audit line, so the chain cannot go on from it; see what happened with \`tessera audit verify ${file}\`, then move the file aside to start a new log`,
      );
    end.seq = rec.seq;
    end.lastTs = rec.ts;
  }
  return end;
}

/** Moves a torn last line into `<file>.torn-<ms>` (0600), cuts the log back to its whole lines, and says so; returns the side file. */
export function setTornAside(file: string, fd: number, torn: { text: string; keep: number }): string {
  const side = `${file}.torn-${Date.now()}`;
  fs.writeFileSync(side, torn.text, { mode: 0o600 });
  fs.ftruncateSync(fd, torn.keep);
  log.warn(
    `audit log ${file} ended in a torn line (${Buffer.byteLength(torn.text)} bytes, left by a crash mid-write): moved to ${side}; the log carries on from the last whole line`,
  );
  return side;
}

/** The chain fields of the line a log goes on from, or undefined when it is not an audit line. */
function lastRecord(line: string): { seq: number; ts: string } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    return undefined;
  }
  const r = v.safeParse(AuditLine, json);
  return r.success ? { seq: r.output.seq, ts: r.output.ts } : undefined;
}
