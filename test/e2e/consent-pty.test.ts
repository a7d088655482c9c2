// Issue 27, findings 1-3 at the real CLI: `tessera share --port` (the compiled binary) at a PTY, against the
// real coordinator running in this process behind a test-only wrapper that rewrites its frames as a coordinator
// holding the CA key could. The host's terminal must say what happened; the audit log must record it.
import { afterEach, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { Guest } from "../../src/guest/guest.ts";
import { guestStart } from "../../src/pki/code-pake.ts";
import { createCsr, generateKeyPair } from "../../src/pki/index.ts";
import type { Peer } from "../../src/coordinator/state.ts";
import { splitCode } from "../../src/wire/codes.ts";
import type { ClientFrame, FrameOf, ServerFrame } from "../../src/wire/protocol.ts";
import { Live } from "../coordinator/live.ts";
import { lying, servers, target } from "../trust/lying.ts";
import { killAll, run, spawn, tmpDir } from "./harness.ts";

setDefaultTimeout(60_000);
let live: Live | undefined;
afterEach(async () => {
  await killAll();
  for (const s of servers.splice(0)) s.close();
  await live?.close();
  live = undefined;
});

const auditLines = (l: Live) =>
  fs
    .readFileSync(path.join(l.dir, "audit.log"), "utf8")
    .trim()
    .split("\n")
    .map((x) => JSON.parse(x) as { event: string; [k: string]: unknown });

/** Enrols a host home with the in-process coordinator and starts `tessera share --port` at a PTY. */
async function sharePty(l: Live, port: number) {
  const dir = tmpDir();
  const env = { TESSERA_HOME: path.join(dir, "host") };
  const link = await run(["link", l.address, "--token", l.enrolToken(), "--name", "hosty"], env, dir);
  if (link.code !== 0) throw new Error(`link failed: ${link.err}`);
  const host = spawn(["share", "--port", String(port)], env, { pty: true, cwd: dir });
  const code = (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]!;
  return { host, code };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(10);
  }
}

test("finding 1 at the PTY: a guess that walks away after the host's PAKE message is printed at the host's terminal and audited", async () => {
  live = await Live.start();
  const t = await target();
  const { host, code } = await sharePty(live, t.port);
  const { nameplate, secret } = splitCode(code.replace("-", ""));
  const run1 = guestStart(nameplate, secret === "0000" ? "0001" : "0000");
  const c = await live.dial();
  const csr = await createCsr({ keys: await generateKeyPair(), commonName: "mallory" });
  c.send({ t: "redeem", code: nameplate, csr, name: "mallory", reason: "guess", pake: run1.msg });
  const pake = (await c.next("pake")) as FrameOf<ServerFrame, "pake"> & { tag?: string };
  expect(pake.tag).toBeUndefined();
  c.close();
  await host.waitFor(
    new RegExp(
      `code ${nameplate}-\\?\\?\\?\\? was tried and abandoned \\(withdrawn\\): possibly a guess; the code is burnt`,
    ),
  );
  await until(() => auditLines(live!).some((e) => e.event === "code.abandoned"), "code.abandoned");
  expect(host.out).not.toContain("Allow mallory");
});

test("finding 2 at the PTY: an ask stripped of its code on a share without --allow-requests-by-id is refused loudly and audited", async () => {
  live = await Live.start();
  const t = await target();
  lying(live, (f) => (f.t === "ask" ? { ...f, pake: undefined } : f));
  const { host, code } = await sharePty(live, t.port);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const err = await g.request({ code, name: "ana", reason: "debug" }).then(
    () => new Error("approved"),
    (e: Error) => e,
  );
  expect(err.message).toBe("access denied: the host declined: this share takes requests only with a code");
  await host.waitFor(
    /the coordinator sent a request without a code \(from ana, for 127\.0\.0\.1:\d+\); this share takes none: refused/,
  );
  expect(host.out).not.toContain("Allow ana");
  expect(auditLines(live).find((e) => e.event === "deny")).toMatchObject({
    guest: "ana",
    reason: "this share takes requests only with a code",
  });
});

test("finding 3 at the PTY: the host's yes, replayed for a new session id after the session ended, serves nothing; the host's terminal says why", async () => {
  live = await Live.start();
  const t = await target();
  let agentPeer: Peer | undefined;
  let first: FrameOf<ServerFrame, "session"> | undefined;
  lying(live, (f, peer) => {
    if (f.t === "session" && !first) {
      agentPeer = peer;
      first = f;
    }
    return f;
  });
  const ends: FrameOf<ClientFrame, "end">[] = [];
  const b = live.coordinator.broker;
  const handle = b.handle.bind(b);
  b.handle = (p: Peer, f: ClientFrame) => {
    if (f.t === "end") ends.push(f);
    return handle(p, f);
  };
  const { host, code } = await sharePty(live, t.port);
  const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
  const approved = g.request({ code, name: "ana", reason: "once" });
  await host.waitFor(/Allow ana /);
  host.write("y\r");
  const ok = await approved;
  await g.close();
  await host.waitFor(new RegExp(`session ${ok.sessionId} ended`));
  const before = t.accepted;
  agentPeer!.ch.send({ ...first!, sessionId: "s-replayed" });
  await host.waitFor(
    new RegExp(
      `refused session s-replayed: the host's yes to request ${ok.requestId} already opened session ${ok.sessionId}`,
    ),
  );
  await until(() => ends.some((e) => e.sessionId === "s-replayed"), "the agent's end for the replayed session");
  agentPeer!.ch.send({ t: "incoming", sessionId: "s-replayed", streamId: "st-1", token: "A".repeat(43) });
  agentPeer!.ch.send(first!);
  await host.waitFor(new RegExp(`refused session ${ok.sessionId}: session ${ok.sessionId} already ended`));
  expect(t.accepted).toBe(before);
});
