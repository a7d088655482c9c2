// Sessions and scopes read back from the store (after a restart, or when a node adopts a share): checked
// like anything read from outside, since the database is only as trustworthy as its last writer.
import * as v from "valibot";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { SessionRow } from "../store/store.ts";
import { Scope } from "../wire/scope.ts";
import { Receipt } from "../wire/receipt.ts";
import type { LiveShare, Session } from "./state.ts";

const log = logger("coordinator");

/** A session the store holds open, back in memory: its guest is expected to resume. */
export function restoredSession(row: SessionRow, share: LiveShare, now: number): Session {
  return {
    id: row.id,
    share,
    detachedSince: now,
    restored: true,
    guestInfo: { name: row.guestName, addr: row.guestAddr, spki: row.guestSpki },
    target: row.target,
    openedAt: row.openedAt,
    streams: new Set(),
    streamCount: row.streams,
    up: row.bytesUp,
    down: row.bytesDown,
    lastActive: now,
    lastBytes: row.bytesUp + row.bytesDown,
    scope: stored(Scope, row.scope, "session scope", "the agent still holds the session to the scope it was given"),
    receipt: stored(Receipt, row.receipt, "consent receipt", "the host's agent will refuse its session"),
  };
}

/**
 * A JSON column read back, checked like anything read from outside (the database is only as trustworthy as
 * its last writer); a damaged value is dropped and said loudly, with what follows from dropping it.
 */
function stored<S extends v.GenericSchema>(
  schema: S,
  json: string | null | undefined,
  what: string,
  consequence: string,
): v.InferOutput<S> | undefined {
  if (json == null) return undefined;
  try {
    return v.parse(schema, JSON.parse(json));
  } catch (err) {
    log.error(`a stored ${what} is damaged (${errorMessage(err)}); ${consequence}`);
    return undefined;
  }
}
