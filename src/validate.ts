// JSON read from outside (frames, files, recordings) checked against its valibot schema, with one way
// of saying what was wrong and where.
import * as v from "valibot";

/** The first issue of a failed parse as " at a.b: message" (just ": message" at the root). */
export function issueText(issues: readonly v.BaseIssue<unknown>[]): string {
  const issue = issues[0]!;
  const path = issue.path?.map((p: { key: unknown }) => String(p.key)).join(".") ?? "";
  return `${path ? ` at ${path}` : ""}: ${issue.message}`;
}

/** JSON.parse, failing as `fail("<what> is not valid JSON")`. */
export function parseJsonText(text: string, what: string, fail: (message: string) => Error): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw fail(`${what} is not valid JSON`);
  }
}

/** A parsed value checked against `schema`, failing as `fail("invalid <what> at <path>: <issue>")`. */
export function checked<S extends v.GenericSchema>(
  schema: S,
  json: unknown,
  what: string,
  fail: (message: string) => Error,
): v.InferOutput<S> {
  const r = v.safeParse(schema, json);
  if (!r.success) throw fail(`invalid ${what}${issueText(r.issues)}`);
  return r.output;
}

/** JSON text checked against `schema`: parseJsonText, then checked. */
export function decodeJson<S extends v.GenericSchema>(
  schema: S,
  text: string,
  what: string,
  fail: (message: string) => Error,
): v.InferOutput<S> {
  return checked(schema, parseJsonText(text, what, fail), what, fail);
}
