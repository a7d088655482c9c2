// `tessera approvers list|remove NAME`: the devices this host delegated its yes to (host/approver-book.ts).
// A removal is written to the book at once; the agent reads the book before each session, so it refuses that
// approver's receipts from then on, whatever the coordinator keeps routing.
import { defineCommand } from "citty";
import { homeFile } from "../cli/home.ts";
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
  meta: { name: "approvers", description: "Devices this host delegated its yes to: list them, or remove one" },
  subCommands: { list: listCmd, remove: removeCmd },
});
