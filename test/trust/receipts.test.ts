// Issue 15's signed receipts, and the gap they close in issue 14: a standalone agent (no approver in its
// process, so no vouch) serves only sessions whose approval its own host key signed. A lying coordinator
// that swaps the guest's key, or approves on its own, gets nothing served.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { Agent } from "../../src/host/agent.ts";
import { TargetPolicy } from "../../src/host/policy.ts";
import { Guest } from "../../src/guest/guest.ts";
import { signReceipt } from "../../src/wire/receipt.ts";
import type { ControlClient } from "../../src/wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../../src/wire/protocol.ts";
import { Live, within } from "../coordinator/live.ts";
import { lying, servers, target } from "./lying.ts";

setDefaultTimeout(30_000);
let live: Live | undefined;
const agents: Agent[] = [];
const clients: ControlClient[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop().catch(() => {});
  for (const c of clients.splice(0)) c.close();
  for (const s of servers.splice(0)) s.close();
  await live?.close();
  live = undefined;
});

/** `tessera agent` (receipts on, no vouch) plus a requests-by-id approver that signs its answers, as `share --share-id` does. */
async function standalone(l: Live, port: number, log: string[], sign = true) {
  const id = await l.enrolledHost("db");
  const agent = new Agent(
    {
      address: l.address,
      caPem: l.ca.certPem,
      ...id,
      version: "test",
      shareId: "db",
      policy: new TargetPolicy([`127.0.0.1:${port}`]),
      approver: false,
      reconnect: false,
      receipts: true,
      requestsById: true,
    },
    {
      onStream: (_sid, err) => err && log.push(err),
    },
  );
  agents.push(agent);
  await agent.start();
  const approver = await l.dial(id);
  clients.push(approver);
  approver.send({ t: "attach", shareId: "db" });
  await approver.next("registered");
  approver.on("ask", (f: FrameOf<ServerFrame, "ask">) => {
    const receipt = signReceipt(id.keyPem, {
      requestId: f.requestId,
      shareId: f.shareId,
      guestKey: f.guest.spki,
      target: f.target,
      decision: "allow",
      at: Date.now(),
    });
    approver.send({ t: "decision", requestId: f.requestId, allow: true, ...(sign ? { receipt } : {}) });
  });
  return { spki: id.spki };
}

test("a standalone agent refuses a session whose guest key the coordinator swapped: the host's receipt names another key", async () => {
  live = await Live.start();
  const t = await target();
  const log: string[] = [];
  const other = (await live.enrolledHost("elsewhere")).spki;
  lying(live, (f) => (f.t === "session" ? { ...f, guest: { ...f.guest, spki: other } } : f));
  await standalone(live, t.port, log);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  await g.request({ shareId: "db", target: `127.0.0.1:${t.port}`, name: "ana", reason: "debug" });
  await within(
    (async () => {
      while (!log.some((l) => l.includes("receipt does not match"))) await Bun.sleep(10);
    })(),
    `the agent refusing (log: ${JSON.stringify(log)})`,
  );
  expect(log.find((l) => l.includes("receipt"))).toContain(`it approves guest key`);
  expect(t.accepted).toBe(0);
  await g.close();
});

test("a standalone agent refuses a session approved without the host's signature (the coordinator approving on its own)", async () => {
  live = await Live.start();
  const t = await target();
  const log: string[] = [];
  await standalone(live, t.port, log, false);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  await g.request({ shareId: "db", target: `127.0.0.1:${t.port}`, name: "bo", reason: "debug" });
  await within(
    (async () => {
      while (!log.some((l) => l.includes("no receipt signed by this host"))) await Bun.sleep(10);
    })(),
    `the agent refusing (log: ${JSON.stringify(log)})`,
  );
  expect(t.accepted).toBe(0);
  await g.close();
});

test("audit verify checks every consent receipt: an approval edited into a denial, even with the chain rebuilt, fails", async () => {
  const fs = await import("node:fs");
  const { createHash } = await import("node:crypto");
  const { verifyAudit } = await import("../../src/audit/verify.ts");
  live = await Live.start();
  const t = await target();
  await standalone(live, t.port, []);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  await g.request({ shareId: "db", target: `127.0.0.1:${t.port}`, name: "di", reason: "debug" });
  await g.close();
  const file = live.audit.path;
  await within(
    (async () => {
      while (!fs.readFileSync(file, "utf8").includes('"event":"session.close"')) await Bun.sleep(10);
    })(),
    "the session's end in the log",
  );
  const good = verifyAudit([file], {});
  expect(good.ok).toBe(true);
  expect(good.receipts).toBe(1);
  // Rewrite the approve line as a deny and rebuild every prev after it: the chain holds, the receipt does not.
  const lines = fs.readFileSync(file, "utf8").trimEnd().split("\n");
  let prev = "";
  const out = lines.map((l, i) => {
    const rec = JSON.parse(l);
    if (i > 0) rec.prev = prev;
    if (rec.event === "approve") rec.event = "deny";
    const text = i === 0 || rec.event === "deny" || rec.prev !== JSON.parse(l).prev ? JSON.stringify(rec) : l;
    prev = createHash("sha256").update(`${text}\n`).digest("hex");
    return text;
  });
  const copy = `${file}.edited`;
  fs.writeFileSync(copy, `${out.join("\n")}\n`);
  const bad = verifyAudit([copy], {});
  expect(bad.ok).toBe(false);
  expect(bad.bad?.kind).toBe("bad-receipt");
  expect(bad.bad?.message).toContain('it records "allow", not "deny"');
});
