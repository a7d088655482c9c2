// `tessera ca`: creates the deployment's CA, the coordinator's certificate, the operator token and a host enrolment token.
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { defineCommand } from "citty";
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
import { parseDuration } from "../cli/duration.ts";
import { readRequired, writePrivate, writePublic } from "../cli/home.ts";

export default defineCommand({
  meta: {
    name: "ca",
    description: "Create the CA, the coordinator certificate, the operator token and a first host enrolment token",
  },
  args: {
    "coordinator-name": {
      type: "string",
      description: "DNS name or IP guests and hosts use to reach the coordinator (goes in its certificate)",
    },
    dir: { type: "string", default: "pki", description: "Directory to write into" },
    force: { type: "boolean", description: "Overwrite an existing CA (every enrolled host must enrol again)" },
    "add-enroll-token": {
      type: "boolean",
      description: "Only mint another host enrolment token for the CA already in --dir",
    },
    "token-ttl": { type: "string", default: "24h", description: "How long an enrolment token stays valid" },
  },
  async run({ args }) {
    const dir = args.dir;
    const ttl = parseDuration(args["token-ttl"], "token-ttl", Number.MAX_SAFE_INTEGER);
    const now = new Date();
    if (args["add-enroll-token"]) {
      const caPem = readRequired(
        path.join(dir, "ca.crt"),
        `no CA in ${dir}: run \`tessera ca --coordinator-name NAME --dir ${dir}\` first`,
      );
      const token = addEnrollToken(dir, certFingerprint(caPem), ttl, now.getTime());
      // A CA directory from before the code key moved out of the database gets one here too.
      if (!fs.existsSync(path.join(dir, "code-key")))
        writePrivate(path.join(dir, "code-key"), `${randomBytes(32).toString("hex")}\n`);
      console.log(
        `enrolment token written to ${path.join(dir, "enroll-token")} (valid ${args["token-ttl"]}, single use)`,
      );
      return void token;
    }
    const name = args["coordinator-name"];
    if (!name)
      throw new ConfigError("--coordinator-name is required: the DNS name or IP address hosts and guests will dial");
    if (fs.existsSync(path.join(dir, "ca.key")) && !args.force) {
      throw new ConfigError(
        `${dir} already holds a CA; refusing to overwrite it (use --force to start over, or --add-enroll-token for another host token)`,
      );
    }
    const ca = await createCA({ commonName: `tessera CA (${name})`, now });
    const keys = await generateKeyPair();
    const coordCert = await issueCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      publicKey: keys.publicKey,
      commonName: name,
      ...sanForName(name),
      usage: "server",
      now,
      validForSeconds: 825 * 86400,
    });
    const fp = certFingerprint(ca.certPem);
    writePublic(path.join(dir, "ca.crt"), ca.certPem);
    writePrivate(path.join(dir, "ca.key"), ca.keyPem);
    writePublic(path.join(dir, "coordinator.crt"), coordCert);
    writePrivate(path.join(dir, "coordinator.key"), await exportPrivateKeyPem(keys.privateKey));
    writePrivate(path.join(dir, "operator-token"), `${randomBytes(32).toString("hex")}\n`);
    writePrivate(path.join(dir, "code-key"), `${randomBytes(32).toString("hex")}\n`);
    writePublic(path.join(dir, "ca.sha256"), `sha256:${fp}\n`);
    writePrivate(path.join(dir, "enroll-tokens.json"), "[]\n");
    addEnrollToken(dir, fp, ttl, now.getTime());
    console.log(`CA and coordinator certificate for ${name} written to ${dir}/`);
    console.log(`CA fingerprint: sha256:${fp}`);
    console.log(
      `operator token: ${dir}/operator-token   host enrolment token: ${dir}/enroll-token (single use, ${args["token-ttl"]})`,
    );
  },
});

function addEnrollToken(dir: string, caHex: string, ttlMs: number, now: number): void {
  const file = path.join(dir, "enroll-tokens.json");
  const records: EnrollRecord[] = fs.existsSync(file)
    ? v.parse(EnrollRecords, JSON.parse(fs.readFileSync(file, "utf8")))
    : [];
  const { token, record } = makeEnrollToken(caHex, ttlMs, now);
  // Only the hash is kept for the coordinator; the token itself is for the operator to hand out.
  const live = records.filter((r) => r.expiresAt > now);
  writePrivate(file, `${JSON.stringify([...live, record], null, 2)}\n`);
  writePrivate(path.join(dir, "enroll-token"), `${token}\n`);
}
