// The sessions an AI agent holds as a guest: each asks with a code and a reason, waits for the human
// host's answer (reporting progress meanwhile), then forwards a loopback port or keeps a shell channel.
// Bounded: a few sessions and requests at a time, and everything ends when the MCP server does.
import { TesseraError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { Guest, type Approved } from "../guest/guest.ts";
import type { DialOptions } from "../wire/control-client.ts";
import { SHELL_TARGET } from "../wire/protocol.ts";
import { formatTarget } from "../wire/address.ts";
import { parseInvite, parseLocal, type AccessRequestInput } from "./schemas.ts";
import { ShellChannel } from "./shell-channel.ts";

const log = logger("mcp");
/** Open sessions plus requests in flight, per MCP server. */
export const MAX_SESSIONS = 8;
/** Ended sessions still listed (with why they ended) until access_close forgets them. */
const MAX_ENDED = 16;
/** How often a waiting request reports that it is still waiting. */
const PROGRESS_EVERY_MS = 5_000;

export interface GuestDeps {
  /** How hosts see this agent at their prompt. */
  name: string;
  /** Dial options for a coordinator: the invite's address, or the linked one; always the linked CA. */
  dial(address?: string): DialOptions;
  /** The machine's long-term guest identity key (PKCS#8 PEM), so hosts know this agent again. */
  identityKeyPem?: string;
}

export interface Granted {
  session: string;
  target: string;
  /** HOST:PORT to connect to, for a port share. */
  local?: string;
  shell?: { readOnly: boolean; recorded: boolean };
  idleTimeoutSec: number;
}

export interface SessionView {
  session: string;
  target: string;
  local?: string;
  shell: boolean;
  openedAt: string;
  /** Why it ended; absent while open. */
  ended?: string;
}

interface Entry {
  id: string;
  target: string;
  guest: Guest;
  local?: string;
  shell?: ShellChannel;
  openedAt: number;
  ended?: string;
}

export class GuestSessions {
  private readonly entries = new Map<string, Entry>();
  private asking = 0;

  constructor(private readonly deps: GuestDeps) {}

  /** Asks the host; resolves once they approve, rejects with why not (denied, refused, timed out, cancelled). */
  async request(
    input: AccessRequestInput,
    progress: (message: string) => void,
    signal?: AbortSignal,
  ): Promise<Granted> {
    const open = [...this.entries.values()].filter((e) => !e.ended).length;
    if (open + this.asking >= MAX_SESSIONS) {
      throw new TesseraError(
        "limit",
        `this MCP server already holds ${MAX_SESSIONS} sessions and requests; close one with access_close first`,
      );
    }
    const { address, code } = parseInvite(input.invite);
    const local = parseLocal(input.local);
    const dial = this.deps.dial(address);
    this.asking++;
    let guest: Guest | undefined;
    let entry: Entry | undefined;
    try {
      progress(`connecting to the coordinator at ${dial.address}`);
      guest = await Guest.connect(dial, {
        onPending: (f) =>
          progress(
            `asked the host for ${describe(f.target)} (request ${f.requestId}); waiting for them to answer at their terminal`,
          ),
        onStreamError: (m) => log.warn(m),
        onDetached: (m) => log.warn(m),
        onClosed: (reason) => {
          if (entry) this.ended(entry, reason);
        },
      });
      const approved = await waitForAnswer(
        guest,
        { code, name: this.deps.name, reason: input.reason, identityKeyPem: this.deps.identityKeyPem },
        progress,
        input.timeout_s,
        signal,
      );
      entry = { id: approved.sessionId, target: approved.target, guest, openedAt: Date.now() };
      const granted: Granted = {
        session: approved.sessionId,
        target: approved.target,
        idleTimeoutSec: approved.idleTimeoutSec,
      };
      if (approved.target === SHELL_TARGET) {
        progress("approved; opening the remote terminal");
        const g = guest;
        entry.shell = await ShellChannel.open(() => g.openStream());
        granted.shell = { readOnly: entry.shell.readOnly, recorded: entry.shell.recorded };
      } else {
        const bound = await guest.listen(local.host, local.port);
        entry.local = granted.local = formatTarget(bound.host, bound.port);
      }
      this.entries.set(entry.id, entry);
      this.trimEnded();
      log.info(`session ${entry.id} open: ${entry.target}${entry.local ? ` at ${entry.local}` : ""}`);
      return granted;
    } catch (err) {
      if (guest) await guest.close(entry ? "the agent could not use the session" : "the agent withdrew the request");
      throw err;
    } finally {
      this.asking--;
    }
  }

  list(): SessionView[] {
    return [...this.entries.values()].map((e) => ({
      session: e.id,
      target: e.target,
      local: e.local,
      shell: !!e.shell,
      openedAt: new Date(e.openedAt).toISOString(),
      ended: e.ended,
    }));
  }

  /** Ends a session for everyone (the host hears of it at once) and forgets it. */
  async close(id: string): Promise<string> {
    const e = this.get(id);
    this.entries.delete(id);
    if (e.ended) return `session ${id} had already ended (${e.ended}); forgotten`;
    e.shell?.close();
    e.ended = "closed by the agent";
    await e.guest.close("the guest's agent closed the session");
    return `session ${id} closed`;
  }

  /** The shell channel of an open shell session. */
  shell(id: string): ShellChannel {
    const e = this.get(id);
    if (!e.shell)
      throw new TesseraError(
        "not_allowed",
        `session ${id} forwards ${e.target}${e.local ? ` at ${e.local}` : ""}; it is not a shell (connect to that address instead)`,
      );
    return e.shell;
  }

  /** Why the session ended, if it has (the shell's buffered output stays readable). */
  endedWhy(id: string): string | undefined {
    return this.get(id).ended;
  }

  async closeAll(): Promise<void> {
    const open = [...this.entries.values()].filter((e) => !e.ended);
    this.entries.clear();
    await Promise.all(
      open.map((e) => {
        e.shell?.close();
        return e.guest.close("the guest's agent stopped").catch((err) => log.warn(errorMessage(err)));
      }),
    );
  }

  private get(id: string): Entry {
    const e = this.entries.get(id);
    if (!e)
      throw new TesseraError("no_session", `no session "${id}" here; access_list shows the sessions this server holds`);
    return e;
  }

  private ended(e: Entry, reason: string): void {
    if (e.ended) return;
    e.ended = reason;
    e.shell?.close();
    log.info(`session ${e.id} ended: ${reason}`);
  }

  private trimEnded(): void {
    const ended = [...this.entries.values()].filter((e) => e.ended);
    for (const e of ended.slice(0, Math.max(0, ended.length - MAX_ENDED))) this.entries.delete(e.id);
  }
}

/**
 * guest.request, with progress every few seconds while the host thinks, the agent's own time limit, and
 * cancellation (the MCP client gave up): both withdraw the request, which the coordinator audits.
 */
async function waitForAnswer(
  guest: Guest,
  req: { code: string; name: string; reason: string; identityKeyPem?: string },
  progress: (m: string) => void,
  timeoutS: number | undefined,
  signal?: AbortSignal,
): Promise<Approved> {
  const started = Date.now();
  const answer = guest.request(req);
  let stop!: (err: Error) => void;
  const stopped = new Promise<never>((_, reject) => (stop = reject));
  const beat = setInterval(
    () => progress(`still waiting for the host to answer (${Math.round((Date.now() - started) / 1000)}s so far)`),
    PROGRESS_EVERY_MS,
  );
  const timer = timeoutS
    ? setTimeout(
        () =>
          stop(
            new TesseraError(
              "timeout",
              `the host did not answer within ${timeoutS}s; the request was withdrawn. Ask again later only if you still need access`,
            ),
          ),
        timeoutS * 1000,
      )
    : undefined;
  const onAbort = () => stop(new TesseraError("closed", "the request was cancelled by the MCP client and withdrawn"));
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) onAbort();
  try {
    return await Promise.race([answer, stopped]);
  } finally {
    clearInterval(beat);
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    // A late answer after we stopped waiting: the caller closes the guest, which ends a session approved meanwhile.
    answer.catch(() => {});
  }
}

function describe(target: string): string {
  return target === SHELL_TARGET ? "a shell" : target;
}
