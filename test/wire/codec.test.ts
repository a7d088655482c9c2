// Unit tests for src/wire/codec.ts (length-prefixed JSON frames) and src/wire/protocol.ts (frame schemas, targets).
import { describe, expect, test } from "bun:test";
import { encodeFrame, FrameDecoder } from "../../src/wire/codec.ts";
import { FramingError, framesBefore } from "../../src/wire/length-prefix.ts";
import { ClientFrame, MAX_FRAME_BYTES, ServerFrame } from "../../src/wire/protocol.ts";
import { formatTarget, parseTarget } from "../../src/wire/address.ts";
import { ProtocolError, TesseraError } from "../../src/errors.ts";

const PEM =
  "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2xhc3NpY1Rlc3RDZXJ0aWZpY2F0ZTAKBggqhkjOPQQDAjAS\nMRAwDgYDVQQDDAd0ZXNzZXJhMB4XDTMwMDEwMTAwMDAwMFoXDTMxMDEwMTAwMDAwMFow\n-----END CERTIFICATE-----\n";
const CSR =
  "-----BEGIN CERTIFICATE REQUEST-----\nMIHhMIGIAgEAMCYxJDAiBgNVBAMMG2d1ZXN0\n-----END CERTIFICATE REQUEST-----\n";
const SPKI = "SHA256:" + "Ab3+/xYz0123456789abcdefghijklmnopqrstuvwxy"; // 43 base64 chars
const TOKEN = "Ab3_-xYz0123456789abcdefghijklmnopqrstuvwxy"; // 43 base64url chars
const GUEST = { name: "alice laptop", addr: "203.0.113.7:51234", spki: SPKI };

const clientExamples: ClientFrame[] = [
  { t: "hello", v: 1, client: "tessera-agent/0.1.0" },
  { t: "enroll", token: "TSE1.0a1b2c3d.secret.abc", csr: CSR, name: "db-host" },
  { t: "register", shareId: "share_1", targets: ["127.0.0.1:5432", "[::1]:22", "db.internal:5432"], approver: true },
  { t: "register", shareId: "share_2", targets: ["127.0.0.1:5432"], approver: false, requestsById: true },
  { t: "attach", shareId: "share-2.x" },
  { t: "attach", shareId: "share-2.x", approve: false },
  {
    t: "attach-approver",
    delegation: {
      body: {
        v: 1,
        id: "d-1",
        name: "laptop",
        hostName: "build-01",
        approverPub: "QUJD",
        shares: ["db"],
        issuedAt: 1,
        expiresAt: 2,
        hostPub: "REVG",
      },
      sig: "c2ln",
    },
    shareId: "db",
    at: 1,
    proof: "cHJvb2Y=",
  },
  { t: "mint", shareId: "share_1", target: "127.0.0.1:5432" },
  { t: "decision", requestId: "req.42", allow: false },
  {
    t: "redeem",
    code: "ABCD",
    csr: CSR,
    name: "bob",
    reason: "debugging the\nmigration",
    pake: { sid: "c2lk", msg: "bXNn" },
  },
  { t: "request", shareId: "share_1", target: "localhost:80", csr: CSR, name: "carol", reason: "" },
  { t: "pake", requestId: "req1", msg: "bXNn", hostSpki: SPKI },
  { t: "confirmed", requestId: "req1", tag: "dGFn" },
  { t: "confirm", requestId: "req1", tag: "dGFn" },
  { t: "confirm", requestId: "req1" },
  { t: "decision", requestId: "req1", allow: false, mismatch: true },
  { t: "end", sessionId: "sess_1", reason: "refused by the guest" },
  { t: "open", sessionId: "sess_1", ref: "r1" },
  { t: "open", sessionId: "sess_1", ref: "k1", channel: true },
  { t: "open", sessionId: "sess_1", ref: "c1", via: "c_1", mux: [1, 2, 4294967295] },
  { t: "end", sessionId: "sess_1" },
  { t: "leave", shareId: "share_1" },
  { t: "refuse", sessionId: "sess_1", streamId: "t_1", reason: "cannot resolve db.internal" },
  { t: "resume", sessionId: "sess_1" },
  { t: "recheck", requestId: "req_1" },
  { t: "status", shareId: "share_1" },
  {
    t: "hints",
    sessionId: "sess_1",
    hints: [
      { host: "192.168.1.20", port: 40001 },
      { host: "fd00::1", port: 40001 },
    ],
    key: "AAAA",
    sig: "AAAA",
  },
  { t: "direct", sessionId: "sess_1", ok: true, offered: 2, dialled: 1, refused: 1, over: 0 },
  { t: "direct-stream", sessionId: "sess_1", reports: [{ streamId: "st1", state: "closed", up: 10, down: 20 }] },
  { t: "ping" },
  { t: "pong" },
  { t: "error", code: "not_allowed", message: "nope" },
];

const serverExamples: ServerFrame[] = [
  { t: "welcome", v: 1, server: "tessera-coordinator/0.1.0", ca: PEM, heartbeat: { pingMs: 15_000, deadMs: 45_000 } },
  { t: "enrolled", cert: PEM },
  { t: "registered", shareId: "share_1", targets: ["127.0.0.1:5432"] },
  { t: "code", shareId: "share_1", nameplate: "ABCD", target: "127.0.0.1:5432", expiresAt: 1_900_000_000_000 },
  {
    t: "ask",
    requestId: "req1",
    shareId: "share_1",
    guest: GUEST,
    target: "127.0.0.1:5432",
    reason: "please",
    deadline: 1_900_000_000_000,
    pake: { nameplate: "ABCD", sid: "c2lk", msg: "bXNn" },
  },
  { t: "pake", requestId: "req2", msg: "bXNn", hostSpki: SPKI },
  { t: "confirmed", requestId: "req2", tag: "dGFn" },
  { t: "confirm", requestId: "req2" },
  { t: "cancel", requestId: "req1", reason: "timed out" },
  { t: "pending", requestId: "req1", target: "[::1]:22" },
  {
    t: "approved",
    requestId: "req1",
    sessionId: "sess_1",
    cert: PEM,
    hostSpki: SPKI,
    target: "127.0.0.1:5432",
    idleTimeoutSec: 1800,
  },
  { t: "denied", requestId: "req1", reason: "no" },
  { t: "session", sessionId: "sess_1", shareId: "share_1", target: "127.0.0.1:5432", guest: GUEST },
  { t: "incoming", sessionId: "sess_1", streamId: "st1", token: TOKEN },
  { t: "incoming", sessionId: "sess_1", streamId: "c1", token: TOKEN, channel: true },
  { t: "incoming", sessionId: "sess_1", streamId: "st1", via: "c1", mux: 4294967295, reportMs: 250 },
  { t: "path", sessionId: "sess_1", path: "direct" },
  { t: "stream", sessionId: "sess_1", streamId: "st1", token: TOKEN, ref: "r1" },
  { t: "incoming", sessionId: "sess_1", streamId: "st2", token: TOKEN, direct: TOKEN, reportMs: 2500 },
  { t: "stream", sessionId: "sess_1", streamId: "st2", token: TOKEN, ref: "r2", direct: TOKEN },
  { t: "hints", sessionId: "sess_1", hints: [{ host: "10.0.0.2", port: 40001 }], key: "AAAA", sig: "AAAA" },
  { t: "fallback", sessionId: "sess_1", streamId: "st2" },
  { t: "closed", sessionId: "sess_1", reason: "idle" },
  {
    t: "resumed",
    sessionId: "sess_1",
    target: "127.0.0.1:5432",
    idleTimeoutSec: 1800,
    restarted: true,
    hostOnline: false,
  },
  { t: "left", shareId: "share_1" },
  { t: "notice", code: "audit_full", message: "the coordinator's audit disk is full" },
  {
    t: "refused",
    sessionId: "sess_1",
    streamId: "str_1",
    reason: "the host's 127.0.0.1:5432 refused the connection (is anything listening there?)",
  },
  {
    t: "status",
    shareId: "share_1",
    online: true,
    targets: ["127.0.0.1:5432"],
    more: 0,
    requests: 1,
    sessions: [
      {
        sessionId: "sess_1",
        guest: "alice",
        addr: "203.0.113.7:51234",
        target: "127.0.0.1:5432",
        streams: 2,
        up: 10,
        down: 20,
        idleSec: 3,
        away: false,
        path: "direct",
      },
    ],
  },
  { t: "ping" },
  { t: "pong" },
  { t: "error", code: "rate_limited", message: "slow down", ref: "r1" },
];

/** Runs fn, expecting it to throw a ProtocolError; returns the error. */
function protocolError(fn: () => unknown): ProtocolError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ProtocolError);
  return caught as ProtocolError;
}

/** A raw length-prefixed frame from an arbitrary body, bypassing encodeFrame. */
function rawFrame(body: string | Buffer): Buffer {
  const b = typeof body === "string" ? Buffer.from(body, "utf8") : body;
  const h = Buffer.alloc(4);
  h.writeUInt32BE(b.length, 0);
  return Buffer.concat([h, b]);
}

describe("schema coverage", () => {
  test("examples cover every ClientFrame and ServerFrame variant", () => {
    const clientTypes = ClientFrame.options.map((o) => o.entries.t.literal).sort();
    const serverTypes = ServerFrame.options.map((o) => o.entries.t.literal).sort();
    expect([...new Set(clientExamples.map((f) => f.t))].sort()).toEqual(clientTypes);
    expect([...new Set(serverExamples.map((f) => f.t))].sort()).toEqual(serverTypes);
  });
});

describe("encodeFrame", () => {
  test("writes a u32 big-endian length then the UTF-8 JSON", () => {
    const f = { t: "error", code: "x", message: "héllo ✓" };
    const out = encodeFrame(f);
    const body = Buffer.from(JSON.stringify(f), "utf8");
    expect(out.readUInt32BE(0)).toBe(body.length);
    expect(out.length).toBe(4 + body.length);
    expect(out.subarray(4).equals(body)).toBe(true);
  });

  test("refuses a frame whose JSON exceeds MAX_FRAME_BYTES", () => {
    const big = { t: "error", code: "x", message: "a".repeat(MAX_FRAME_BYTES) };
    const err = protocolError(() => encodeFrame(big));
    expect(err.code).toBe("frame_too_large");
  });

  test("accepts a frame of exactly MAX_FRAME_BYTES", () => {
    const overhead = JSON.stringify({ m: "" }).length;
    const f = { m: "a".repeat(MAX_FRAME_BYTES - overhead) };
    const out = encodeFrame(f);
    expect(out.readUInt32BE(0)).toBe(MAX_FRAME_BYTES);
  });
});

describe("round trip", () => {
  for (const f of clientExamples) {
    test(`ClientFrame "${f.t}"`, () => {
      const dec = new FrameDecoder(ClientFrame);
      expect(dec.push(encodeFrame(f))).toEqual([f]);
      expect(dec.rest().length).toBe(0);
    });
  }
  for (const f of serverExamples) {
    test(`ServerFrame "${f.t}"`, () => {
      const dec = new FrameDecoder(ServerFrame);
      expect(dec.push(encodeFrame(f))).toEqual([f]);
      expect(dec.rest().length).toBe(0);
    });
  }

  test("several frames in one chunk decode in order", () => {
    const dec = new FrameDecoder(ServerFrame);
    const stream = Buffer.concat(serverExamples.map(encodeFrame));
    expect(dec.push(stream)).toEqual(serverExamples);
  });

  test("a stream fed one byte at a time yields the same frames in order", () => {
    const dec = new FrameDecoder(ClientFrame);
    const stream = Buffer.concat(clientExamples.map(encodeFrame));
    const got: ClientFrame[] = [];
    for (let i = 0; i < stream.length; i++) {
      const out = dec.push(stream.subarray(i, i + 1));
      // A frame can only complete on its last byte, and never more than one per byte.
      expect(out.length).toBeLessThanOrEqual(1);
      got.push(...out);
    }
    expect(got).toEqual(clientExamples);
    expect(dec.rest().length).toBe(0);
  });

  test("a partial frame yields nothing until it completes", () => {
    const dec = new FrameDecoder(ClientFrame);
    const enc = encodeFrame({ t: "ping" });
    expect(dec.push(enc.subarray(0, 3))).toEqual([]);
    expect(dec.push(enc.subarray(3, enc.length - 1))).toEqual([]);
    expect(dec.push(enc.subarray(enc.length - 1))).toEqual([{ t: "ping" }]);
  });
});

describe("FrameDecoder errors", () => {
  test("a length prefix of MAX_FRAME_BYTES + 1 throws frame_too_large from the header alone", () => {
    const dec = new FrameDecoder(ClientFrame);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
    const err = protocolError(() => dec.push(header));
    expect(err.code).toBe("frame_too_large");
  });

  test("a length prefix of exactly MAX_FRAME_BYTES waits for the body", () => {
    const dec = new FrameDecoder(ClientFrame);
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_FRAME_BYTES, 0);
    expect(dec.push(header)).toEqual([]);
  });

  test("invalid JSON is bad_frame", () => {
    const dec = new FrameDecoder(ClientFrame);
    const err = protocolError(() => dec.push(rawFrame("{not json")));
    expect(err.code).toBe("bad_frame");
  });

  test("invalid UTF-8 / non-JSON bytes are bad_frame", () => {
    const dec = new FrameDecoder(ClientFrame);
    const err = protocolError(() => dec.push(rawFrame(Buffer.from([0xff, 0xfe, 0x00]))));
    expect(err.code).toBe("bad_frame");
  });

  test("an unknown frame type is bad_frame naming the type", () => {
    const dec = new FrameDecoder(ClientFrame);
    const err = protocolError(() => dec.push(encodeFrame({ t: "launch_missiles" })));
    expect(err.code).toBe("bad_frame");
    expect(err.message).toContain('"launch_missiles"');
  });

  test("a server-only frame type is refused by the client schema", () => {
    const dec = new FrameDecoder(ClientFrame);
    const err = protocolError(() => dec.push(encodeFrame(serverExamples[0]!)));
    expect(err.code).toBe("bad_frame");
    expect(err.message).toContain('"welcome"');
  });

  test("an extra property is bad_frame (strict objects)", () => {
    const dec = new FrameDecoder(ClientFrame);
    const err = protocolError(() => dec.push(encodeFrame({ t: "attach", shareId: "s1", admin: true })));
    expect(err.code).toBe("bad_frame");
    expect(err.message).toContain('"attach"');
  });

  test("an extra property in a nested object is bad_frame", () => {
    const dec = new FrameDecoder(ServerFrame);
    const f = { t: "session", sessionId: "s", shareId: "s", target: "h:1", guest: { ...GUEST, extra: 1 } };
    const err = protocolError(() => dec.push(encodeFrame(f)));
    expect(err.code).toBe("bad_frame");
    expect(err.message).toContain('"session"');
  });

  test("a wrong field type is bad_frame naming the type and field", () => {
    const dec = new FrameDecoder(ClientFrame);
    const err = protocolError(() => dec.push(encodeFrame({ t: "decision", requestId: "r1", allow: "yes" })));
    expect(err.code).toBe("bad_frame");
    expect(err.message).toContain('"decision"');
    expect(err.message).toContain("allow");
  });

  test("a missing field is bad_frame", () => {
    const dec = new FrameDecoder(ClientFrame);
    const err = protocolError(() => dec.push(encodeFrame({ t: "end" })));
    expect(err.code).toBe("bad_frame");
    expect(err.message).toContain('"end"');
  });

  test("field constraints are enforced (id pattern, spki, token, pem, target)", () => {
    const bad: [typeof ClientFrame | typeof ServerFrame, object][] = [
      [ClientFrame, { t: "attach", shareId: "has space" }],
      [ClientFrame, { t: "attach", shareId: "x".repeat(65) }],
      [ClientFrame, { t: "attach", shareId: "" }],
      [ClientFrame, { t: "mint", shareId: "s", target: "no-port" }],
      [ClientFrame, { t: "register", shareId: "s", targets: [], approver: false }],
      [ClientFrame, { t: "enroll", token: "t", csr: "not a pem", name: "n" }],
      [ClientFrame, { t: "enroll", token: "t", csr: CSR, name: "bad\u0001name" }],
      [ClientFrame, { t: "hello", v: 1.5, client: "c" }],
      [ServerFrame, { t: "incoming", sessionId: "s", streamId: "s", token: TOKEN.slice(1) }],
      [ServerFrame, { t: "incoming", sessionId: "s", streamId: "s", token: `${TOKEN.slice(1)}+` }],
      [
        ServerFrame,
        {
          t: "approved",
          requestId: "r",
          sessionId: "s",
          cert: PEM,
          hostSpki: "SHA256:short",
          target: "h:1",
          idleTimeoutSec: 1,
        },
      ],
      [ServerFrame, { t: "code", shareId: "s", code: "c", target: "h:1", expiresAt: -1 }],
      // Version 2: a pending frame no longer names the share (issue 12, item 6).
      [ServerFrame, { t: "pending", requestId: "r", shareId: "s", target: "h:1" }],
    ];
    for (const [schema, f] of bad) {
      const dec = new FrameDecoder(schema);
      const err = protocolError(() => dec.push(encodeFrame(f)));
      expect(err.code).toBe("bad_frame");
    }
  });

  test("non-object JSON is bad_frame", () => {
    for (const body of ["null", "42", '"ping"', "[]"]) {
      const dec = new FrameDecoder(ClientFrame);
      expect(protocolError(() => dec.push(rawFrame(body))).code).toBe("bad_frame");
    }
  });

  test("once failed, every later push throws the same error", () => {
    const dec = new FrameDecoder(ClientFrame);
    const first = protocolError(() => dec.push(rawFrame("{oops")));
    expect(first.code).toBe("bad_frame");
    // Even perfectly valid input afterwards is refused with the identical error object.
    expect(() => dec.push(encodeFrame({ t: "ping" }))).toThrow(first);
    let again: unknown;
    try {
      dec.push(new Uint8Array(0));
    } catch (err) {
      again = err;
    }
    expect(again).toBe(first);
  });

  // Found by the property tests (test/props/wire-framing.test.ts, split points): frames completed in the
  // same read as the bad bytes were dropped, so whether a peer's last good frame was acted on depended on
  // where TCP cut the stream. They now come with the error, exactly as when they arrive in a read of their own.
  test("frames before the bad one in the same chunk come with the error, and the decoder stays failed", () => {
    const dec = new FrameDecoder(ClientFrame);
    const chunk = Buffer.concat([encodeFrame({ t: "ping" }), encodeFrame({ t: "pong" }), rawFrame("nope")]);
    const err = protocolError(() => dec.push(chunk));
    expect(err.code).toBe("bad_frame");
    expect(err).toBeInstanceOf(FramingError);
    expect(framesBefore(err)).toEqual([{ t: "ping" }, { t: "pong" }]);
    let later: unknown;
    try {
      dec.push(encodeFrame({ t: "pong" }));
    } catch (e) {
      later = e;
    }
    expect((later as ProtocolError).message).toBe(err.message);
    expect(framesBefore(later)).toEqual([]);
    // Byte by byte, the same frames then the same error.
    const one = new FrameDecoder(ClientFrame);
    const got: unknown[] = [];
    let end: ProtocolError | undefined;
    for (const b of chunk) {
      try {
        got.push(...one.push(Uint8Array.of(b)));
      } catch (e) {
        end = e as ProtocolError;
        break;
      }
    }
    expect(got).toEqual(framesBefore(err));
    expect(end?.message).toBe(err.message);
  });

  test("a header past the limit right after a whole frame (the shrunk property case) still yields that frame", () => {
    const frame = { t: "code", shareId: "_", nameplate: "JJKV", target: "shell", expiresAt: 0 };
    const err = protocolError(() =>
      new FrameDecoder(ServerFrame).push(Buffer.concat([encodeFrame(frame), Buffer.from([0, 1, 0, 1])])),
    );
    expect(err.code).toBe("frame_too_large");
    expect(framesBefore(err)).toEqual([frame]);
  });
});

describe("FrameDecoder.rest", () => {
  test("returns the bytes after the last whole frame", () => {
    const dec = new FrameDecoder(ClientFrame);
    const tail = Buffer.from([0x16, 0x03, 0x01]); // fewer than 4 bytes: not yet a header
    const out = dec.push(Buffer.concat([encodeFrame({ t: "ping" }), encodeFrame({ t: "end", sessionId: "s1" }), tail]));
    expect(out).toEqual([{ t: "ping" }, { t: "end", sessionId: "s1" }]);
    expect(dec.rest().equals(tail)).toBe(true);
  });

  test("returns a trailing partial frame intact", () => {
    const dec = new FrameDecoder(ClientFrame);
    const next = encodeFrame({ t: "attach", shareId: "s1" });
    const partial = next.subarray(0, next.length - 2);
    expect(dec.push(Buffer.concat([encodeFrame({ t: "pong" }), partial]))).toEqual([{ t: "pong" }]);
    expect(dec.rest().equals(partial)).toBe(true);
    // And the frame completes when the rest arrives.
    expect(dec.push(next.subarray(next.length - 2))).toEqual([{ t: "attach", shareId: "s1" }]);
    expect(dec.rest().length).toBe(0);
  });

  test("is empty after a clean frame boundary and holds a partial header", () => {
    const dec = new FrameDecoder(ClientFrame);
    expect(dec.rest().length).toBe(0);
    dec.push(encodeFrame({ t: "ping" }));
    expect(dec.rest().length).toBe(0);
    dec.push(Buffer.from([0, 0]));
    expect(dec.rest().equals(Buffer.from([0, 0]))).toBe(true);
  });
});

describe("parseTarget / formatTarget", () => {
  test("accepts HOST:PORT and [IPv6]:PORT", () => {
    expect(parseTarget("127.0.0.1:5432")).toEqual({ host: "127.0.0.1", port: 5432 });
    expect(parseTarget("localhost:80")).toEqual({ host: "localhost", port: 80 });
    expect(parseTarget("[::1]:22")).toEqual({ host: "::1", port: 22 });
    expect(parseTarget("[2001:db8::1]:65535")).toEqual({ host: "2001:db8::1", port: 65535 });
    expect(parseTarget("db.internal:1")).toEqual({ host: "db.internal", port: 1 });
  });

  test("rejects missing host, missing port and out-of-range ports", () => {
    for (const bad of [
      "host",
      "host:0",
      "host:70000",
      "host:65536",
      ":80",
      "host:",
      "[::1]",
      "::1:22",
      "host:80:90",
      "ho st:80",
      "",
    ]) {
      expect(() => parseTarget(bad)).toThrow(TesseraError);
    }
  });

  test("formatTarget brackets IPv6 and round-trips through parseTarget", () => {
    expect(formatTarget("127.0.0.1", 5432)).toBe("127.0.0.1:5432");
    expect(formatTarget("::1", 22)).toBe("[::1]:22");
    for (const [host, port] of [
      ["::1", 22],
      ["fe80::1", 8080],
      ["example.com", 443],
      ["10.0.0.1", 1],
    ] as const) {
      expect(parseTarget(formatTarget(host, port))).toEqual({ host, port });
    }
  });
});
