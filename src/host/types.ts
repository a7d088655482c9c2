// What the agent's parts share: a session as the agent holds it, the events it reports, and what takes
// a verified stream instead of a TCP target (the shell).
import type { Duplex } from "node:stream";
import type { Socket } from "bun";
import type { End } from "../data/pipe.ts";
import type { ControlClient } from "../wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";

/** Something on the host that takes a verified end-to-end stream directly instead of a TCP target. */
export interface StreamService {
  serve(stream: Duplex, session: { sessionId: string; guest: { name: string }; readOnly?: boolean }): void;
  /** The coordinator closed the session (its streams merely dropping does not mean that). */
  closed?(sessionId: string, reason: string): void;
}

export interface AgentSession {
  frame: FrameOf<ServerFrame, "session">;
  /** Every live socket of the session's streams, so a session's end cuts them all at once. */
  streams: Set<Socket<End>>;
  /** The guest certificate (DER) already checked against the approved key: later streams compare bytes, not parse. */
  checked?: Buffer;
  /** Streams offered and not yet verified (or dropped): each may hold a target connection. */
  settingUp: number;
}

export interface AgentEvents {
  onConnected?(client: ControlClient): void;
  /** retryInMs is undefined when the agent gives up (stopped, or refused for good). */
  onDisconnected?(err: Error | undefined, retryInMs: number | undefined): void;
  onStream?(sessionId: string, error?: string): void;
}
