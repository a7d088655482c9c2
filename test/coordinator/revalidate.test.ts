// Session re-validation: the rules one by one (pure), then the periodic check on a real Broker ending
// sessions whose condition failed, with that condition as the reason on both ends and in the audit log.
import { afterEach, describe, expect, test } from "bun:test";
import { sessionFails, shareFails, type CheckContext } from "../../src/coordinator/revalidate.ts";
import type { LiveShare, Peer, Session } from "../../src/coordinator/state.ts";
import { World, until } from "./fake-peers.ts";

const GRACE = 1000;
const IDLE = 5000;
const NOW = 1_000_000;

function world(
  over: { share?: Partial<LiveShare>; session?: Partial<Session>; removed?: string[]; replaced?: boolean } = {},
) {
  const share = {
    id: "web",
    hostSpki: "SHA256:host",
    hostName: "box",
    targets: ["127.0.0.1:22"],
    agent: {} as Peer,
    approvers: new Set(),
    requests: new Set(),
    sessions: new Set(),
    ...over.share,
  } as LiveShare;
  const session = {
    id: "s-1",
    share,
    guest: {} as Peer,
    restored: false,
    guestInfo: { name: "alice", addr: "10.0.0.1:1", spki: "SHA256:g" },
    target: "127.0.0.1:22",
    openedAt: NOW - 10_000,
    streams: new Set(),
    streamCount: 0,
    up: 0,
    down: 0,
    lastActive: NOW - 1000,
    lastBytes: 0,
    ...over.session,
  } as Session;
  const shares = new Map([["web", over.replaced ? { ...share } : share]]);
  const c: CheckContext = {
    now: NOW,
    limits: { resumeGraceMs: GRACE, idleTimeoutMs: IDLE },
    removed: new Set(over.removed ?? []),
    shares,
  };
  return { share, session, c };
}

describe("the rules", () => {
  test("a session whose every condition holds stands", () => {
    const { session, share, c } = world();
    expect(sessionFails(session, c)).toBeUndefined();
    expect(shareFails(share, c)).toBeUndefined();
  });

  test("each condition alone ends a session and is named", () => {
    const away = { agent: undefined, offlineSince: NOW - GRACE };
    const cases: [Parameters<typeof world>[0], string, string][] = [
      [{ removed: ["SHA256:host"] }, "host_removed", "the host was removed by the operator"],
      [{ replaced: true }, "share_closed", "the host stopped sharing"],
      [{ share: away }, "agent_away", "the host's agent disconnected"],
      [{ session: { guest: undefined, detachedSince: NOW - GRACE } }, "guest_away", "the guest disconnected"],
      [
        { session: { guest: undefined, detachedSince: NOW - GRACE, restored: true } },
        "guest_away",
        "the guest did not come back after the coordinator restarted",
      ],
      [{ share: { targets: ["127.0.0.1:80"] } }, "scope", "the host no longer offers this target"],
      [{ session: { lastActive: NOW - IDLE } }, "idle", "idle for 5s"],
    ];
    for (const [over, condition, reason] of cases) {
      const { session, c } = world(over);
      expect({ over, failed: sessionFails(session, c) }).toEqual({
        over,
        failed: { condition: condition as never, reason },
      });
    }
  });

  test("within the grace an away agent or guest is no failure", () => {
    const agent = world({ share: { agent: undefined, offlineSince: NOW - GRACE + 1 } });
    expect(sessionFails(agent.session, agent.c)).toBeUndefined();
    expect(shareFails(agent.share, agent.c)).toBeUndefined();
    const guest = world({ session: { guest: undefined, detachedSince: NOW - GRACE + 1 } });
    expect(sessionFails(guest.session, guest.c)).toBeUndefined();
  });

  test("the first failed condition is the one named: removed, share, agent, guest, scope, idle", () => {
    const all = {
      share: { agent: undefined, offlineSince: 0, targets: ["x:1"] },
      session: { guest: undefined, detachedSince: 0, lastActive: 0 },
    };
    const order = ["host_removed", "share_closed", "agent_away", "guest_away", "scope", "idle"];
    const named: string[] = [];
    // Lift the conditions one at a time, from the first: each time the next one is named.
    const steps: Parameters<typeof world>[0][] = [
      { ...all, removed: ["SHA256:host"], replaced: true },
      { ...all, replaced: true },
      all,
      { ...all, share: { targets: ["x:1"] } },
      { share: { targets: ["x:1"] }, session: { lastActive: 0 } },
      { session: { lastActive: 0 } },
    ];
    for (const step of steps) {
      const { session, c } = world(step);
      named.push(sessionFails(session, c)!.condition);
    }
    expect(named).toEqual(order);
  });
});

let w: World;
afterEach(async () => {
  await w?.close();
  w = undefined!;
});

describe("the periodic check on a real broker", () => {
  test("an agent away past the grace: its sessions end, named agent_away in the audit log, on the guest's and the approver's terminals", async () => {
    w = await World.open({ resumeGraceMs: 100, revalidateMs: 20 });
    const s = await w.session();
    const approver = await w.hello(w.peer({ host: s.host.host }));
    await w.send(approver, { t: "attach", shareId: "web" });
    w.broker.drop(s.host);
    const reason = "the host's agent disconnected";
    expect((await s.guest.ch.wait("closed")).reason).toBe(reason);
    expect((await approver.ch.wait("closed")).reason).toBe(reason);
    expect(w.one("session.close")).toMatchObject({ sessionId: s.sessionId, reason, condition: "agent_away" });
    expect(w.one("share.close")).toMatchObject({ shareId: "web", condition: "agent_away" });
  });

  test("a guest away past the grace: its session ends, named guest_away, and the host hears why", async () => {
    w = await World.open({ resumeGraceMs: 100, revalidateMs: 20 });
    const s = await w.session();
    w.broker.drop(s.guest);
    expect((await s.host.ch.wait("closed")).reason).toBe("the guest disconnected");
    expect(w.one("session.close")).toMatchObject({ sessionId: s.sessionId, condition: "guest_away" });
    expect(w.names()).not.toContain("share.close");
  });

  test("an idle session ends, named idle, after its session.idle line", async () => {
    w = await World.open({ idleTimeoutMs: 100, revalidateMs: 20 });
    const s = await w.session();
    expect((await s.guest.ch.wait("closed")).reason).toBe("idle for 0.1s");
    expect(w.one("session.close")).toMatchObject({ condition: "idle" });
    expect(w.names().indexOf("session.idle")).toBeLessThan(w.names().indexOf("session.close"));
  });

  test("a host removed by another node (straight in the shared store) is cut at the next check", async () => {
    w = await World.open({ revalidateMs: 20 });
    const s = await w.session();
    expect(await w.store.removeHost(s.host.host!.spki, "operator on another node", Date.now())).toBe(true);
    expect((await s.guest.ch.wait("closed")).reason).toBe("the host was removed by the operator");
    await until(() => s.host.ch.failures.length > 0, "the host's connection to be refused");
    expect(s.host.ch.failures.map((e) => e.code)).toEqual(["host_removed"]);
    expect(s.host.ch.failures[0]!.message).toContain("enrol it again with a new token");
    expect(w.one("session.close")).toMatchObject({ condition: "host_removed" });
  });
});
