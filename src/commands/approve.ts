// `tessera approve`: answer a host's requests from this device, with the key the host delegated its yes to.
// `--pair HOST:PORT/CODE` pairs it first (`tessera approvers add` on the host).
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
import { attachProof, coversShare, Delegation, delegationSigner, describeDelegation } from "../pki/delegation.ts";
import { AttachedApprover } from "../cli/attached-approver.ts";
import { execForAsk } from "../cli/ask-exec.ts";
import { untilInterrupted } from "../cli/signals.ts";
import { CodeKeeper } from "../host/code-keeper.ts";
import type { Waiting } from "../host/consent.ts";
import { KnownGuests } from "../host/known-guests.ts";
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
  if (fs.existsSync(file)) {
    // A key others can read is not this device's alone: made private again, and said.
    if ((fs.statSync(file).mode & 0o077) !== 0) {
      fs.chmodSync(file, 0o600);
      log.warn(`${file} was readable by others; it is 0600 now`);
    }
    return fs.readFileSync(file, "utf8");
  }
  const pem = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  writePrivate(file, pem, { force: false });
  return pem;
}

/** Answers a paired host's requests from this device, as `share --share-id` does on the host. */
async function approveHere(args: { "share-id"?: string; target?: string; exec?: string }): Promise<void> {
  const paired = readPaired().hosts;
  const entry = args["share-id"] ? paired.findLast((h) => coversShare(h.delegation, args["share-id"]!)) : paired.at(-1);
  if (!entry)
    throw new ConfigError(
      paired.length === 0
        ? "this device approves for no host yet: on the host run `tessera approvers add NAME`, then here `tessera approve --pair HOST:PORT/CODE`"
        : `no host delegated share ${args["share-id"]} to this device (see TESSERA_HOME/approver.json)`,
    );
  const d = entry.delegation;
  const shareId =
    args["share-id"] ?? (d.body.shares !== "*" && d.body.shares.length === 1 ? d.body.shares[0] : undefined);
  if (!shareId) throw new ConfigError("this delegation covers several shares: say which with --share-id ID");
  const keyPem = fs.readFileSync(homeFile("approver.key"), "utf8");
  const via = await coordinatorFor(entry.coordinator, (line) => log.info(line));
  const dial = { ...via, version: VERSION };
  const stop = untilInterrupted();
  const known = KnownGuests.load(homeFile("known_guests.json"));
  const exec = args.exec;
  const attached = new AttachedApprover(
    dial,
    shareId,
    (why) => stop.trigger(why),
    // Codes minted here pin the host's key (the delegation's signer); receipts are signed here and carry the delegation.
    { keeper: new CodeKeeper(delegationSigner(d)), hostKeyPem: keyPem, delegation: d, known },
    { address: via.address, known, ...(exec ? { onAsk: (w: Waiting) => execForAsk(exec, w) } : {}) },
    args.target,
    () => {
      const at = Date.now();
      return { t: "attach-approver", delegation: d, shareId, at, proof: attachProof(keyPem, d, at) };
    },
  );
  await attached.start();
  log.info(`approving for share ${shareId} of host ${d.body.hostName || delegationSigner(d)} as ${d.body.name}`);
  attached.approver.start();
  await attached.approver.mint(args.target);
  const why = await stop.promise;
  attached.stop();
  attached.approver.stop();
  await attached.client.leave(shareId).catch(() => {});
  if (why.startsWith("stopped:")) {
    log.error(why);
    process.exitCode = 1;
  } else log.info(`stopped approving (${why})`);
}

export function readPaired(): Paired {
  const file = homeFile("approver.json");
  if (!fs.existsSync(file)) return { hosts: [] };
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new ConfigError(`${file} cannot be read as JSON (${(err as Error).message}); pair again to rewrite it`);
  }
  const r = v.safeParse(Paired, json);
  if (!r.success) throw new ConfigError(`${file} is not this device's approver record; pair again to rewrite it`);
  return r.output;
}

export default defineCommand({
  meta: {
    name: "approve",
    description:
      "Answer a host's requests from this device, with the key the host delegated to it (pair first: --pair HOST:PORT/CODE)",
  },
  args: {
    pair: {
      type: "string",
      description:
        "The line `tessera approvers add` printed on the host: HOST:PORT/XXXX-XXXX (leave the code out to type it unseen)",
    },
    name: { type: "string", description: "How this device introduces itself in the pairing (default: the OS user)" },
    "share-id": {
      type: "string",
      description: "The host's share to approve for (default: the one share the delegation names)",
    },
    target: { type: "string", description: "Mint the first code for this target of the share (default: its first)" },
    exec: {
      type: "string",
      description:
        'Run this on each new request, e.g. \'notify-send "$1 asks" "$2"\': fields come as "$1".."$4" (guest, reason, target, share) and $TESSERA_GUEST, $TESSERA_REASON, ..., escaped, never parsed by a shell',
    },
  },
  async run({ args }) {
    if (args.pair === undefined) return approveHere(args);
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
