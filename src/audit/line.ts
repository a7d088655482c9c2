// One audit line as every reader checks it (the chain fields; the event's own fields pass through), and
// the kinds of breakage a verifier can name.
import * as v from "valibot";

export const AuditLine = v.looseObject({
  seq: v.pipe(v.number(), v.integer(), v.minValue(1)),
  ts: v.pipe(v.string(), v.isoTimestamp()),
  event: v.pipe(v.string(), v.minLength(1)),
  prev: v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/)),
});
export type AuditLine = v.InferOutput<typeof AuditLine>;

export type Breakage =
  | "torn"
  | "malformed"
  | "edited"
  | "removed"
  | "reordered"
  | "bad-signature"
  | "unsigned"
  | "missing-checkpoint"
  | "cut"
  | "bad-receipt";
