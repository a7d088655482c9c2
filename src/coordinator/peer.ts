// A connection as the coordinator's rules see it: who it is (host, returning guest, nobody yet) and the
// two things the rules do to it, send a frame or refuse it.
import type { TesseraError } from "../errors.ts";
import type { ServerFrame } from "../wire/protocol.ts";

/** What the broker needs of a peer's connection: a Channel in production, a recording fake in unit tests. */
export interface PeerLink {
  send(frame: ServerFrame): void;
  /** Refuse the peer with an error frame and close its connection. */
  fail(err: TesseraError): void;
  /** Answer one frame with an error frame, keeping the connection (a Channel does). */
  sendError?(err: TesseraError, ref?: string): void;
  /** Close without an error: the client reconnects (its share moved to another node). */
  close?(): void;
}

export interface Peer {
  readonly id: string;
  readonly addr: string;
  readonly ch: PeerLink;
  /** Set when the peer presented an enrolled host certificate. */
  readonly host?: { spki: string; name: string };
  /** Set when the peer presented a guest certificate issued for a session (a guest coming back). */
  readonly guest?: { sessionId: string; spki: string };
  helloed: boolean;
  /** When its last frame was answered `unavailable` (the database down): it is trying to do work, not idling. */
  retryingSince?: number;
  /** Set when the peer attached as a delegated approver: the name its host gave it ("answered by NAME"). */
  approverName?: string;
}
