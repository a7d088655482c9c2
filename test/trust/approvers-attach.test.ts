// Issue 30 against the real coordinator: who may attach as a delegated approver (a delegation signed by the
// share's host key, in force, naming the share, presented by the key it names), and several approvers plus the
// host's own front end answering one request at once: exactly one decision, the others told who answered.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import { createPublicKey } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Guest } from "../../src/guest/guest.ts";
import { ApproverBook } from "../../src/host/approver-book.ts";
import { CodeKeeper } from "../../src/host/code-keeper.ts";
import { HostConsent } from "../../src/host/consent.ts";
import { attachProof, type Delegation, signDelegation } from "../../src/pki/delegation.ts";
import { exportPrivateKeyPem, generateKeyPair } from "../../src/pki/index.ts";
import type { ControlClient } from "../../src/wire/control-client.ts";
import { MAX_DELEGATED_APPROVERS } from "../../src/coordinator/share-desk.ts";
import { Live, within } from "../coordinator/live.ts";
import { startHost, type TestHost, until } from "./host.ts";
import { servers, target } from "./lying.ts";

setDefaultTimeout(30_000);
let live: Live | undefined;
const hosts: TestHost[] = [];
const clients: ControlClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  for (const h of hosts.splice(0)) await h.agent.stop().catch(() => {});
  for (const s of servers.splice(0)) s.close();
  await live?.close();
  live = undefined;
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const DAY = 24 * 3600_000;
const pub = (pem: string) => createPublicKey(pem).export({ type: "spki", format: "der" }).toString("base64");
const newKey = async () => exportPrivateKeyPem((await generateKeyPair()).privateKey);

async function setup(o: { requestsById?: boolean; answer?: boolean } = {}) {
  live = await Live.start();
  const t = await target();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-attach-"));
  dirs.push(dir);
  const book = new ApproverBook(path.join(dir, "approvers.json"));
  const h = await startHost(live, "db", t.port, {
    approvers: book,
    requestsById: o.requestsById,
    answer: o.answer === false ? () => undefined : undefined,
  });
  hosts.push(h);
  const delegate = (key: string, name: string, x: { by?: string; shares?: string[]; expiresAt?: number } = {}) =>
    signDelegation(x.by ?? h.keyPem, {
      name,
      hostName: "build-01",
      approverPub: pub(key),
      shares: x.shares ?? ["db"],
      issuedAt: Date.now() - DAY,
      expiresAt: x.expiresAt ?? Date.now() + DAY,
    });
  return { t, h, book, delegate };
}

async function attach(d: Delegation, key: string, o: { at?: number; shareId?: string } = {}) {
  const c = await live!.dial();
  clients.push(c);
  const at = o.at ?? Date.now();
  c.send({ t: "attach-approver", delegation: d, shareId: o.shareId ?? "db", at, proof: attachProof(key, d, at) });
  return { c, registered: c.next("registered") };
}

test("the coordinator lets an approver attach only with the share's host's delegation, in force, for that share, from the key it names", async () => {
  const s = await setup();
  const laptop = await newKey();
  const refused = async (d: Delegation, key: string, o: { at?: number; shareId?: string } = {}) =>
    (await attach(d, key, o)).registered.then(
      () => "attached",
      (e: Error) => e.message,
    );
  expect(await refused(s.delegate(laptop, "laptop", { by: await newKey() }), laptop)).toMatch(
    /no share "db" of the host that delegated to laptop/,
  );
  expect(await refused(s.delegate(laptop, "laptop", { expiresAt: Date.now() - 1000 }), laptop)).toMatch(
    /delegation is valid .* not at/,
  );
  expect(await refused(s.delegate(laptop, "laptop", { shares: ["prod"] }), laptop)).toMatch(
    /may answer for prod, not for share db/,
  );
  // A copy of a good delegation, presented by a key other than the one it names.
  expect(await refused(s.delegate(laptop, "laptop"), await newKey())).toMatch(/not signed by the approver key/);
  expect(await refused(s.delegate(laptop, "laptop"), laptop, { at: Date.now() - 3600_000 })).toMatch(
    /more than 5 minutes from this coordinator's clock/,
  );
  expect(await refused(s.delegate(laptop, "laptop"), laptop)).toBe("attached");
  const lines = fs.readFileSync(path.join(live!.dir, "audit.log"), "utf8");
  expect(lines.match(/"event":"approver.attach"/g)?.length).toBe(1);
});

for (const hostAnswers of [true, false])
  test(`two approvers and the host's own front end (${hostAnswers ? "answering too" : "leaving it waiting"}) get one request at once: one decision, one session, the others told who answered`, async () => {
    const s = await setup({ requestsById: true, answer: hostAnswers });
    const keys = [await newKey(), await newKey()];
    const names = ["laptop", "phone"];
    // What each one heard: the coordinator's cancel frames (each front end answered at once, so none is still waiting).
    const told: string[][] = [[], [], []];
    s.h.client.on("cancel", (f) => told[2]!.push(f.reason));
    for (const [i, key] of keys.entries()) {
      const d = s.delegate(key, names[i]!);
      s.book.add(d);
      const { c, registered } = await attach(d, key);
      await within(registered, `${names[i]}'s attach`);
      const consent = new HostConsent(
        {
          shareId: "db",
          keeper: new CodeKeeper(s.h.spki),
          hostKeyPem: key,
          delegation: d,
          requestsById: true,
        },
        {
          ask: (w) => consent.decide(w.ask.requestId, { allow: true, scope: { ttlMs: 15 * 60_000 } }),
          gone: () => {},
          notice: () => {},
        },
      );
      consent.bind(c);
      c.on("cancel", (f) => told[i]!.push(f.reason));
    }
    const g = await Guest.connect({ address: live!.address, caPem: live!.ca.certPem, version: "test" });
    const ok = await within(
      g.request({ shareId: "db", target: `127.0.0.1:${s.t.port}`, name: "ana", reason: "race" }),
      "the approval",
    );
    await until(() => told.flat().length >= 2, "the losers' cancels");
    const audit = () => fs.readFileSync(path.join(live!.dir, "audit.log"), "utf8");
    await until(() => /"event":"session.open"/.test(audit()), "the session's audit line");
    expect(audit().match(/"event":"approve"/g)?.length).toBe(1);
    expect(audit().match(/"event":"session.open"/g)?.length).toBe(1);
    // Whoever won, the others heard "answered by WINNER (y 15m)".
    const winner = ok.receipt?.delegation?.body.name ?? "the host";
    if (!hostAnswers) expect(winner).not.toBe("the host");
    for (const [i, name] of [...names, "the host"].entries())
      expect(told[i]).toEqual(
        name === winner ? [] : [`answered by ${winner} (${winner === "the host" ? "y" : "y 15m"})`],
      );
    await g.close();
  });

test("an approver hears asks only for the shares its delegation names, and a share takes a bounded number of them", async () => {
  const s = await setup({ requestsById: true, answer: false });
  // The same host serves a second share, web, which the laptop's delegation does not name.
  const web = await live!.dial({ keyPem: s.h.keyPem, certPem: s.h.certPem });
  clients.push(web);
  web.send({ t: "register", shareId: "web", targets: [`127.0.0.1:${s.t.port}`], approver: true, requestsById: true });
  await within(web.next("registered"), "web's registration");
  const laptop = await newKey();
  const d = s.delegate(laptop, "laptop");
  const { c, registered } = await attach(d, laptop);
  await within(registered, "the laptop's attach");
  const heard: string[] = [];
  c.on("ask", (f) => heard.push(f.shareId));
  expect(
    await (await attach(d, laptop, { shareId: "web" })).registered.then(
      () => "attached",
      (e: Error) => e.message,
    ),
  ).toMatch(/may answer for db, not for share web/);
  const webAsk = web.next("ask");
  const g = await Guest.connect({ address: live!.address, caPem: live!.ca.certPem, version: "test" });
  void g.request({ shareId: "web", target: `127.0.0.1:${s.t.port}`, name: "ana", reason: "web" }).catch(() => {});
  const g2 = await Guest.connect({ address: live!.address, caPem: live!.ca.certPem, version: "test" });
  void g2.request({ shareId: "db", target: `127.0.0.1:${s.t.port}`, name: "bo", reason: "db" }).catch(() => {});
  await within(webAsk, "web's ask at the host");
  await until(() => heard.length > 0 && s.h.prompts.length > 0, "db's ask at the laptop and the host");
  expect(heard).toEqual(["db"]);
  // The cap: MAX_DELEGATED_APPROVERS connections from other devices per share, then a clear refusal.
  for (let i = 1; i < MAX_DELEGATED_APPROVERS; i++) await within((await attach(d, laptop)).registered, `attach ${i}`);
  const over = await (await attach(d, laptop)).registered.then(
    () => "attached",
    (e: Error) => e.message,
  );
  expect(over).toBe(
    `share "db" already has ${MAX_DELEGATED_APPROVERS} approvers attached from other devices; stop one first`,
  );
  await g.close();
  await g2.close();
});
