// Unit tests for src/host/scopes.ts: the agent holds a scoped yes itself, whatever the coordinator says.
import { expect, test } from "bun:test";
import { ScopeKeeper } from "../../src/host/scopes.ts";
import type { FrameOf, ServerFrame } from "../../src/wire/protocol.ts";

const frame = (
  scope: FrameOf<ServerFrame, "session">["scope"],
  openedAt?: number,
): FrameOf<ServerFrame, "session"> => ({
  t: "session",
  sessionId: "s-1",
  shareId: "web",
  target: "127.0.0.1:5432",
  guest: { name: "a", addr: "127.0.0.1:1", spki: `SHA256:${"A".repeat(43)}` },
  scope,
  openedAt,
});

test("y 1: one stream, however many the coordinator offers, also after a reconnect re-sends the session", () => {
  const k = new ScopeKeeper();
  k.seen(frame({ streams: 1 }), 1000, () => {});
  expect(k.take("s-1", 1001)).toBeUndefined();
  k.seen(frame({ streams: 1 }), 2000, () => {}); // the agent reconnected; the coordinator tells it again
  expect(k.take("s-1", 2001)).toBe("the host allowed one connection in this session, and it is used");
  k.forget("s-1");
});

test("a time scope runs from the earlier of the coordinator's word and the agent's own first sight", () => {
  const k = new ScopeKeeper();
  let expired = "";
  // A coordinator claiming a later approval than the agent saw cannot lengthen the session.
  k.seen(frame({ ttlMs: 10_000 }, 999_999_999), 5_000, (id) => (expired = id));
  expect(k.take("s-1", 14_999)).toBeUndefined();
  expect(k.take("s-1", 15_000)).toBe("the host allowed this session 10s, and that is over");
  expect(expired).toBe("");
  k.forget("s-1");
});

test("ro reaches the shell service; a session without scope is not held", () => {
  const k = new ScopeKeeper();
  k.seen(frame({ readOnly: true }), 0, () => {});
  expect(k.readOnly("s-1")).toBe(true);
  k.seen({ ...frame(undefined), sessionId: "s-2" }, 0, () => {});
  expect(k.take("s-2", 1)).toBeUndefined();
  expect(k.readOnly("s-2")).toBe(false);
  k.forget("s-1");
});
