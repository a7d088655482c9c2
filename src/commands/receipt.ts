// `tessera receipt show|verify FILE`: a host's signed consent receipt, read or checked offline.
import fs from "node:fs";
import { defineCommand } from "citty";
import * as v from "valibot";
import { ConfigError, TesseraError } from "../errors.ts";
import { Receipt, receiptSigner } from "../wire/receipt.ts";
import { receiptChainProblem } from "../wire/receipt-chain.ts";
import { delegationSigner, describeDelegation } from "../pki/delegation.ts";
import { describeScope } from "../wire/scope.ts";
import { issueText } from "../validate.ts";

function read(file: string): Receipt {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (err) {
    throw new ConfigError(`${file}: cannot read a receipt: ${(err as Error).message}`);
  }
  const r = v.safeParse(Receipt, json);
  if (!r.success) throw new ConfigError(`${file} is not a tessera consent receipt${issueText(r.issues)}`);
  return r.output;
}

function show(r: Receipt): string {
  const b = r.body;
  return [
    `decision  ${b.decision}${b.scope ? ` (${describeScope(b.scope)})` : ""}`,
    `at        ${new Date(b.at).toISOString()}`,
    `guest     ${b.guestKey}`,
    ...(b.guestId ? [`identity  ${b.guestId}   (the guest's long-term key)`] : []),
    `target    ${b.target}`,
    `share     ${b.shareId}   request ${b.requestId}`,
    `signed by ${receiptSigner(r)}`,
    ...(r.delegation
      ? [`          ${describeDelegation(r.delegation)} (host key ${delegationSigner(r.delegation)})`]
      : []),
  ].join("\n");
}

const showCmd = defineCommand({
  meta: { name: "show", description: "Print what a consent receipt says and which key signed it" },
  args: {
    file: {
      type: "positional",
      required: true,
      description: "Receipt file (join keeps one a session in TESSERA_HOME/receipts)",
    },
  },
  run({ args }) {
    console.log(show(read(args.file)));
  },
});

const verifyCmd = defineCommand({
  meta: { name: "verify", description: "Check a consent receipt's signature, and that the host's key signed it" },
  args: {
    file: { type: "positional", required: true, description: "Receipt file" },
    "host-key": {
      type: "string",
      description:
        "The host's key fingerprint (SHA256:...), as the host reads it from `tessera share`; without it only the signature is checked",
    },
  },
  run({ args }) {
    const r = read(args.file);
    // A delegated receipt is the host's through its delegation: the host key is the delegation's signer.
    const host = r.delegation ? delegationSigner(r.delegation) : receiptSigner(r);
    const why = receiptChainProblem(r, {
      hostKey: args["host-key"] ?? host,
      guestKey: r.body.guestKey,
      target: r.body.target,
      decision: r.body.decision,
      scope: r.body.scope,
    });
    if (why) throw new TesseraError("bad_receipt", `${args.file}: the receipt does not verify: ${why}`);
    const by = r.delegation ? `; ${describeDelegation(r.delegation)}` : "";
    console.log(
      `ok: ${r.body.decision} signed by ${host}${args["host-key"] ? " (the host key you named)" : "; pass --host-key to check it is the host's"}${by}`,
    );
  },
});

export default defineCommand({
  meta: { name: "receipt", description: "Read or check a host's signed consent receipt offline" },
  subCommands: { show: showCmd, verify: verifyCmd },
});
