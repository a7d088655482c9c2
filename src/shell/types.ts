// What a shared shell is given and reports: the host's options, the session it serves, a terminal's end.
export interface ShellOptions {
  /** The program to run in the PTY, e.g. the host's login shell. */
  argv: string[];
  /** The guest watches; only the host's own keystrokes (hostInput) reach the PTY. */
  readOnly: boolean;
  /** Directory for asciicast recordings; undefined turns recording off. */
  recordDir?: string;
  env: Record<string, string | undefined>;
}

export interface ShellResult {
  code: number | null;
  signal: string | null;
  /** Why it ended early, when it did not end by the shell exiting. */
  error?: string;
}

export interface ShellSessionInfo {
  sessionId: string;
  guest: { name: string };
  /** The host answered `ro` for this guest alone: read-only whatever the share's own setting. */
  readOnly?: boolean;
}
