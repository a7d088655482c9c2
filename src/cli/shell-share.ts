// `share --shell`: the host's shell for each approved session, recorded by default, optionally
// watched (and driven, when read-only) from the host's own terminal.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ConfigError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { ControlClient } from "../wire/control-client.ts";
import { ShellHost, type ShellResult, type ShellSession } from "../shell/host.ts";
import type { Approver } from "./approver.ts";
import { homeDir } from "./home.ts";
import { HostConsole } from "./host-console.ts";

const log = logger("share");

export interface ShellShareArgs {
  command?: string;
  readOnly: boolean;
  watch: boolean;
  /** A directory, false for --no-record, undefined for the default (TESSERA_HOME/recordings). */
  record: string | boolean | undefined;
}

export class ShellShare {
  readonly host: ShellHost;
  readonly what: "shell" | "shell-watched" | "shell-read-only";
  readonly recordDir: string | undefined;
  private client: ControlClient | undefined;
  private console: HostConsole | undefined;

  constructor(private readonly args: ShellShareArgs) {
    const argv = args.command !== undefined ? commandArgv(args.command) : loginShell();
    this.recordDir = recordDir(args.record);
    this.what = args.readOnly ? "shell-read-only" : args.watch ? "shell-watched" : "shell";
    this.host = new ShellHost(
      { argv, readOnly: args.readOnly, recordDir: this.recordDir, env: process.env },
      {
        onStart: (s) => this.started(s),
        onEnd: (s, r) => this.ended(s, r),
        onInputDropped: (s) =>
          process.stderr.write(
            `\r\n[tessera] ${s.guestName} is typing, but this session is read-only: their keystrokes are ignored\r\n`,
          ),
      },
    );
  }

  /** Wires the share's control connection and prompt; read-only implies watching, since the host types. */
  bind(client: ControlClient, approver: Approver): void {
    this.client = client;
    if (this.args.watch || this.args.readOnly) this.console = new HostConsole(approver, (s) => this.endByHost(s));
  }

  /** After a reconnect: ending sessions goes over the new control connection. */
  rebind(client: ControlClient): void {
    this.client = client;
  }

  stop(): void {
    this.console?.close();
    this.host.stop();
  }

  private started(s: ShellSession): void {
    log.info(
      `session ${s.sessionId}: ${s.guestName} has a shell${s.readOnly ? " (read-only)" : ""}${s.recording ? `; recording to ${s.recording}` : ""}`,
    );
    this.console?.offer(s);
  }

  private ended(s: ShellSession, r: ShellResult): void {
    this.console?.gone(s);
    let how = r.error ?? (r.signal ? `the shell was killed by ${r.signal}` : `the shell exited with status ${r.code}`);
    if (s.readOnly) how += `; ${s.droppedBytes} bytes of guest input dropped (read-only)`;
    log.info(
      `session ${s.sessionId}: terminal closed (${how})${s.recording ? `; recording saved to ${s.recording}` : ""}`,
    );
    // The terminal was the session: end it at the coordinator too (a no-op if it is already over).
    this.client?.send({ t: "end", sessionId: s.sessionId });
  }

  private endByHost(s: ShellSession): void {
    this.client?.send({ t: "end", sessionId: s.sessionId });
    s.end("the host ended the session");
  }
}

function commandArgv(command: string): string[] {
  if (!command.trim() || command.includes("\0"))
    throw new ConfigError('--command must be a non-empty command line, e.g. --command "bash -l"');
  return ["/bin/sh", "-c", command];
}

/** The host user's login shell, started as a login shell, as sshd would. */
function loginShell(): string[] {
  let shell = process.env.SHELL;
  if (!shell) {
    try {
      shell = os.userInfo().shell ?? undefined;
    } catch {}
  }
  shell ||= "/bin/sh";
  try {
    fs.accessSync(shell, fs.constants.X_OK);
  } catch {
    throw new ConfigError(`your login shell ${shell} is not an executable file; name one with --command "bash -l"`);
  }
  return [shell, "-l"];
}

function recordDir(record: string | boolean | undefined): string | undefined {
  if (record === false) return undefined;
  const dir = typeof record === "string" && record !== "" ? path.resolve(record) : path.join(homeDir(), "recordings");
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (err) {
    throw new ConfigError(
      `cannot write recordings to ${dir}: ${errorMessage(err)}; pick another with --record DIR or turn recording off with --no-record`,
    );
  }
  return dir;
}
