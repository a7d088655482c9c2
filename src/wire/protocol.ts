// The control-plane wire format: every frame type, defined once as a valibot schema.
import * as v from "valibot";
import { Scope } from "./scope.ts";
import { Receipt } from "./receipt.ts";
import { Delegation } from "../pki/delegation.ts";

/**
 * 6: the coordinator's "notice" to hosts (its audit disk is full, has room again).
 * 7: the guest confirms first (`pake` carries no host tag; the host's comes in `confirmed`), `session` names its request.
 * 8: `attach-approver` and delegated receipts (a host's yes given on another device).
 * 9: one data channel per session: `open` asks for the channel or names a stream on it (`via`, `mux`); the
 *    agent's `incoming` for such a stream has no token; no pool, no `use`.
 */
export const PROTOCOL_VERSION = 9;
/** Hard cap on one control frame, checked before a byte of it is buffered. */
export const MAX_FRAME_BYTES = 64 * 1024;
/** Data-plane preamble: magic (never 0x16, so it can't be mistaken for a TLS ClientHello) + 32-byte token. */
export const DATA_MAGIC = Buffer.from("TSR1");
export const STREAM_TOKEN_BYTES = 32;
export const PREAMBLE_BYTES = DATA_MAGIC.length + STREAM_TOKEN_BYTES;

const id = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be 1-64 letters, digits, '.', '_' or '-'"));
/**
 * A name (a guest's, a host's): no C0/C1 control, bidi control, zero-width or tag character, nor line
 * separators or lone surrogates (Unicode Cc, Cf, Zl, Zp, Cs): a name that would read differently on a screen
 * than it is has no honest use. Screens escape such characters anyway (untrusted-text.ts).
 */
const name = v.pipe(
  v.string(),
  v.minLength(1),
  v.maxLength(64),
  v.regex(/^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Cs}]+$/u, "must not contain control, bidi, zero-width or tag characters"),
);
/** A guest's reason, in characters: the frames' cap (text(500) below), also checked before sending so the guest reads it in these words. */
export const MAX_REASON_CHARS = 500;
/** What a reason or other free text may not contain: control characters other than tab and newline. */
export const TEXT_CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;
const text = (max: number) =>
  v.pipe(v.string(), v.maxLength(max), v.regex(/^[^\x00-\x08\x0b-\x1f\x7f]*$/, "must not contain control characters"));
const pem = v.pipe(v.string(), v.maxLength(16 * 1024), v.startsWith("-----BEGIN "));
/** The target of a shell share: an interactive terminal on the host, not a network address. */
export const SHELL_TARGET = "shell";
/** HOST:PORT or [IPv6]:PORT (parsed properly by parseTarget), or the literal SHELL_TARGET. */
export const target = v.pipe(
  v.string(),
  v.maxLength(300),
  v.regex(/^(shell|(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5})$/, "must be HOST:PORT or shell"),
);
const spki = v.pipe(v.string(), v.regex(/^SHA256:[A-Za-z0-9+/]{43}$/));
const token = v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{43}$/));
const code = v.pipe(v.string(), v.maxLength(32));
const nameplate = v.pipe(v.string(), v.regex(/^[0-9A-HJKMNP-TV-Z]{4}$/, "must be a code's first 4 characters"));
/** PAKE fields: opaque to the coordinator, which relays them (base64url of a ristretto255 element, a MAC, a nonce). */
const b64 = (max: number) => v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]*$/), v.maxLength(max));
const pakeStart = v.strictObject({ sid: b64(32), msg: b64(64) });
/** A guest's long-term identity key (base64 SPKI DER) and its signature over this request (pki/identity.ts). */
const b64std = (max: number) => v.pipe(v.string(), v.maxLength(max), v.regex(/^[A-Za-z0-9+/=]+$/));
export const identityProof = v.strictObject({ pub: b64std(400), sig: b64std(200) });
const epochMs = v.pipe(v.number(), v.integer(), v.minValue(0));

const frame = <T extends string, E extends v.ObjectEntries>(t: T, entries: E) =>
  v.strictObject({ t: v.literal(t), ...entries });

export const guestInfo = v.strictObject({ name, addr: text(80), spki });
const count = v.pipe(v.number(), v.integer(), v.minValue(0));
/** Most streams one `open` frame names. */
export const MAX_OPENS_IN_FRAME = 256;
/** A stream's number inside a data channel (wire/mux-frames.ts): u32, never 0. */
const muxId = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(0xffffffff));
/** Most sessions one status frame lists (the rest are counted in `more`), so it stays far below the frame cap. */
export const MAX_STATUS_SESSIONS = 100;
/** One session as the coordinator sees it: who, what, how much, and whether the guest is connected. */
const sessionView = v.strictObject({
  sessionId: id,
  guest: name,
  addr: text(80),
  target,
  streams: count,
  up: count,
  down: count,
  idleSec: count,
  away: v.boolean(),
  path: v.optional(v.picklist(["direct", "relay"])),
});
/** An IP literal (never a name: the agent resolves nothing a guest names) and port a side may be reached on (version 5). */
export const hint = v.strictObject({
  host: v.pipe(v.string(), v.maxLength(45), v.regex(/^[0-9A-Fa-f:.]+$/, "must be an IP address")),
  port: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65535)),
});
/** Most hints one frame may carry: far above what the agent dials (its cap), so an excess is seen and audited, not cut off unseen. */
export const MAX_HINTS_IN_FRAME = 1024;
/** Direct-path hints signed with the offering side's session key (wire/hints.ts); the coordinator relays them unchanged (version 5). */
const hintFields = {
  sessionId: id,
  hints: v.pipe(v.array(hint), v.maxLength(MAX_HINTS_IN_FRAME)),
  key: b64std(400),
  sig: b64std(200),
};
/** Who dials a direct stream when it is not the agent. */
const dialer = v.literal("guest");
/** Most stream reports one frame carries: a burst of streams is reported in a few frames, not a flood of them. */
export const MAX_STREAM_REPORTS = 256;
/**
 * Reports on a session's direct streams, batched: verified and moving ("open", with the bytes so far), done
 * with the agent's byte counts ("closed"), or not reachable by the side that dials ("failed": the relay instead).
 */
const streamReport = v.strictObject({
  streamId: id,
  state: v.picklist(["open", "closed", "failed"]),
  up: v.optional(count),
  down: v.optional(count),
  reason: v.optional(text(200)),
});
export type StreamReport = v.InferOutput<typeof streamReport>;

/** Frames a client (agent, share, guest, link) sends to the coordinator. */
export const ClientFrame = v.variant("t", [
  frame("hello", { v: v.pipe(v.number(), v.integer()), client: text(64) }),
  frame("enroll", { token: v.pipe(v.string(), v.maxLength(256)), csr: pem, name }),
  /** requestsById: guests may ask by share id, without a code (`--allow-requests-by-id`); off when absent. */
  frame("register", {
    shareId: id,
    targets: v.pipe(v.array(target), v.minLength(1), v.maxLength(64)),
    approver: v.boolean(),
    requestsById: v.optional(v.boolean()),
  }),
  /** approve: false attaches mint-only (`tessera mcp`): it may mint codes, never answer a request (version 2). */
  frame("attach", { shareId: id, approve: v.optional(v.boolean()) }),
  /**
   * A delegated approver (`tessera approve`) attaches to its host's shares: the host's delegation, and its own key's
   * signature over the delegation id and the time (pki/delegation.ts attachProof); shareId: one share, else every
   * live share of that host the delegation names (version 8).
   */
  frame("attach-approver", { delegation: Delegation, shareId: v.optional(id), at: epochMs, proof: b64std(200) }),
  frame("mint", { shareId: id, target: v.optional(target) }),
  /**
   * scope: a scoped yes (`y 15m`, `y 1`, `ro`); reason: a no with words the guest sees (`n too busy`);
   * mismatch: the guest's key confirmation failed, so the code is burnt and nobody is connected.
   */
  frame("decision", {
    requestId: id,
    allow: v.boolean(),
    scope: v.optional(Scope),
    reason: v.optional(text(200)),
    mismatch: v.optional(v.boolean()),
    receipt: v.optional(Receipt),
  }),
  /** code is the nameplate only; pake is the guest's CPace share, for the host (version 3). */
  frame("redeem", { code, csr: pem, name, reason: text(500), pake: pakeStart, identity: v.optional(identityProof) }),
  /** The host's CPace share and the key the guest is to pin, for the guest; no tag: the guest confirms first (version 6). */
  frame("pake", { requestId: id, msg: b64(64), hostSpki: spki }),
  /** The guest's confirmation, for the host; absent when the host's share did not decode (version 3). */
  frame("confirm", { requestId: id, tag: v.optional(b64(128)) }),
  /** The host's confirmation, sent only once the guest's checked out, for the guest (version 6). */
  frame("confirmed", { requestId: id, tag: b64(128) }),
  /** identity: the guest's long-term key and its signature over this request; the host checks it (version 3). */
  frame("request", { shareId: id, target, csr: pem, name, reason: text(500), identity: v.optional(identityProof) }),
  /**
   * channel: the session's data channel (one connection, one end-to-end TLS: the reply is a `stream` with its
   * tokens); it carries no audit line of its own. via + mux: streams on channel `via` (the channel's stream id),
   * by their numbers in it, as many as the guest opened in one turn (a burst is a few frames, not a flood);
   * each is audited, and the agent admits it only on the coordinator's word; a refusal names `ref.N` (version 9).
   */
  frame("open", {
    sessionId: id,
    ref: v.pipe(v.string(), v.regex(/^[A-Za-z0-9_-]{1,48}$/, "must be 1-48 letters, digits, '_' or '-'")),
    channel: v.optional(v.literal(true)),
    via: v.optional(id),
    mux: v.optional(v.pipe(v.array(muxId), v.minLength(1), v.maxLength(MAX_OPENS_IN_FRAME))),
  }),
  /** reason: why a side refused the session (a key the code did not confirm), for the other side to read (version 3). */
  frame("end", { sessionId: id, reason: v.optional(text(200)) }),
  /** The host stops: from the agent it closes the share, from an approver the sessions it approved. */
  frame("leave", { shareId: id }),
  /** The agent will not serve a stream it was offered (its own target policy): end it now, not at the token's expiry. */
  frame("refuse", { sessionId: id, streamId: id, reason: text(200) }),
  /** A guest back after losing the coordinator, on a connection authenticated by its session certificate. */
  frame("resume", { sessionId: id }),
  /** A guest that lost the coordinator while waiting asks what became of its request. */
  frame("recheck", { requestId: id }),
  /** The share's host asks what the coordinator knows of it: live sessions, waiting requests (version 2). */
  /** ref: set by a poller (the host's live view), so a refusal never answers another frame's wait. */
  frame("status", { shareId: id, ref: v.optional(id) }),
  /** Direct path (version 5): the guest's signed hints; the agent's probe outcome (counts for the audit line); its direct streams' reports. */
  frame("hints", hintFields),
  /** kept: the path this agent proved before it reconnected, not probed again (each hint is dialled once a session). */
  frame("direct", {
    sessionId: id,
    ok: v.boolean(),
    offered: count,
    dialled: count,
    refused: count,
    over: count,
    reason: v.optional(text(200)),
    kept: v.optional(v.boolean()),
  }),
  frame("direct-stream", {
    sessionId: id,
    reports: v.pipe(v.array(streamReport), v.minLength(1), v.maxLength(MAX_STREAM_REPORTS)),
  }),
  frame("ping", {}),
  frame("pong", {}),
  frame("error", { code: id, message: text(1000) }),
]);
export type ClientFrame = v.InferOutput<typeof ClientFrame>;

/** Frames the coordinator sends to clients. */
export const ServerFrame = v.variant("t", [
  /** heartbeat: how this coordinator pings a quiet connection and when it calls one silent; clients do the same. */
  frame("welcome", {
    v: v.number(),
    server: text(64),
    ca: pem,
    heartbeat: v.strictObject({
      pingMs: v.pipe(v.number(), v.integer(), v.minValue(100)),
      deadMs: v.pipe(v.number(), v.integer(), v.minValue(200)),
    }),
  }),
  frame("enrolled", { cert: pem }),
  /** requestsById: told to an attaching approver, which shows asks without a code only then (version 6). */
  frame("registered", { shareId: id, targets: v.array(target), requestsById: v.optional(v.boolean()) }),
  /** The nameplate only: the minter adds its own secret half (version 3). */
  frame("code", { shareId: id, nameplate, target, expiresAt: epochMs }),
  /** pake: the guest's CPace share for a code's nameplate; absent for a request by share id (version 3). */
  frame("ask", {
    requestId: id,
    shareId: id,
    guest: guestInfo,
    target,
    reason: text(500),
    deadline: epochMs,
    pake: v.optional(v.strictObject({ nameplate, ...pakeStart.entries })),
    identity: v.optional(identityProof),
  }),
  frame("pake", { requestId: id, msg: b64(64), hostSpki: spki }),
  frame("confirm", { requestId: id, tag: v.optional(b64(128)) }),
  frame("confirmed", { requestId: id, tag: b64(128) }),
  frame("cancel", { requestId: id, reason: text(200) }),
  /** No share id: it would let a code holder ask again by id, without a code (version 2). */
  frame("pending", { requestId: id, target }),
  frame("approved", {
    requestId: id,
    sessionId: id,
    cert: pem,
    hostSpki: spki,
    target,
    idleTimeoutSec: v.number(),
    scope: v.optional(Scope),
    receipt: v.optional(Receipt),
  }),
  frame("denied", { requestId: id, reason: text(200) }),
  /**
   * openedAt: when the host approved it, so the agent holds a time-scoped session to that clock; requestId: the
   * request the host's yes answered, which the receipt must name (version 6).
   */
  frame("session", {
    sessionId: id,
    requestId: v.optional(id),
    shareId: id,
    target,
    guest: guestInfo,
    scope: v.optional(Scope),
    openedAt: v.optional(epochMs),
    receipt: v.optional(Receipt),
  }),
  /**
   * channel: the session's data channel, to be served on a data connection (token, or the direct token when
   * `direct`: the relay's stays for a fallback). via + mux: stream `mux` of channel `via`, opened and audited:
   * the agent may reach the target for it now (no token: it is no connection of its own). reportMs: how often
   * the agent reports bytes (the idle clock needs them) (version 9).
   */
  frame("incoming", {
    sessionId: id,
    streamId: id,
    token: v.optional(token),
    direct: v.optional(token),
    dialer: v.optional(dialer),
    reportMs: v.optional(count),
    channel: v.optional(v.literal(true)),
    via: v.optional(id),
    mux: v.optional(muxId),
  }),
  /** dialer "guest": the host listens (`share --direct-listen`) and the guest dials it; otherwise the agent dials the guest. */
  frame("stream", {
    sessionId: id,
    streamId: id,
    token,
    ref: id,
    direct: v.optional(token),
    dialer: v.optional(dialer),
  }),
  /** The guest's signed hints, relayed to the agent (version 5). */
  frame("hints", hintFields),
  /** A direct stream could not be set up: the side waiting for it takes it through the relay with the stream's own token (version 5). */
  frame("fallback", { sessionId: id, streamId: id }),
  /**
   * The path the session's new streams take, said when it changes, when the host's agent is back after a
   * reconnect, and when a node the channel may pass through is stopping: the guest opens a fresh channel on
   * it (a direct one it already has is kept), and the old one ends once its streams have (version 9).
   */
  frame("path", { sessionId: id, path: v.picklist(["direct", "relay"]) }),
  frame("closed", { sessionId: id, reason: text(200) }),
  frame("resumed", {
    sessionId: id,
    target,
    idleTimeoutSec: v.number(),
    restarted: v.boolean(),
    hostOnline: v.boolean(),
  }),
  frame("left", { shareId: id }),
  /**
   * Something the host should know that ends nothing: the coordinator's audit disk is full (new requests and
   * streams are refused, open sessions go on) or has room again (version 6). Shown, never acted on.
   */
  frame("notice", { code: id, message: text(500) }),
  /** The host's agent could not serve a stream it was offered (its target refused, its policy said no): the guest is told why. */
  frame("refused", { sessionId: id, streamId: id, reason: text(200) }),
  /** idleTimeoutSec: how long a session may be idle before it ends, for the host's countdown (version 4). */
  frame("status", {
    shareId: id,
    online: v.boolean(),
    targets: v.array(target),
    sessions: v.pipe(v.array(sessionView), v.maxLength(MAX_STATUS_SESSIONS)),
    more: count,
    requests: count,
    idleTimeoutSec: v.optional(count),
  }),
  frame("ping", {}),
  frame("pong", {}),
  frame("error", { code: id, message: text(1000), ref: v.optional(id) }),
]);
export type ServerFrame = v.InferOutput<typeof ServerFrame>;

export type FrameOf<F extends { t: string }, T extends F["t"]> = Extract<F, { t: T }>;
