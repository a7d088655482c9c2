// Issue 14: a coordinator that lies. The real Coordinator runs in-process over TLS; a test-only wrapper (never in
// the binary) rewrites the frames it sends, as a coordinator holding the CA key could. The code's PAKE must catch it.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import type { Agent } from "../../src/host/agent.ts";
import { startHost } from "./host.ts";
import { Guest } from "../../src/guest/guest.ts";
import type { Peer } from "../../src/coordinator/state.ts";
import type { ClientFrame } from "../../src/wire/protocol.ts";
import { Live, within } from "../coordinator/live.ts";
import { lying, servers, target } from "./lying.ts";

setDefaultTimeout(30_000);
let live: Live | undefined;
const agents: Agent[] = [];
afterEach(async () => {
  for (const a of agents.splice(0)) await a.stop().catch(() => {});
  for (const s of servers.splice(0)) s.close();
  await live?.close();
  live = undefined;
});

async function host(l: Live, shareId: string, port: number, log: string[]) {
  const h = await startHost(l, shareId, port);
  agents.push(h.agent);
  h.client.on("closed", (f) => log.push(`closed: ${f.reason}`));
  // The agent's refusals and the host's notices land in the host's log too.
  const push = h.log.push.bind(h.log);
  h.log.push = (...lines: string[]) => {
    log.push(...lines);
    return push(...lines);
  };
  return { ...h, prompts: h.prompts };
}

test("a coordinator that names another host's key in `approved` is refused by the guest: nothing is sent, both sides hear why", async () => {
  live = await Live.start();
  const real = await target();
  const evil = await target();
  const impostorLog: string[] = [];
  const impostor = await host(live, "impostor", evil.port, impostorLog);
  const hostLog: string[] = [];
  let swapped = false;
  const seen = lying(live, (f) => {
    if (f.t !== "approved") return f;
    swapped = true;
    return { ...f, hostSpki: impostor.spki };
  });
  const h = await host(live, "real", real.port, hostLog);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const err = await g.request({ code: h.code, name: "ana", reason: "debug" }).then(
    () => undefined,
    (e: Error) => e,
  );
  expect(swapped).toBe(true);
  expect(err?.message).toMatch(
    /^refused: the coordinator named host key SHA256:\S+, but the code confirmed SHA256:\S+: the coordinator swapped the host's key, so nothing was sent/,
  );
  expect(err?.message).toContain(impostor.spki);
  expect(err?.message).toContain(h.spki);
  // The real host heard why, through the session's close.
  await within(
    (async () => {
      while (!hostLog.some((l) => l.includes("refused by the guest"))) await Bun.sleep(10);
    })(),
    `the host hearing the refusal (heard: ${JSON.stringify(hostLog)})`,
  );
  expect(hostLog.find((l) => l.startsWith("closed:"))).toMatch(
    /^closed: the guest ended the session: refused by the guest: the coordinator named keys the code did not confirm$/,
  );
  expect(evil.accepted + real.accepted).toBe(0);
  expect(JSON.stringify(seen)).not.toContain(h.code.slice(5));
});

test("a coordinator that names another guest key in `session` is refused by the host's agent: no stream is served, both sides hear why", async () => {
  live = await Live.start();
  const real = await target();
  const hostLog: string[] = [];
  const impostorKey = (await live.enrolledHost("mallory")).spki;
  let agentPeer: Peer | undefined;
  const seen = lying(live, (f, peer) => {
    if (f.t !== "session") return f;
    agentPeer = peer;
    return { ...f, guest: { ...f.guest, spki: impostorKey } };
  });
  const h = await host(live, "real", real.port, hostLog);
  const closedWhy: string[] = [];
  const g = await Guest.connect(
    { address: live.address, caPem: live.ca.certPem, version: "test" },
    { onClosed: (r) => closedWhy.push(r) },
  );
  const ok = await g.request({ code: h.code, name: "ana", reason: "debug" });
  await within(
    (async () => {
      while (!closedWhy.length) await Bun.sleep(10);
    })(),
    "the guest hearing the refusal",
  );
  expect(closedWhy[0]).toBe(
    "the host ended the session: refused by the host: the coordinator named a guest key the host did not approve",
  );
  expect(
    hostLog.some((l) =>
      l.startsWith(
        `refused session ${ok.sessionId}: the coordinator named guest key ${impostorKey} for request ${ok.requestId}, which this host did not approve; it may be swapping keys`,
      ),
    ),
  ).toBe(true);
  // The lying coordinator offers the agent a stream for that session anyway: refused, the target never dialled.
  agentPeer!.ch.send({ t: "incoming", sessionId: ok.sessionId, streamId: "st-evil", token: "A".repeat(43) });
  const refused = await within(
    new Promise<ClientFrame>((resolve) => {
      const b = live!.coordinator.broker;
      const handle = b.handle.bind(b);
      b.handle = (p: Peer, f: ClientFrame) => {
        if (f.t === "refuse") resolve(f);
        return handle(p, f);
      };
    }),
    "the agent's refusal of the injected stream",
  );
  expect(refused).toMatchObject({ t: "refuse", sessionId: ok.sessionId, streamId: "st-evil" });
  expect(real.accepted).toBe(0);
  expect(JSON.stringify(seen)).not.toContain(h.code.slice(5));
  await g.close();
});

test("right nameplate, wrong secret: the host sees only a wrong-code line, the code is burnt and audited, the right code no longer works", async () => {
  live = await Live.start();
  const real = await target();
  const hostLog: string[] = [];
  const seen = lying(live, (f) => f);
  const h = await host(live, "real", real.port, hostLog);
  const secret = h.code.slice(5);
  const wrong = `${h.code.slice(0, 5)}${secret === "0000" ? "0001" : "0000"}`;
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const err = await g.request({ code: wrong, name: "mallory", reason: "guess" }).then(
    () => undefined,
    (e: Error) => e,
  );
  expect(err?.message).toMatch(/^the code did not match: nobody was connected/);
  await within(
    (async () => {
      while (!hostLog.some((l) => l.startsWith("wrong code: mallory tried "))) await Bun.sleep(10);
    })(),
    "the host's wrong-code line",
  );
  expect(h.prompts).toEqual([]);
  const g2 = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const again = await g2.request({ code: h.code, name: "ana", reason: "the real one" }).then(
    () => undefined,
    (e: Error) => e,
  );
  expect(again?.message).toMatch(/this code is not valid/);
  const audit = fs.readFileSync(path.join(live.dir, "audit.log"), "utf8");
  expect(audit).toContain('"event":"code.mismatch"');
  // The guest confirms first, so the host is the one who finds the guess wrong (and hears of it).
  expect(audit).toContain('"detectedBy":"host"');
  // The secret half is nowhere the coordinator can see: frames, audit log, and every file of its database
  // (the store runs in WAL mode: fresh rows sit in state.db-wal, not state.db), read raw, and through SQL.
  const dir = live.dir;
  const files = fs.readdirSync(dir).filter((f) => f.startsWith("state.db"));
  expect(files).toContain("state.db-wal");
  const raw = files.map((f) => fs.readFileSync(path.join(dir, f)).toString("latin1"));
  // A control: the guest's name is in the database files, so a search that finds nothing means something.
  expect(raw.some((t) => t.includes("mallory"))).toBe(true);
  const { Database } = await import("bun:sqlite");
  const sqlite = new Database(path.join(live.dir, "state.db"), { readonly: true });
  const tables = sqlite.query("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[];
  const rows = tables.map((t) => JSON.stringify(sqlite.query(`SELECT * FROM "${t.name}"`).all())).join("\n");
  sqlite.close();
  for (const text of [JSON.stringify(seen), audit, rows, ...raw]) {
    expect(text).not.toContain(h.code);
    expect(text).not.toContain(h.code.replace("-", ""));
    expect(text).not.toMatch(new RegExp(`\\b${secret}\\b`));
  }
});
