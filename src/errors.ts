// Typed errors: every failure a user can see carries a stable code and a message they can act on.

/**
 * Every error code tessera uses, on the wire (error frames) and locally. A code is compared across
 * files and processes, so it is named here once; a coordinator of another version may still send one
 * this list does not know, which then reads as a plain refusal.
 */
export type ErrorCode =
  // the wire: a peer broke the protocol
  | "protocol"
  | "bad_frame"
  | "frame_too_large"
  | "flood"
  | "timeout"
  | "version"
  | "internal"
  // the coordinator refused a request
  | "rate_limited"
  | "bad_code"
  | "code_invalid"
  | "code_offline"
  | "bad_token"
  | "token_used"
  | "name_taken"
  | "token_expired"
  | "bad_csr"
  | "bad_identity"
  | "not_host"
  | "share_taken"
  | "share_busy"
  | "no_share"
  | "no_approver"
  | "no_request"
  | "still_pending"
  | "forbidden"
  | "bad_target"
  | "limit"
  | "no_session"
  | "no_channel"
  | "host_offline"
  | "replaced"
  | "bad_receipt"
  | "bad_delegation"
  | "not_confirmed"
  | "host_removed"
  // the coordinator's database cannot be reached now: retry (never a final answer)
  | "unavailable"
  // a coordinator node stopping on purpose: reconnect (through the balancer) now, keeping live streams;
  // sent as an error frame so that a client of an older version ignores it (then is cut at the drain's end)
  | "moving"
  // the code's PAKE: a wrong code, or a coordinator that swapped a key
  | "code_mismatch"
  | "key_mismatch"
  // a client's view of its connection and session
  | "connect"
  | "ca_mismatch"
  | "disconnected"
  | "detached"
  | "denied"
  | "closed"
  | "stream"
  | "listen"
  | "silent"
  | "bad_address"
  | "not_allowed"
  // local files, flags and tools
  | "config"
  | "pki"
  | "revoke"
  | "not_trusted"
  | "code_key"
  | "bad_recording"
  | "audit_broken"
  | "audit_full"
  | "audit_closed"
  | "in_use"
  // the operator's HTTP calls (admin, revoke)
  | "admin"
  | "unauthorized";

export class TesseraError extends Error {
  override name = "TesseraError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A peer sent something we refuse; the connection ends, the process does not. */
export class ProtocolError extends TesseraError {
  override name = "ProtocolError";
  constructor(message: string, code: ErrorCode = "protocol") {
    super(code, message);
  }
}

/** Local configuration (TESSERA_HOME, flags, files) is missing or wrong. */
export class ConfigError extends TesseraError {
  override name = "ConfigError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("config", message, options);
  }
}

/**
 * The coordinator refused a request; `code` is the refusal's code from the error frame. `ref` names
 * the request it answers (a stream's open), so one refused stream does not read as the session's end.
 */
export class RefusedError extends TesseraError {
  override name = "RefusedError";
  readonly ref: string | undefined;
  constructor(code: ErrorCode, message: string, options?: { ref?: string }) {
    super(code, message);
    this.ref = options?.ref;
  }
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
