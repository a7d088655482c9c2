// `tessera approve --pair HOST:PORT/CODE`: pair this device as an approver of a host (`tessera approvers add` there).
// The approver key is made here (0600) and only its public half leaves; the host's signed delegation is kept
// in TESSERA_HOME/approver.json, beside the host key the code confirmed.
import fs from "node:fs";
import os from "node:os";
import { defineCommand } from "citty";
import * as v from "valibot";
import { readCode } from "../cli/code-input.ts";
import { homeFile, writePrivate } from "../cli/home.ts";
import { coordinatorFor, splitInvite } from "../cli/invite.ts";
import { ConfigError } from "../errors.ts";
import { pairAsApprover } from "../guest/approver-pairing.ts";
import { logger } from "../log.ts";
import { Delegation, delegationSigner, describeDelegation } from "../pki/delegation.ts";
import { exportPrivateKeyPem, generateKeyPair, spkiFingerprint } from "../pki/index.ts";
import { identityPublic } from "../pki/identity.ts";
import { VERSION } from "../version.ts";

const log = logger("approve");
/** Hosts one device approves for (each host's newest delegation). */
const MAX_HOSTS = 64;
const Paired = v.strictObject({
  hosts: v.pipe(
    v.array(v.strictObject({ coordinator: v.pipe(v.string(), v.maxLength(300)), delegation: Delegation })),
    v.maxLength(MAX_HOSTS),
  ),
});
type Paired = v.InferOutput<typeof Paired>;

/** This device's approver key: made once, 0600 from its first byte. */
async function approverKeyPem(): Promise<string> {
  const file = homeFile("approver.key");
  if (fs.existsSync(file)) return fs.readFileSync(file, "utf8");
  const pem = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  writePrivate(file, pem, { force: false });
  return pem;
}

export function readPaired(): Paired {
  const file = homeFile("approver.json");
  if (!fs.existsSync(file)) return { hosts: [] };
  const r = v.safeParse(Paired, JSON.parse(fs.readFileSync(file, "utf8")));
  if (!r.success) throw new ConfigError(`${file} is not this device's approver record; pair again to rewrite it`);
  return r.output;
}

export default defineCommand({
  meta: {
    name: "approve",
    description:
      "Pair this device as a host's approver (--pair HOST:PORT/CODE, from `tessera approvers add` on the host)",
  },
  args: {
    pair: {
      type: "string",
      description:
        "The line `tessera approvers add` printed on the host: HOST:PORT/XXXX-XXXX (leave the code out to type it unseen)",
    },
    name: { type: "string", description: "How this device introduces itself in the pairing (default: the OS user)" },
  },
  async run({ args }) {
    if (args.pair === undefined)
      throw new ConfigError(
        "answering a host's requests from this device is not built yet; pair it with `tessera approve --pair HOST:PORT/CODE`",
      );
    const given =
      args.pair.includes("/") && !args.pair.endsWith("/")
        ? args.pair
        : `${args.pair.replace(/\/$/, "")}/${await readCode(false)}`;
    const invite = splitInvite(given);
    if (!invite.address) throw new ConfigError("--pair takes HOST:PORT/CODE, as `tessera approvers add` printed it");
    const via = await coordinatorFor(invite.address, (line) => log.info(line));
    const keyPem = await approverKeyPem();
    const { delegation: d } = await pairAsApprover({
      ...via,
      version: VERSION,
      code: invite.code,
      approverKeyPem: keyPem,
      name: args.name || os.userInfo().username || "approver",
    });
    const paired = readPaired();
    const hostKey = delegationSigner(d);
    const hosts = paired.hosts.filter((h) => delegationSigner(h.delegation) !== hostKey);
    writePrivate(
      homeFile("approver.json"),
      `${JSON.stringify({ hosts: [...hosts, { coordinator: via.address, delegation: d }].slice(-MAX_HOSTS) }, null, 2)}\n`,
    );
    log.info(
      `paired: ${describeDelegation(d).replace(/^approved by/, "this device is approver")} for ${d.body.shares === "*" ? "all shares" : d.body.shares.join(",")}; host key ${hostKey}, this device's key ${spkiFingerprint(identityPublic(keyPem))}`,
    );
  },
});
