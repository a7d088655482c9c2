// Issue 27: random frame rewrites by a coordinator that lies, over a few hundred consent runs. The real
// Coordinator, Agent, host/consent.ts and Guest run in-process; the wrapper (lying.ts) rewrites one frame a run.
// The host says yes to ana for the first target, one connection (`y 1`); its agent would also serve a second
// target (the decoy), so a lie that moved a session there would show. The only outcomes allowed: refused,
// or approved with the host's terms (the first target, one connection, the key the host approved).
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import net from "node:net";
import { Guest } from "../../src/guest/guest.ts";
import type { Receipt } from "../../src/pki/receipt.ts";
import type { ServerFrame } from "../../src/wire/protocol.ts";
import { Live } from "../coordinator/live.ts";
import { startHost, type TestHost } from "./host.ts";
import { lying, servers, target } from "./lying.ts";

const RUNS = Number(process.env.TESSERA_FUZZ_RUNS ?? 300);
setDefaultTimeout(RUNS * 2_000);
let live: Live | undefined;
let h: TestHost | undefined;
afterAll(async () => {
  await h?.agent.stop().catch(() => {});
  for (const s of servers.splice(0)) s.close();
  await live?.close();
});

/** A small deterministic generator, so a failing run can be replayed from its seed. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

type Lie = { on: ServerFrame["t"]; what: string; apply: (f: ServerFrame) => ServerFrame | undefined | "twice" };

function lies(o: { decoy: string; otherKey: string; oldReceipt: () => Receipt | undefined }): Lie[] {
  const junk = "A".repeat(43);
  const L: Lie[] = [];
  const add = (on: ServerFrame["t"], what: string, apply: Lie["apply"]) => L.push({ on, what, apply });
  for (const on of [
    "ask",
    "pake",
    "confirm",
    "confirmed",
    "pending",
    "approved",
    "session",
    "incoming",
    "stream",
  ] as const) {
    // Dropping a stream offer, the host's confirmation or the approval only makes the guest wait (a stalled
    // connection; the guest's 2-minute bound on the confirmation): denial of service, which a coordinator
    // can do anyway, and too slow for this loop. The other drops end in a refusal at the approval timeout.
    if (!["incoming", "stream", "approved", "confirmed"].includes(on)) add(on, "drop", () => undefined);
    add(on, "twice", () => "twice");
  }
  add("ask", "target to decoy", (f) => ({ ...f, target: o.decoy }) as ServerFrame);
  add("ask", "strip code", (f) => ({ ...f, pake: undefined }) as ServerFrame);
  add("ask", "swap guest key", (f) => (f.t === "ask" ? { ...f, guest: { ...f.guest, spki: o.otherKey } } : f));
  add("ask", "edit reason", (f) => (f.t === "ask" ? { ...f, reason: `${f.reason} (pre-approved)` } : f));
  add("pake", "swap host key", (f) => ({ ...f, hostSpki: o.otherKey }) as ServerFrame);
  add("pake", "junk msg", (f) => ({ ...f, msg: junk }) as ServerFrame);
  add("confirm", "junk tag", (f) => ({ ...f, tag: junk }) as ServerFrame);
  add("confirm", "no tag", (f) => ({ ...f, tag: undefined }) as ServerFrame);
  add("confirmed", "junk tag", (f) => ({ ...f, tag: junk }) as ServerFrame);
  add("pending", "target to decoy", (f) => ({ ...f, target: o.decoy }) as ServerFrame);
  add("approved", "target to decoy", (f) => ({ ...f, target: o.decoy }) as ServerFrame);
  add("approved", "swap host key", (f) => ({ ...f, hostSpki: o.otherKey }) as ServerFrame);
  add("approved", "no scope", (f) => ({ ...f, scope: undefined }) as ServerFrame);
  add("approved", "old receipt", (f) => ({ ...f, receipt: o.oldReceipt() }) as ServerFrame);
  add("session", "target to decoy", (f) => ({ ...f, target: o.decoy }) as ServerFrame);
  add("session", "no scope", (f) => ({ ...f, scope: undefined }) as ServerFrame);
  add("session", "wider scope", (f) => ({ ...f, scope: { streams: 99 } }) as ServerFrame);
  add("session", "old clock", (f) => ({ ...f, openedAt: 0 }) as ServerFrame);
  add("session", "old receipt", (f) => ({ ...f, receipt: o.oldReceipt() }) as ServerFrame);
  add("session", "other request", (f) => ({ ...f, requestId: "r-other" }) as ServerFrame);
  add("session", "swap guest key", (f) => (f.t === "session" ? { ...f, guest: { ...f.guest, spki: o.otherKey } } : f));
  add(
    "session",
    "new session id",
    (f) => ({ ...f, sessionId: `s-fake-${Math.random().toString(36).slice(2)}` }) as ServerFrame,
  );
  return L;
}

/** One connection through the guest's forward: whether the target echoed our bytes (served) or not. */
function probe(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: "127.0.0.1" }, () => s.write("ping"));
    const done = (served: boolean) => {
      s.destroy();
      resolve(served);
    };
    s.on("data", () => done(true));
    s.on("close", () => done(false));
    s.on("error", () => done(false));
  });
}

test(`${RUNS} consent runs, one frame rewritten each: refused, or approved with the host's terms, never more`, async () => {
  // A short approval timeout: a run whose frame was dropped ends in a refusal quickly.
  live = await Live.start({
    approvalTimeoutMs: 1500,
    streamTokenTtlMs: 1000,
    redeemPerMinute: 10_000,
    redeemGlobalPerMinute: 10_000,
  });
  const real = await target();
  const decoy = await target();
  const realTarget = `127.0.0.1:${real.port}`;
  const decoyTarget = `127.0.0.1:${decoy.port}`;
  const otherKey = (await live.enrolledHost("mallory")).spki;
  let lie: Lie | undefined;
  const receipts: Receipt[] = [];
  const only = process.env.TESSERA_FUZZ_ONLY;
  const L = lies({ decoy: decoyTarget, otherKey, oldReceipt: () => receipts.at(-2) ?? receipts.at(-1) }).filter(
    (l) => !only || `${l.on}: ${l.what}` === only,
  );
  const seen = lying(live, (f, peer) => {
    if (f.t === "approved" && f.receipt) receipts.push(f.receipt);
    if (!lie || lie.on !== f.t) return f;
    const l = lie;
    lie = undefined; // one rewrite a run
    const out = l.apply(f);
    if (out === "twice") {
      queueMicrotask(() => peer.ch.send(f));
      return f;
    }
    return out;
  });
  h = await startHost(live, "fuzzed", real.port, {
    targets: [realTarget, decoyTarget],
    failBudget: 1_000_000,
    answer: () => ({ allow: true, scope: { streams: 1 } }),
  });
  const random = rng(Number(process.env.TESSERA_FUZZ_SEED ?? 27));
  const outcomes: Record<string, number> = {};
  for (let run = 0; run < RUNS; run++) {
    lie = L[Math.floor(random() * L.length)];
    const what = `${lie!.on}: ${lie!.what}`;
    const t0 = Date.now();
    const trace = (step: string) => process.env.TESSERA_FUZZ_TRACE && console.error(`run ${run}: ${what}: ${step}`);
    trace("start");
    const code = await h.mint(realTarget);
    trace("minted");
    const dog = process.env.TESSERA_FUZZ_TRACE
      ? setTimeout(() => {
          const frames = seen.slice(-12).map((x) => x.t);
          console.error(`WATCHDOG run ${run}: log=${JSON.stringify(h!.log.slice(-3))} frames=${frames.join(",")}`);
        }, 5000)
      : undefined;
    const prompted = h.prompts.length;
    const realBefore = real.bytes;
    const g = await Guest.connect({ address: live.address, caPem: live.ca.certPem, version: "test" });
    let served = 0;
    let outcome: string;
    try {
      const ok = await g.request({ code, name: "ana", reason: `run ${run}` }).catch((e) => {
        trace(`refused: ${e.message}`);
        throw e;
      });
      trace("approved");
      const local = await g.listen("127.0.0.1", 0);
      trace("listening");
      // Two connections under a `y 1`: at most the first is served.
      for (let i = 0; i < 2; i++) if (await probe(local.port)) served++;
      outcome = served ? "approved" : "approved, nothing served";
      // Served only what the host approved: its target, one connection, the request it was shown.
      if (served) {
        expect({ what, target: ok.target, prompted: h.prompts.length > prompted }).toEqual({
          what,
          target: realTarget,
          prompted: true,
        });
        expect({ what, guest: h.prompts.at(-1)!.ask.guest.name }).toEqual({ what, guest: "ana" });
      }
    } catch {
      outcome = "refused";
    } finally {
      trace("closing");
      clearTimeout(dog);
      await g.close().catch(() => {});
    }
    expect({ what, run, served }).toEqual({ what, run, served: Math.min(served, 1) });
    expect({ what, run, decoyBytes: decoy.bytes, decoyConnections: decoy.accepted }).toEqual({
      what,
      run,
      decoyBytes: 0,
      decoyConnections: 0,
    });
    if (!served) expect({ what, run, realBytes: real.bytes }).toEqual({ what, run, realBytes: realBefore });
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    if (process.env.TESSERA_FUZZ_TRACE) console.error(`  -> ${outcome} in ${Date.now() - t0} ms`);
  }
  // Both outcomes happen: the fuzz reaches approvals (some lies are harmless) and refusals.
  expect(outcomes.refused).toBeGreaterThan(0);
  expect(outcomes.approved).toBeGreaterThan(0);
  console.log(`fuzz outcomes over ${RUNS} runs: ${JSON.stringify(outcomes)}`);
});
