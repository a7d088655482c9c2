// The asciicast v2 format (asciinema's): a JSON header line, then one [seconds, code, data] event a line.
// Written by the host's recorder, read back (and validated line by line) by `tessera replay`.
import * as v from "valibot";
import { checked, parseJsonText } from "../validate.ts";

export const ASCIICAST_VERSION = 2;
/** A replayed line longer than this is refused rather than buffered: recordings write chunks of 16 KiB. */
export const MAX_LINE_BYTES = 1024 * 1024;

const dim = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(10_000));

export const Header = v.object({
  version: v.literal(ASCIICAST_VERSION),
  width: dim,
  height: dim,
  timestamp: v.optional(v.pipe(v.number(), v.integer(), v.minValue(0))),
  title: v.optional(v.string()),
  env: v.optional(v.record(v.string(), v.string())),
});
export type Header = v.InferOutput<typeof Header>;

/** "o" output, "i" input, "r" resize ("COLSxROWS"), "m" marker; other codes are kept but not played. */
export const Event = v.pipe(
  v.tuple([
    v.pipe(v.number(), v.minValue(0)),
    v.pipe(v.string(), v.regex(/^[a-z]$/, 'must be an event code like "o"')),
    v.string(),
  ]),
  v.check(
    ([, code, data]) => code !== "r" || /^\d{1,5}x\d{1,5}$/.test(data),
    'a resize ("r") event\'s data must be COLSxROWS',
  ),
);
export type Event = v.InferOutput<typeof Event>;

export class CastError extends Error {
  override name = "CastError";
}

/** The first line: a file whose first line is not an asciicast header is not a recording at all, and is told so. */
export function parseHeader(line: string): Header {
  try {
    return parseLine(Header, line, 1, "header");
  } catch (err) {
    throw new CastError(
      `not an asciicast recording (${(err as Error).message}); replay plays the .cast files share --shell records`,
    );
  }
}

export function parseEvent(line: string, lineNo: number, prevTime: number): Event {
  const e = parseLine(Event, line, lineNo, "event");
  if (e[0] < prevTime) throw new CastError(`line ${lineNo}: event time ${e[0]} goes backwards (previous ${prevTime})`);
  return e;
}

function parseLine<S extends v.GenericSchema>(schema: S, line: string, lineNo: number, what: string): v.InferOutput<S> {
  const fail = (m: string) => new CastError(`line ${lineNo}: ${m}`);
  return checked(schema, parseJsonText(line, `the ${what}`, fail), what, fail);
}
