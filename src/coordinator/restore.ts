// Sessions and scopes read back from the store (after a restart, or when a node adopts a share): checked
// like anything read from outside, since the database is only as trustworthy as its last writer.
import * as v from "valibot";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { SessionRow } from "../store/store.ts";
import { Scope } from "../wire/scope.ts";
import { Receipt } from "../pki/receipt.ts";
import type { LiveShare, Session } from "./state.ts";

const log = logger("coordinator");

/** A session the store holds open, back in memory: its guest is expected to resume. */
export function restoredSession(row: SessionRow, share: LiveShare, now: number): Session {
  return {
    id: row.id, share, detachedSince: now, restored: true, guestInfo: { name: row.guestName, addr: row.guestAddr, spki: row.guestSpki },
    target: row.target, openedAt: row.openedAt, streams: new Set(), streamCount: row.streams, up: row.bytesUp, down: row.bytesDown, lastActive: now, lastBytes: row.bytesUp + row.bytesDown,
    scope: storedScope(row.scope ?? null),
    receipt: storedReceipt(row.receipt ?? null),
  };
}

/** A stored scope, checked like anything read from outside; a damaged one is no scope at all, said loudly. */
function storedScope(json: string | null): Scope | undefined {
  if (json === null) return undefined;
  try {
    return v.parse(Scope, JSON.parse(json));
  } catch (err) {
    log.error(`a stored session scope is damaged (${errorMessage(err)}); the agent still holds the session to the scope it was given`);
    return undefined;
  }
}

/** A stored receipt, checked like the scope; a damaged one is dropped (the agent then refuses the session). */
function storedReceipt(json: string | null): Receipt | undefined {
  if (json === null) return undefined;
  try {
    return v.parse(Receipt, JSON.parse(json));
  } catch (err) {
    log.error(`a stored consent receipt is damaged (${errorMessage(err)}); the host's agent will refuse its session`);
    return undefined;
  }
}
