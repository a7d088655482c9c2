// `tessera ca`: creates the deployment's CA, the coordinator's certificate, the operator token and a host enrolment token.
import fs from "node:fs";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { defineCommand } from "citty";
import { ConfigError } from "../errors.ts";
import { certFingerprint } from "../pki/index.ts";
import { parseDuration } from "../cli/duration.ts";
import { readRequired, writePrivate } from "../cli/home.ts";
import { addEnrollToken, hasPki, initPki } from "../cli/pki-init.ts";

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
      addEnrollToken(dir, certFingerprint(caPem), ttl, now.getTime());
      // A CA directory from before the code key moved out of the database gets one here too.
      if (!fs.existsSync(path.join(dir, "code-key")))
        writePrivate(path.join(dir, "code-key"), `${randomBytes(32).toString("hex")}\n`);
      console.log(
        `enrolment token written to ${path.join(dir, "enroll-token")} (valid ${args["token-ttl"]}, single use)`,
      );
      return;
    }
    const name = args["coordinator-name"];
    if (!name)
      throw new ConfigError("--coordinator-name is required: the DNS name or IP address hosts and guests will dial");
    if (hasPki(dir) && !args.force) {
      throw new ConfigError(
        `${dir} already holds a CA; refusing to overwrite it (use --force to start over, or --add-enroll-token for another host token)`,
      );
    }
    const { fingerprint: fp } = await initPki({ dir, names: [name], tokenTtlMs: ttl, now });
    console.log(`CA and coordinator certificate for ${name} written to ${dir}/`);
    console.log(`CA fingerprint: sha256:${fp}`);
    console.log(
      `operator token: ${dir}/operator-token   host enrolment token: ${dir}/enroll-token (single use, ${args["token-ttl"]})`,
    );
  },
});
