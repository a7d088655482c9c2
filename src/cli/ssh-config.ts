// The `Host` block `tessera ssh-config` prints: ssh reaches the share through `join --stdio` as its
// ProxyCommand, so the user's own agent, keys and certificates do the ssh authentication untouched.
import { ConfigError } from "../errors.ts";
import { formatCode, normalizeCode } from "../wire/codes.ts";
import { splitInvite } from "./invite.ts";
import { parseTarget } from "../wire/address.ts";

export interface SshConfigOptions {
  via: { code: string } | { shareId: string; target: string };
  /** The name to type after `ssh`; also the name ssh files the host key under in known_hosts. */
  alias?: string;
  /** Shown to the host; ssh expands %r, %h, %p and %n in it for each connection. */
  reason?: string;
  /** How to start tessera: the executable (and, when not compiled, the script). */
  exe: string[];
  /** Baked into the command when set, so ssh started from elsewhere still finds this machine's files. */
  home?: string;
  platform: string;
}

/** ssh expands these in ProxyCommand; any other %x is an error to ssh, so it is escaped. */
const SSH_TOKEN = /(%[%rhpn])/;
const DEFAULT_REASON = "ssh %r@%h:%p";

export function sshConfigBlock(o: SshConfigOptions): string {
  const windows = o.platform === "win32";
  const words: string[] = [...o.exe.map(literal)];
  let alias: string;
  if ("code" in o.via) {
    // The host's invite (HOST:PORT/CODE) works too: the block then needs no `tessera link` either.
    const invite = splitInvite(o.via.code);
    const code = normalizeCode(invite.code);
    if (!code)
      throw new ConfigError(
        `"${o.via.code}" is not a code: 8 characters like K7QF-M2XD, or an invite HOST:PORT/K7QF-M2XD`,
      );
    words.push("join", "--stdio", invite.address ? `${invite.address}/${formatCode(code)}` : formatCode(code));
    alias = o.alias ?? `tessera-${code.toLowerCase()}`;
  } else {
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(o.via.shareId))
      throw new ConfigError(`--share-id "${o.via.shareId}" must be letters, digits, dot, dash or underscore`);
    let t: { port: number };
    try {
      t = parseTarget(o.via.target);
    } catch (err) {
      throw new ConfigError(`--target: ${(err as Error).message}`);
    }
    words.push("connect", "--stdio", "--share-id", o.via.shareId, "--target", o.via.target);
    alias = o.alias ?? `${o.via.shareId}-${t.port}`;
  }
  // A Host pattern word: no spaces, wildcards, negation or lists, so the alias matches only itself.
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(alias))
    throw new ConfigError(`--alias "${alias}" must be 1-64 letters, digits, dot, dash or underscore`);
  words.push("--reason", o.reason === undefined ? DEFAULT_REASON : keepTokens(o.reason));
  const command = words.map((w) => quote(w, windows)).join(" ");
  const env = o.home && !windows ? `env TESSERA_HOME=${quote(literal(o.home), false)} ` : "";
  // Comment lines fit 80 columns, as the block is read in a terminal and in ~/.ssh/config.
  const note =
    "code" in o.via
      ? [
          "# The code is single use: this block works for one connection;",
          "# ask the host for a new code (and block) next time.",
        ]
      : ["# Each connection asks the host again; the host types y at their", "# `tessera share` prompt."];
  return [
    "# tessera: ssh to the host's shared port; your own ssh keys, agent and",
    "# certificates authenticate as usual.",
    ...note,
    `Host ${alias}`,
    `  ProxyCommand ${env}${command}`,
    "",
  ].join("\n");
}

/** A word ssh must pass through as is: every % doubled. */
function literal(word: string): string {
  return word.replaceAll("%", "%%");
}

/** Keeps ssh's own tokens, doubles any other %, so `50% done` stays text and `%r` becomes the user. */
function keepTokens(text: string): string {
  return text
    .split(SSH_TOKEN)
    .map((part, i) => (i % 2 === 1 ? part : literal(part)))
    .join("");
}

/** Quotes a word for the shell ssh runs ProxyCommand with (sh -c; CreateProcess on Windows). */
function quote(word: string, windows: boolean): string {
  if (/^[A-Za-z0-9_./:@%=+,-]+$/.test(word)) return word;
  if (windows) return `"${word.replaceAll('"', '\\"')}"`;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}
