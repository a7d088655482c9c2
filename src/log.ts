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
// flag is parsed), so the one reporter they all share picks the format per line instead.
const pretty = [...baseLogger.options.reporters];
const dispatch: ConsolaReporter = {
  log(obj, ctx) {
    if (format === "json") process.stderr.write(jsonLine(obj));
    else for (const r of pretty) r.log(obj, ctx);
  },
};
baseLogger.setReporters([dispatch]);

export function logger(tag: string) {
  return baseLogger.withTag(tag);
}

/** Validates a --log-format value (default from TESSERA_LOG_FORMAT) and switches every logger to it. */
export function setLogFormat(value: string | undefined): void {
  const v = value || process.env.TESSERA_LOG_FORMAT || "pretty";
  if (!(LOG_FORMATS as readonly string[]).includes(v)) throw new ConfigError(`--log-format must be one of ${LOG_FORMATS.join(", ")}, not "${v}"`);
  format = v as LogFormat;
}

/** A fatal error in the current format, so a JSON log stays parseable to its last line. */
export function fatalLine(message: string): string {
  return format === "json" ? jsonLine({ type: "fatal", tag: "", args: [message], date: new Date() }) : `error: ${message}\n`;
}

function jsonLine(obj: Pick<LogObject, "type" | "tag" | "args" | "date">): string {
  const errors: { name: string; code?: string; message: string }[] = [];
  // Only messages, names and codes of errors go out: never a whole object that might carry a key.
  const msg = obj.args.map((a) => {
    if (a instanceof Error) {
      const code = (a as { code?: unknown }).code;
      errors.push({ name: a.name, ...(typeof code === "string" ? { code } : {}), message: a.message });
      return a.message;
    }
    return typeof a === "string" ? a : safeString(a);
  }).join(" ");
  const line: Record<string, unknown> = { time: obj.date.toISOString(), level: obj.type, msg };
  if (obj.tag) line.tag = obj.tag;
  if (errors.length) line.errors = errors;
  return JSON.stringify(line) + "\n";
}

function safeString(a: unknown): string {
  try {
    return typeof a === "object" && a !== null ? JSON.stringify(a) : String(a);
  } catch {
    return String(a);
  }
}
