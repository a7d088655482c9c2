// Issue 30, the agent's chain check: a coordinator (CA key included) that swaps a session's receipt for one an
// approver signed gets the session served only if the host's own key delegated that share to that approver's
// key, the delegation is in the host's book, not removed and not expired. Real Agent, real coordinator.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createPublicKey } from "node:crypto";
import { Guest } from "../../src/guest/guest.ts";
import { ApproverBook } from "../../src/host/approver-book.ts";
import { type Delegation, signDelegation } from "../../src/pki/delegation.ts";
import { exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.ts";
import { signReceipt } from "../../src/wire/receipt.ts";
import type { Peer } from "../../src/coordinator/state.ts";
import type { ClientFrame, FrameOf } from "../../src/wire/protocol.ts";
import { Live, within } from "../coordinator/live.ts";
import { startHost, type TestHost } from "./host.ts";
import { lying, servers, target } from "./lying.ts";

setDefaultTimeout(30_000);
let live: Live | undefined;
const hosts: TestHost[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const h of hosts.splice(0)) await h.agent.stop().catch(() => {});
  for (const s of servers.splice(0)) s.close();
  await live?.close();
  live = undefined;
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const DAY = 24 * 3600_000;
const pub = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "der" }).toString("base64");

function heard(l: Live): ClientFrame[] {
  const got: ClientFrame[] = [];
  const b = l.coordinator.broker;
  const handle = b.handle.bind(b);
  b.handle = (p: Peer, f: ClientFrame) => {
    got.push(f);
    return handle(p, f);
  };
  return got;
}

async function waitFor(got: ClientFrame[], match: (f: ClientFrame) => boolean): Promise<ClientFrame> {
  for (;;) {
    const f = got.find(match);
    if (f) return f;
    await Bun.sleep(5);
  }
}

test("the agent serves an approver's receipt only through the host's delegation: another host's, expired, another share's, unknown and removed ones are refused with nothing reaching the target", async () => {
  live = await Live.start();
  const t = await target();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-approvers-"));
  dirs.push(dir);
  const book = new ApproverBook(path.join(dir, "approvers.json"));
  const laptop = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  const coordinatorsOwn = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
  // Which delegation the lying coordinator puts on the next session's receipt (re-signed by the laptop's key).
  let next: { key: string; d: Delegation } | undefined;
  lying(live, (f) => {
    if (f.t !== "session" || !f.receipt || !next) return f;
    const { v: _v, hostPub: _h, via: _via, ...fields } = f.receipt.body;
    try {
      return { ...f, receipt: signReceipt(next.key, fields, next.d) };
    } catch (e) {
      console.error("tamper", e);
      return f;
    }
  });
  const got = heard(live);
  const h = await startHost(live, "db", t.port, { approvers: book });
  hosts.push(h);
  const shareId = "db";
  const now = Date.now();
  const delegate = (o: { key?: string; shares?: "*" | string[]; issuedAt?: number; expiresAt?: number } = {}) =>
    signDelegation(o.key ?? h.keyPem, {
      name: "laptop",
      hostName: "build-01",
      approverPub: pub(laptop),
      shares: o.shares ?? [shareId],
      issuedAt: o.issuedAt ?? now - DAY,
      expiresAt: o.expiresAt ?? now + 90 * DAY,
    });
  const good = delegate();
  book.add(good);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const guests = [g];

  /** One request approved at the host, its receipt swapped; returns the reason the agent's `end` gives. */
  async function attempt(d: Delegation): Promise<string> {
    next = { key: laptop, d };
    const code = await within(h.mint(), "a fresh code");
    const g2 = await Guest.connect({ address: live!.address, caPem: live!.ca.certPem, version: "test" });
    guests.push(g2);
    // The guest may hear its session end before its yes (the agent refuses at once): the agent's `end` is the answer.
    const from = got.length;
    void g2.request({ code, name: "ana", reason: "delegated" }).catch(() => {});
    const ended = await within(
      waitFor(got, (f) => got.indexOf(f) >= from && f.t === "end" && !!f.reason?.startsWith("refused by the host")),
      "the agent's refusal",
    );
    return (ended as FrameOf<ClientFrame, "end">).reason ?? "";
  }

  // The good chain: served, and bytes flow to the target.
  next = { key: laptop, d: good };
  const ok = await within(g.request({ code: h.code, name: "ana", reason: "delegated" }), "the host's yes");
  const local = await g.listen("127.0.0.1", 0);
  await within(roundTrip(local.port), "bytes through the delegated session");
  expect(t.accepted).toBe(1);
  expect(ok.sessionId).toBeTruthy();
  await g.close();

  const cases: [string, Delegation, RegExp][] = [
    [
      "another host's key",
      delegate({ key: coordinatorsOwn }),
      /delegation is signed by SHA256:.*not by this host's key/,
    ],
    ["expired", delegate({ issuedAt: now - 10 * DAY, expiresAt: now - DAY }), /delegation is valid .* not at/],
    ["another share", delegate({ shares: ["prod"] }), /may answer for prod, not for share db/],
    ["not in the book", delegate(), /is not in this host's approvers book/],
  ];
  for (const [what, d, why] of cases) {
    const reason = await attempt(d);
    expect(reason, what).toMatch(why);
    expect(reason, what).toStartWith("refused by the host: the approval's signed receipt does not match it");
  }
  // Removed: the same delegation that was served above is refused from now on.
  const removed = book.remove("laptop", Date.now());
  expect(removed.map((r) => r.id)).toEqual([good.body.id]);
  expect(await attempt(good)).toMatch(/approver laptop: was removed by the host at .* \(delegation /);
  expect(h.log.join("\n")).toMatch(/approver laptop: was removed by the host/);
  expect(t.accepted).toBe(1);
  for (const x of guests) await x.close();
});

async function roundTrip(port: number): Promise<void> {
  const net = await import("node:net");
  await new Promise<void>((resolve, reject) => {
    const s = net.connect({ port, host: "127.0.0.1" }, () => s.write("ping"));
    s.on("data", () => {
      s.end();
      resolve();
    });
    s.on("error", reject);
  });
}
