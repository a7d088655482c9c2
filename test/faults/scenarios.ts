// The fault scenarios, each run on a fresh rig and returning what it measured: the e2e tests assert on
// the counts, scripts/faults.ts prints every figure (a "within N s" is a figure, never an assertion).
import fs from "node:fs";
import path from "node:path";
import { spawn, tmpDir, type Proc } from "../e2e/harness.ts";
import { Rig, until } from "./cluster.ts";
import { PrivatePg } from "./private-pg.ts";
import { Freezer } from "./freezer.ts";
import { crossCheck } from "./audit-cross.ts";
import { cuts, nextCode, startWorkload, type Workload } from "./workload.ts";

export interface Figures {
  [k: string]: number | string | boolean | string[];
}

async function allHealth(rig: Rig, want: number): Promise<boolean> {
  const hs = await Promise.all(rig.nodes.map((n) => n.health().catch(() => ({ status: 0, body: "" }))));
  return hs.every((h) => h.status === want);
}

/** Counts shared by every scenario, after the load stopped. */
function loadFigures(rig: Rig, w: Workload): Figures {
  const shorts = w.guests.flatMap((g) => g.short.results);
  return {
    shortStreams: shorts.length,
    shortFailed: shorts.filter((r) => !r.ok).length,
    longCut: w.guests.filter((g) => g.long.cutAt !== undefined).length,
    longCorrupt: w.guests.filter((g) => g.long.corrupt).length,
    guestsExited: w.guests.filter((g) => g.proc.proc.exitCode !== null).length,
    controlCuts: w.guests.reduce((n, g) => n + cuts(g.proc).length, 0) + cuts(w.host).length,
    sessionDetaches: rig.all("session.detach").length,
    sessionCloses: rig.all("session.close").length,
  };
}

/** No fault: `seconds` of load; every stream should succeed and no connection be cut. */
export async function steady(o: { seconds: number; guests: number; nodes?: number }): Promise<Figures> {
  const pg = await PrivatePg.start();
  try {
    const rig = await Rig.start(tmpDir(), { db: pg.url(), nodes: o.nodes ?? 3, haproxy: true });
    const w = await startWorkload(rig, o.guests);
    await Bun.sleep(o.seconds * 1000); // the load itself is what runs meanwhile
    await w.stop();
    return { ...loadFigures(rig, w), auditOk: (await rig.verifyAudit()).code === 0 };
  } finally {
    await pg.destroy();
  }
}

/**
 * PostgreSQL stopped for `outageMs` under load. Live sessions and long streams should carry on; a join
 * started during the outage is told "unavailable" and goes through once the database is back.
 */
export async function dbOutage(o: { outageMs: number; guests: number; nodes?: number }): Promise<Figures> {
  const pg = await PrivatePg.start();
  try {
    const rig = await Rig.start(tmpDir(), { db: pg.url(), nodes: o.nodes ?? 2, haproxy: true });
    const w = await startWorkload(rig, o.guests);
    const code = await nextCode(w.host); // minting needs the database: before the outage
    const downAt = Date.now();
    await pg.down("fast");
    await until("every node's /healthz to say 503", () => allHealth(rig, 503));
    const healthDownMs = Date.now() - downAt;
    const body = (await rig.nodes[0]!.health()).body;
    // A new guest during the outage: told to retry, not refused.
    const env = await rig.link("late");
    const late: Proc = spawn(["join", code, "--name", "late", "--local", "127.0.0.1:0"], env);
    await late.waitFor(/database is unavailable; retrying/, 60_000);
    const left = o.outageMs - (Date.now() - downAt);
    if (left > 0) await Bun.sleep(left); // the outage's length is the fault, not a wait for an event
    const upAt = Date.now();
    await pg.up();
    const firstShort = await Promise.all(w.guests.map((g) => g.short.succeeded(1, 120_000)));
    const shortBackMs = Math.max(...firstShort.map((r) => r.at + r.ms - upAt));
    await until("every node's /healthz to say 200", () => allHealth(rig, 200), 120_000);
    const healthUpMs = Date.now() - upAt;
    await w.host.waitFor(/Allow late /, 120_000).catch((err: Error) => {
      throw new Error(`the join started during the outage never reached the host:\n${late.all}\n${err.message}`);
    });
    const lateAskedMs = Date.now() - upAt;
    w.host.write("y\n");
    await late.waitFor(/forwarding 127\.0\.0\.1:(\d+)/, 60_000);
    // Streams during the outage: how many failed, and whether each failure said why.
    await Promise.all(w.guests.map((g) => g.long.echoedMore(2048)));
    await w.stop();
    const during = w.guests.flatMap((g) => g.short.failed(downAt, upAt));
    const after = w.guests.flatMap((g) => g.short.failed(upAt + 5_000));
    return {
      ...loadFigures(rig, w),
      outageMs: upAt - downAt,
      healthBody: body.trim(),
      healthDownMs,
      healthUpMs,
      shortBackMs,
      lateAskedMs,
      shortFailedDuringOutage: during.length,
      shortFailedLaterThan5s: after.length,
      unavailableSaid: w.guests.filter((g) => /unavailable/.test(g.proc.all)).length,
      lateRetried: /database is unavailable; retrying/.test(late.all),
      auditOk: (await rig.verifyAudit()).code === 0,
    };
  } finally {
    await pg.destroy();
  }
}

/**
 * The node holding the share is silently cut from PostgreSQL (its connection frozen: packets held, no
 * RST). It should let go of the share at its lease deadline, another node should take it over, and the
 * audit logs should show no instant where two nodes served it.
 */
export async function partition(o: { guests: number; nodes?: number; ttl?: string }): Promise<Figures> {
  const pg = await PrivatePg.start();
  const freezers: Freezer[] = [];
  try {
    const rig = await Rig.start(tmpDir(), {
      db: pg.url(),
      nodes: o.nodes ?? 3,
      haproxy: true,
      nodeArgs: ["--node-ttl", o.ttl ?? "4s"],
      dbFor: async () => {
        const f = new Freezer("127.0.0.1", pg.port);
        freezers.push(f);
        return `postgres://postgres@127.0.0.1:${await f.listen()}/postgres`;
      },
    });
    const w = await startWorkload(rig, o.guests);
    const holder = await until("the node holding the share", () =>
      rig.nodes.find((n) => n.events("share.open").length),
    );
    const others = rig.nodes.filter((n) => n !== holder);
    const cutAt = Date.now();
    freezers[rig.nodes.indexOf(holder)]!.freeze();
    await until("the cut node to let go of its share", () => holder.events("share.moved").length > 0, 120_000);
    const letGoMs = Date.now() - cutAt;
    const taker = await until(
      "another node to take the share",
      () => others.find((n) => n.events("share.adopt").length > 0),
      120_000,
    );
    const adoptMs = Date.now() - cutAt;
    const back = await Promise.all(w.guests.map((g) => g.short.succeeded(1, 120_000)));
    const serviceBackMs = Math.max(...back.map((r) => r.at + r.ms - cutAt));
    // Healed: the cut node comes back as a node with nothing to serve, and must not serve the share.
    freezers[rig.nodes.indexOf(holder)]!.heal();
    const healedAt = Date.now();
    await until(
      "the cut node to answer /healthz 200 again",
      async () => (await holder.health()).status === 200,
      120_000,
    );
    await Promise.all(w.guests.map((g) => g.short.succeeded(3, 120_000)));
    await w.stop();
    const load = loadFigures(rig, w);
    const failures = w.guests.flatMap((g) =>
      g.short.failed().map((r) => `${g.name} ${new Date(r.at).toISOString()} ${r.ms}ms ${r.error}`),
    );
    // Every session ended by its guest, so each stream and session has had its chance to close.
    for (const g of w.guests) g.proc.kill("SIGINT");
    await Promise.all(w.guests.map((g) => g.proc.exit()));
    w.host.kill("SIGINT");
    await w.host.exit();
    const x = crossCheck(rig);
    return {
      ...load,
      cutAt: new Date(cutAt).toISOString(),
      shortFailures: failures,
      cutNode: holder.name,
      takerNode: taker.name,
      letGoMs,
      adoptMs,
      serviceBackMs,
      healedToHealthyMs: Date.now() - healedAt,
      sessionsClosedTwice: x.sessionsClosedTwice,
      streamsOnClosedSessions: x.streamsOnClosedSessions,
      streamsAfterLetGo: x.streamsAfterLetGo,
      streamsWithoutClose: x.streamsWithoutClose.length,
      auditOk: (await rig.verifyAudit()).code === 0,
    };
  } finally {
    for (const f of freezers) f.close();
    await pg.destroy();
  }
}

/**
 * SIGKILL of the node holding share A, under load. Share B lives on another node, and its host and
 * guests dial that node directly, so nothing of theirs touches the killed one. A's guests (through
 * HAProxy) should resume without a new `y` once another node adopts A; B's streams should not notice.
 */
export async function sigkill(o: { guests: number; nodes?: number }): Promise<Figures> {
  const pg = await PrivatePg.start();
  try {
    const rig = await Rig.start(tmpDir(), { db: pg.url(), nodes: o.nodes ?? 3, haproxy: true });
    const a = await startWorkload(rig, o.guests, { name: "ha" });
    const victim = await until("the node holding share A", () => rig.nodes.find((n) => n.events("share.open").length));
    const other = rig.nodes.find((n) => n !== victim)!;
    const b = await startWorkload(rig, o.guests, { name: "hb", address: `localhost:${other.port}` });
    const killedAt = Date.now();
    victim.proc.kill("SIGKILL");
    await victim.proc.exit();
    const taker = await until(
      "another node to adopt share A",
      () => rig.nodes.find((n) => n !== victim && n.events("share.adopt").length > 0),
      120_000,
    );
    const adoptMs = Date.now() - killedAt;
    const back = await Promise.all(a.guests.map((g) => g.short.succeeded(1, 120_000)));
    const serviceBackMs = Math.max(...back.map((r) => r.at + r.ms - killedAt));
    await Promise.all(a.guests.map((g) => g.proc.waitFor(/resumed/, 60_000)));
    await Promise.all(b.guests.map((g) => g.long.echoedMore(2048)));
    await a.stop();
    await b.stop();
    // The killed node comes back on its own files, as a supervisor restarts it: streams it opened after its
    // last store batch (unknown to the adopting node) get their close lines from its own log (orphans.ts).
    const withoutCloseBeforeRestart = crossCheck(rig).streamsWithoutClose.length;
    await victim.start();
    await until(
      "the killed node to be ready again",
      async () => (await fetch(`http://127.0.0.1:${victim.http}/readyz`)).ok,
    );
    const fa = loadFigures(rig, a);
    const fb = loadFigures(rig, b);
    const asked = (a.host.all.match(/Allow /g) ?? []).length;
    return {
      killedNode: victim.name,
      withoutCloseBeforeRestart,
      takerNode: taker.name,
      adoptMs,
      serviceBackMs,
      aGuestsExited: fa.guestsExited,
      aGuestsResumed: a.guests.filter((g) => /resumed/.test(g.proc.all)).length,
      aPromptsShown: asked,
      aShortFailed: fa.shortFailed,
      bLongCut: fb.longCut,
      bLongCorrupt: fb.longCorrupt,
      bShortFailed: fb.shortFailed,
      bControlCuts: fb.controlCuts,
      sessionCloses: rig.all("session.close").length,
      streamsWithoutClose: crossCheck(rig).streamsWithoutClose.length,
      auditOk: (await rig.verifyAudit()).code === 0,
    };
  } finally {
    await pg.destroy();
  }
}

/**
 * A rolling restart: each node in turn gets SIGTERM (agents and guests move to the others, streams under
 * way run out within --drain-timeout), exits, and starts again before the next. Short streams (far shorter
 * than the drain timeout) should never fail; sessions should never end.
 */
export async function rolling(o: { guests: number; nodes?: number; drain?: string }): Promise<Figures> {
  const pg = await PrivatePg.start();
  try {
    const rig = await Rig.start(tmpDir(), {
      db: pg.url(),
      nodes: o.nodes ?? 3,
      haproxy: true,
      nodeArgs: ["--drain-timeout", o.drain ?? "5s"],
    });
    const w = await startWorkload(rig, o.guests);
    const stops: number[] = [];
    for (const n of rig.nodes) {
      const at = Date.now();
      n.proc.kill("SIGTERM");
      const code = await n.proc.exit(120_000);
      if (code !== 0) throw new Error(`node ${n.name} exited ${code} after SIGTERM:\n${n.proc.err.slice(-2000)}`);
      stops.push(Date.now() - at);
      await n.start();
      await until("the restarted node to be ready", async () => (await fetch(`http://127.0.0.1:${n.http}/readyz`)).ok);
      await Promise.all(w.guests.map((g) => g.short.succeeded(2, 120_000)));
    }
    await w.stop();
    // Kept beside the audit logs, for reading a failure afterwards.
    for (const g of w.guests) fs.writeFileSync(path.join(rig.dir, `${g.name}.log`), g.proc.all);
    fs.writeFileSync(path.join(rig.dir, "host.log"), w.host.all);
    for (const n of rig.nodes) fs.writeFileSync(path.join(rig.dir, `${n.name}.log`), n.earlier + n.proc.all);
    const shorts = w.guests.flatMap((g) => g.short.results.map((r) => ({ ...r, guest: g.name })));
    return {
      ...loadFigures(rig, w),
      rigDir: rig.dir,
      stopMs: stops.map(String),
      shortFailures: shorts.filter((r) => !r.ok).map((r) => `${r.guest} ${new Date(r.at).toISOString()} ${r.error}`),
      longestShortMs: Math.max(...shorts.map((r) => r.ms)),
      drains: rig.all("coordinator.drain").map((e) => `${e.node}: ${e.shares} share(s), ${e.streams} stream(s) left`),
      streamsWithoutClose: crossCheck(rig).streamsWithoutClose.length,
      auditOk: (await rig.verifyAudit()).code === 0,
    };
  } finally {
    await pg.destroy();
  }
}
