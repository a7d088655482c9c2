// Shared set-up for the property tests: one fixed seed (FC_SEED overrides it, to replay a failure or to
// explore), bounded runs so the whole property suite stays a few seconds, and fast-check's own report on
// failure (seed, path and the shrunk input), which fc.assert puts in the thrown error's message.
import fc from "fast-check";
import * as v from "valibot";
import { framesBefore } from "../../src/wire/length-prefix.ts";

export const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 0x7e55e7a;
/** Runs per property unless a test says otherwise (FC_RUNS overrides it, to search harder). */
export const RUNS = process.env.FC_RUNS !== undefined ? Number(process.env.FC_RUNS) : 200;

fc.configureGlobal({ seed: SEED, numRuns: RUNS });

export { fc };

/** What a parser did with some input: its value, or the error it threw, as comparable data. */
export type Outcome<T> = { ok: T } | { err: { name: string; code?: string; message: string } };

export function outcome<T>(f: () => T): Outcome<T> {
  try {
    return { ok: f() };
  } catch (e) {
    const err = e as { name?: string; code?: string; message?: string };
    return { err: { name: String(err?.name), code: err?.code, message: String(err?.message) } };
  }
}

/** Runs f; an exception must be an instance of `typed` (never a TypeError, RangeError or a thrown string). */
export function typedOrValue<T>(f: () => T, typed: abstract new (...a: never[]) => Error): T | Error {
  try {
    return f();
  } catch (e) {
    if (e instanceof typed) return e;
    throw new Error(`threw ${describe(e)}, not a ${typed.name}`);
  }
}

function describe(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : `a ${typeof e} (${String(e)})`;
}

/**
 * Feeds chunks in order: the frames that came out (with those a failing push still completed: see
 * FramingError) and how it ended, as plain data (the error's code and message, if it threw).
 */
export function feed<T>(push: (c: Uint8Array) => T[], chunks: Uint8Array[]): { frames: T[]; end: unknown } {
  const frames: T[] = [];
  for (const c of chunks) {
    try {
      frames.push(...push(c));
    } catch (err) {
      frames.push(...framesBefore<T>(err));
      const e = err as { code?: string; message?: string };
      return { frames, end: { code: e.code, message: e.message } };
    }
  }
  return { frames, end: "open" };
}

/** Cuts bytes at the given points (any order, any repeats): the chunks a socket might deliver. */
export function splitAt(bytes: Uint8Array, points: number[]): Uint8Array[] {
  const cuts = [...new Set(points.map((p) => p % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const c of [...cuts, bytes.length]) {
    out.push(bytes.subarray(from, c));
    from = c;
  }
  return out;
}

/** Byte streams and the cut points to deliver them by. */
export const cuts = fc.array(fc.nat(), { maxLength: 12 });

/**
 * Values a valibot schema accepts, built from the schema itself (the subset protocol.ts, shell/frames.ts
 * and receipt.ts use), every one checked against the schema so a gap here shows as a failed filter,
 * never as a false value. Optional keys are absent or present, never present-and-undefined: on the
 * wire an absent key is what a sender sends.
 */
export function arbitraryOf(schema: v.GenericSchema): fc.Arbitrary<unknown> {
  return raw(schema).filter((x) => v.is(schema, x));
}

type AnySchema = {
  type: string;
  pipe?: AnySchema[];
  entries?: Record<string, AnySchema>;
  options?: unknown[];
  wrapped?: AnySchema;
  item?: AnySchema;
  literal?: unknown;
  requirement?: unknown;
  kind?: string;
};

function raw(schema: v.GenericSchema): fc.Arbitrary<unknown> {
  const s = schema as unknown as AnySchema;
  const root = (s.pipe?.[0] ?? s) as AnySchema;
  const req = (t: string) => s.pipe?.find((a) => a.type === t)?.requirement;
  switch (root.type) {
    case "string": {
      const regex = req("regex") as RegExp | undefined;
      const min = (req("min_length") as number | undefined) ?? 0;
      const max = (req("max_length") as number | undefined) ?? 200;
      const start = (req("starts_with") as string | undefined) ?? "";
      // fast-check cannot build strings from Unicode property classes (\p{...}): draw any text and keep what
      // the rule accepts (the name rule refuses only a few categories, so most draws pass).
      const base = regex
        ? regex.source.includes("\\p{")
          ? fc
              .string({ unit: "binary", minLength: Math.max(1, min), maxLength: Math.min(max, 300) })
              .filter((x) => regex.test(x))
          : fc.stringMatching(regex)
        : fc.string({ unit: "binary", minLength: Math.max(0, min - start.length), maxLength: Math.min(max, 300) });
      return base.map((x) => (start ? start + x : x)).filter((x) => x.length >= min && x.length <= max);
    }
    case "number": {
      const integer = s.pipe?.some((a) => a.type === "integer");
      const lo = (req("min_value") as number | undefined) ?? (integer ? Number.MIN_SAFE_INTEGER : -1e12);
      const hi = (req("max_value") as number | undefined) ?? (integer ? Number.MAX_SAFE_INTEGER : 1e12);
      if (integer)
        return fc.oneof(fc.constantFrom(lo, hi), fc.bigInt({ min: BigInt(lo), max: BigInt(hi) }).map(Number));
      // JSON carries no -0, NaN or Infinity, and nothing here sends them.
      return fc.double({ min: lo, max: hi, noNaN: true }).map((x) => (Object.is(x, -0) ? 0 : x));
    }
    case "boolean":
      return fc.boolean();
    case "literal":
      return fc.constant(root.literal);
    case "picklist":
      return fc.constantFrom(...(root.options as unknown[]));
    case "nullable":
      return fc.option(raw(root.wrapped as unknown as v.GenericSchema), { nil: null });
    case "array": {
      const min = (req("min_length") as number | undefined) ?? 0;
      const max = Math.min((req("max_length") as number | undefined) ?? 4, min + 4);
      return fc.array(raw(root.item as unknown as v.GenericSchema), { minLength: min, maxLength: max });
    }
    case "object":
    case "strict_object": {
      const model: Record<string, fc.Arbitrary<unknown>> = {};
      const required: string[] = [];
      for (const [k, e] of Object.entries(root.entries ?? {})) {
        if (e.type === "optional") model[k] = raw(e.wrapped as unknown as v.GenericSchema);
        else {
          model[k] = raw(e as unknown as v.GenericSchema);
          required.push(k);
        }
      }
      return fc.record(model, { requiredKeys: required });
    }
    case "variant":
    case "union":
      return fc.oneof(...(root.options as v.GenericSchema[]).map((o) => raw(o)));
    default:
      throw new Error(`arbitraryOf: no arbitrary for a valibot "${root.type}" schema`);
  }
}

/** The options of a valibot variant, each with its tag, so every frame type gets its own runs. */
export function variantOptions(schema: v.GenericSchema): { tag: string; schema: v.GenericSchema }[] {
  const s = schema as unknown as { key: string; options: { entries: Record<string, { literal: string }> }[] };
  return s.options.map((o) => ({ tag: o.entries[s.key]!.literal, schema: o as unknown as v.GenericSchema }));
}
