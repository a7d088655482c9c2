// `tessera approvers list|remove NAME`: the devices this host delegated its yes to (host/approver-book.ts).
// A removal is written to the book at once; the agent reads the book before each session, so it refuses that
// approver's receipts from then on, whatever the coordinator keeps routing.
import { defineCommand } from "citty";
import { coordinatorAddress, homeFile, readCa, readHostIdentity } from "../cli/home.ts";
import { parseDuration } from "../cli/duration.ts";
import { ConfigError } from "../errors.ts";
import { pairApprover } from "../host/approver-pairing.ts";
import { APPROVER_NAME, MAX_DELEGATED_SHARES } from "../pki/delegation.ts";
import { certInfo } from "../pki/index.ts";
import { VERSION } from "../version.ts";
import { ApproverBook } from "../host/approver-book.ts";
import { logger } from "../log.ts";
import { approverKey } from "../pki/delegation.ts";

const log = logger("approvers");
const book = () => new ApproverBook(homeFile("approvers.json"));
const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);

const listCmd = defineCommand({
  meta: { name: "list", description: "List this host's approvers: name, shares, expiry, key; and the removed ones" },
  run() {
    const b = book();
    const now = Date.now();
    const live = b.list();
    if (live.length === 0) console.log("no approvers");
    for (const d of live) {
      const shares = d.body.shares === "*" ? "all shares" : d.body.shares.join(",");
      const state = d.body.expiresAt <= now ? `expired ${day(d.body.expiresAt)}` : `until ${day(d.body.expiresAt)}`;
      console.log(`${d.body.name.padEnd(16)} ${shares.padEnd(24)} ${state.padEnd(18)} ${approverKey(d)}`);
    }
    for (const r of b.removals()) console.log(`${r.name.padEnd(16)} removed ${new Date(r.at).toISOString()}  ${r.key}`);
  },
});

const addCmd = defineCommand({
  meta: {
    name: "add",
    description: "Pair another device as an approver: prints a single-use code for `tessera approve --pair` there",
  },
  args: {
    name: {
      type: "positional",
      required: true,
      description: "What to call the device (laptop, phone): 1-32 letters, digits, . _ -",
    },
    shares: {
      type: "string",
      description: "Share ids it may answer for, comma-separated (default: every share of this host)",
    },
    expires: { type: "string", default: "90d", description: "How long the delegation holds (90d, 12h, ...)" },
  },
  async run({ args }) {
    if (!APPROVER_NAME.test(args.name)) throw new ConfigError("NAME must be 1-32 letters, digits, '.', '_' or '-'");
    const shares = args.shares ? args.shares.split(",").filter(Boolean) : "*";
    if (
      shares !== "*" &&
      (shares.length > MAX_DELEGATED_SHARES || shares.some((s) => !/^[A-Za-z0-9_.-]{1,64}$/.test(s)))
    )
      throw new ConfigError(
        `--shares takes at most ${MAX_DELEGATED_SHARES} share ids of 1-64 letters, digits, '.', '_' or '-'`,
      );
    const lifetimeMs = parseDuration(args.expires, "expires", Number.MAX_SAFE_INTEGER);
    const b = book();
    if (b.list().some((d) => d.body.name === args.name))
      throw new ConfigError(`an approver named ${args.name} exists; remove it first or pick another name`);
    const id = readHostIdentity();
    const address = coordinatorAddress();
    const d = await pairApprover(
      {
        address,
        caPem: readCa(),
        ...id,
        version: VERSION,
        name: args.name,
        shares,
        lifetimeMs,
        hostName: certInfo(id.certPem).commonName,
        book: b,
      },
      {
        code: (code, expiresAt) => {
          const mins = Math.max(1, Math.round((expiresAt - Date.now()) / 60_000));
          console.log(`on ${args.name}, run:  tessera approve --pair ${address}/${code}`);
          console.log(`  (single use, valid ${mins} minutes; waiting for the device...)`);
        },
        // The pairing's end says it (a burnt code is its error); nothing else is worth a second line.
        notice: () => {},
      },
    );
    log.info(
      `paired approver ${d.body.name} (key ${approverKey(d)}) for ${shares === "*" ? "all shares" : shares.join(",")} until ${day(d.body.expiresAt)}`,
    );
  },
});

const removeCmd = defineCommand({
  meta: {
    name: "remove",
    description: "Take an approver's delegation back: the agent refuses its receipts from now on",
  },
  args: {
    name: { type: "positional", required: true, description: "The approver's name (see `tessera approvers list`)" },
  },
  run({ args }) {
    for (const r of book().remove(args.name, Date.now()))
      log.info(
        `removed approver ${r.name} (key ${r.key}, delegation ${r.id}); the agent refuses its receipts from now on`,
      );
  },
});

export default defineCommand({
  meta: {
    name: "approvers",
    description: "Devices this host delegated its yes to: pair one, list them, or remove one",
  },
  subCommands: { add: addCmd, list: listCmd, remove: removeCmd },
});
