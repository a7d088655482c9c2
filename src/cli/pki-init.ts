// A deployment's PKI directory from nothing: CA, coordinator certificate, operator token, code key and a first
// host enrolment token. Shared by `tessera ca` (a CA kept offline) and `tessera coordinator --init` (one command).
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import * as v from "valibot";
import { ConfigError } from "../errors.ts";
import {
  certFingerprint,
  createCA,
  exportPrivateKeyPem,
  generateKeyPair,
  issueCert,
  sanForName,
} from "../pki/index.ts";
import { EnrollRecords, makeEnrollToken, type EnrollRecord } from "../coordinator/enroll.ts";
import { writePrivate, writePublic } from "./home.ts";

/** Whether dir already holds a CA (its key or its certificate): such a directory is never written over. */
export function hasPki(dir: string): boolean {
  return fs.existsSync(path.join(dir, "ca.key")) || fs.existsSync(path.join(dir, "ca.crt"));
}

/**
 * Writes a new CA and a coordinator certificate naming every one of `names` (DNS names or IPs), plus the
 * operator token, the code key and one enrolment token; returns the CA's fingerprint and that token.
 */
export async function initPki(o: {
  dir: string;
  names: string[];
  tokenTtlMs: number;
  now: Date;
}): Promise<{ fingerprint: string; enrollToken: string }> {
  const names = [...new Set(o.names.map((n) => n.trim()).filter(Boolean))];
  if (names.length === 0) throw new ConfigError("the coordinator's certificate needs at least one name (--name)");
  const ca = await createCA({ commonName: `tessera CA (${names[0]})`, now: o.now });
  const keys = await generateKeyPair();
  const sans = names.map(sanForName);
  const coordCert = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    publicKey: keys.publicKey,
    commonName: names[0]!,
    dnsNames: sans.flatMap((s) => s.dnsNames),
    ipAddresses: sans.flatMap((s) => s.ipAddresses),
    usage: "server",
    now: o.now,
    validForSeconds: 825 * 86400,
  });
  const fp = certFingerprint(ca.certPem);
  const dir = o.dir;
  writePublic(path.join(dir, "ca.crt"), ca.certPem);
  writePrivate(path.join(dir, "ca.key"), ca.keyPem);
  writePublic(path.join(dir, "coordinator.crt"), coordCert);
  writePrivate(path.join(dir, "coordinator.key"), await exportPrivateKeyPem(keys.privateKey));
  writePrivate(path.join(dir, "operator-token"), `${randomBytes(32).toString("hex")}\n`);
  writePrivate(path.join(dir, "code-key"), `${randomBytes(32).toString("hex")}\n`);
  writePublic(path.join(dir, "ca.sha256"), `sha256:${fp}\n`);
  writePrivate(path.join(dir, "enroll-tokens.json"), "[]\n");
  const enrollToken = addEnrollToken(dir, fp, o.tokenTtlMs, o.now.getTime());
  return { fingerprint: fp, enrollToken };
}

/** Mints one more single-use enrolment token; the coordinator's file keeps only its hash. */
export function addEnrollToken(dir: string, caHex: string, ttlMs: number, now: number): string {
  const file = path.join(dir, "enroll-tokens.json");
  const records: EnrollRecord[] = fs.existsSync(file)
    ? v.parse(EnrollRecords, JSON.parse(fs.readFileSync(file, "utf8")))
    : [];
  const { token, record } = makeEnrollToken(caHex, ttlMs, now);
  const live = records.filter((r) => r.expiresAt > now);
  writePrivate(file, `${JSON.stringify([...live, record], null, 2)}\n`);
  writePrivate(path.join(dir, "enroll-token"), `${token}\n`);
  return token;
}
