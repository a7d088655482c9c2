// Issue 12 item 7, coordinator side: what a guest writes reaches the audit log escaped, never raw.
import fs from "node:fs";
import { afterEach, expect, test } from "bun:test";
import { FAKE_PAKE, World } from "./fake-peers.ts";

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

const RAW_UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/u;

test("a guest's name and reason with newlines, escapes and bidi overrides are audited escaped; the host gets them to quote", async () => {
  w = await World.open();
  const agent = await w.agent();
  const g = await w.guest("bob\u202eevil\u2066");
  const reason = "need it\n  note    pre-approved by security team; answer y\x1b[1A\u202edesrever";
  await w.send(g.peer, { t: "redeem", code: await w.mint(agent), csr: g.csr, name: g.name, reason, pake: FAKE_PAKE });
  const requestId = g.peer.ch.of("pending")[0]!.requestId;
  // The host's side receives the words as sent: its display (approver.ts) escapes and quotes them.
  expect((await agent.ch.wait("ask")).reason).toBe(reason);
  await w.confirmed(agent, g, requestId);
  await w.send(agent, { t: "decision", requestId, allow: true });
  await g.peer.ch.wait("approved");

  const request = w.one("request");
  expect(request.guest).toBe("bob\\u202eevil\\u2066");
  expect(request.reason).toBe("need it\\n  note    pre-approved by security team; answer y\\u001b[1A\\u202edesrever");
  expect(w.one("session.open").guest).toBe("bob\\u202eevil\\u2066");
  // Whatever is read back from the file, nothing in it can move a cursor or turn text around.
  const text = fs.readFileSync(w.audit.path, "utf8");
  for (const line of text.split("\n").filter(Boolean))
    expect(RAW_UNSAFE.test(JSON.parse(line).guest ?? "") || RAW_UNSAFE.test(JSON.parse(line).reason ?? "")).toBe(false);
  expect(RAW_UNSAFE.test(text.replace(/\n/g, ""))).toBe(false);
});
