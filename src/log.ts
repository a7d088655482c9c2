// One consola instance for the whole process; modules take a tagged child so output says who spoke.
// Output is either consola's human format or one JSON object a line (--log-format json) for log shippers.
import { createConsola, type ConsolaReporter, type LogObject } from "consola";
import { ConfigError } from "./errors.ts";

export const LOG_FORMATS = ["pretty", "json"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

let format: LogFormat = "pretty";

export const baseLogger = createConsola({
  level: process.env.TESSERA_LOG_LEVEL ? Number(process.env.TESSERA_LOG_LEVEL) : 3,
  // Status goes to stderr so stdout stays clean for codes and piped data.
  stdout: process.stderr,
  stderr: process.stderr,
});

// Children made by withTag copy the reporter list when they are created (at import time, before any
// flag is parsed), so the one reporter they all share picks the format per line instead. The human
// format is one quiet line: "[tag] warning: message", a timestamp in front only for the daemons
// (coordinator, agent), colour only on a terminal and never with NO_COLOR.
const dispatch: ConsolaReporter = {
  log(obj) {
    if (format === "json") process.stderr.write(jsonLine(obj));
    else write(humanLine(obj));
  },
};
baseLogger.setReporters([dispatch]);

let stamped = false;
let prompt: string | undefined;

/** Daemons (coordinator, agent) put the time in front of each line; interactive commands do not. */
export function stampLines(on: boolean): void {
  stamped = on;
}

/**
 * The question now on screen, waiting for an answer (undefined once answered). A line logged meanwhile
 * goes above it, and the question is shown again whole below, instead of being torn in two.
 */
export function setPrompt(text: string | undefined): void {
  prompt = text;
}

/** Whether a question (or a status line kept in place) is on screen now: a panel drawn below it would tear it. */
export function promptShown(): boolean {
  return prompt !== undefined;
}

function write(line: string): void {
  if (prompt === undefined) return void process.stderr.write(line);
  process.stderr.write(`${process.stderr.isTTY ? "\r\x1b[K" : "\n"}${line}${prompt}`);
}

const WORDS: Partial<Record<string, [string, string]>> = {
  warn: ["warning", "33"],
  error: ["error", "31"],
  fatal: ["error", "31"],
  debug: ["debug", "90"],
  trace: ["trace", "90"],
};

function humanLine(obj: Pick<LogObject, "type" | "tag" | "args" | "date">): string {
  const color = !!process.stderr.isTTY && !process.env.NO_COLOR && process.env.TERM !== "dumb";
  const w = WORDS[obj.type];
  const word = w ? (color ? `\x1b[${w[1]}m${w[0]}:\x1b[39m ` : `${w[0]}: `) : "";
  const msg = obj.args
    .map((a) => (a instanceof Error ? a.message : typeof a === "string" ? a : safeString(a)))
    .join(" ");
  return `${stamped ? `${obj.date.toISOString()} ` : ""}${obj.tag ? `[${obj.tag}] ` : ""}${word}${msg}\n`;
}

export function logger(tag: string) {
  return baseLogger.withTag(tag);
}

/** Validates a --log-format value (default from TESSERA_LOG_FORMAT) and switches every logger to it. */
export function setLogFormat(value: string | undefined): void {
  const v = value || process.env.TESSERA_LOG_FORMAT || "pretty";
  if (!(LOG_FORMATS as readonly string[]).includes(v))
    throw new ConfigError(`--log-format must be one of ${LOG_FORMATS.join(", ")}, not "${v}"`);
  format = v as LogFormat;
}

/** A fatal error in the current format, so a JSON log stays parseable to its last line. */
export function fatalLine(message: string): string {
  return format === "json"
    ? jsonLine({ type: "fatal", tag: "", args: [message], date: new Date() })
    : `error: ${message}\n`;
}

function jsonLine(obj: Pick<LogObject, "type" | "tag" | "args" | "date">): string {
  const errors: { name: string; code?: string; message: string }[] = [];
  // Only messages, names and codes of errors go out: never a whole object that might carry a key.
  const msg = obj.args
    .map((a) => {
      if (a instanceof Error) {
        const code = (a as { code?: unknown }).code;
        errors.push({ name: a.name, ...(typeof code === "string" ? { code } : {}), message: a.message });
        return a.message;
      }
      return typeof a === "string" ? a : safeString(a);
    })
    .join(" ");
  const line: Record<string, unknown> = { time: obj.date.toISOString(), level: obj.type, msg };
  if (obj.tag) line.tag = obj.tag;
  if (errors.length) line.errors = errors;
  return `${JSON.stringify(line)}\n`;
}

function safeString(a: unknown): string {
  try {
    return typeof a === "object" && a !== null ? JSON.stringify(a) : String(a);
  } catch {
    return String(a);
  }
}
