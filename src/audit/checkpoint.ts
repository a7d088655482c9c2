// Signed checkpoints and heads: the coordinator's key signs a point of the chain (seq, hash of everything
// before, time, the previous checkpoint, and how often it promises to sign), so a verifier holding the
// coordinator's certificate can tell the log up to that line is what the coordinator wrote, and what
// an honest log must look like after it.
import { createPublicKey, sign, verify, X509Certificate, type KeyObject } from "node:crypto";
import * as v from "valibot";

export type CheckpointReason = "start" | "open" | "count" | "interval" | "rotate" | "stop";

/** What a checkpoint line signs, besides its signature; `prevCheckpoint` is the hash of the previous checkpoint line. */
export interface CheckpointBody {
  seq: number;
  ts: string;
  prev: string;
  prevCheckpoint: string;
  reason: CheckpointReason;
  /** A checkpoint follows at most this many events after this one (0: no count). */
  every: number;
  /** A checkpoint follows at most this long after any event written after this one (0: no interval). */
  intervalMs: number;
}

const HEX64 = v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/));
const COUNT = v.pipe(v.number(), v.integer(), v.minValue(0));

/** The signed fields of a checkpoint line (written since checkpoints carry `prevCheckpoint`). */
export const CheckpointFields = v.looseObject({
  prevCheckpoint: HEX64,
  reason: v.picklist(["start", "open", "count", "interval", "rotate", "stop"]),
  every: COUNT,
  intervalMs: COUNT,
  sig: v.string(),
});

/** The coordinator's signed statement of the last line of its log that is on disk, served at /audit/head. */
export const AuditHead = v.object({
  seq: COUNT,
  hash: HEX64,
  ts: v.string(),
  /** When the head was signed: a replayed old head shows its age. */
  at: v.pipe(v.string(), v.isoTimestamp()),
  sig: v.string(),
});
export type AuditHead = v.InferOutput<typeof AuditHead>;

function bodyMessage(c: CheckpointBody): Buffer {
  return Buffer.from(
    ["tessera-audit-checkpoint-v2", c.seq, c.ts, c.prev, c.prevCheckpoint, c.reason, c.every, c.intervalMs].join("\n"),
  );
}

/** Checkpoints written before they were chained signed only (seq, prev). */
function legacyMessage(seq: number, prev: string): Buffer {
  return Buffer.from(`tessera-audit-checkpoint\n${seq}\n${prev}`);
}

function headMessage(h: Omit<AuditHead, "sig">): Buffer {
  return Buffer.from(["tessera-audit-head", h.seq, h.hash, h.ts, h.at].join("\n"));
}

export function signCheckpoint(keyPem: string, c: CheckpointBody): string {
  return sign("sha256", bodyMessage(c), keyPem).toString("base64");
}

export function signHead(keyPem: string, h: Omit<AuditHead, "sig">): AuditHead {
  return { ...h, sig: sign("sha256", headMessage(h), keyPem).toString("base64") };
}

/** `certPem` is the coordinator's certificate (or its public key in PEM). */
export function publicKeyOf(certPem: string): KeyObject {
  return certPem.includes("BEGIN CERTIFICATE") ? new X509Certificate(certPem).publicKey : createPublicKey(certPem);
}

export function verifyCheckpoint(key: KeyObject, c: CheckpointBody, sig: string): boolean {
  return check(key, bodyMessage(c), sig);
}

export function verifyLegacyCheckpoint(key: KeyObject, seq: number, prev: string, sig: string): boolean {
  return check(key, legacyMessage(seq, prev), sig);
}

export function verifyHead(key: KeyObject, h: AuditHead): boolean {
  return check(key, headMessage(h), h.sig);
}

function check(key: KeyObject, message: Buffer, sig: string): boolean {
  try {
    return verify("sha256", message, key, Buffer.from(sig, "base64"));
  } catch {
    return false;
  }
}
