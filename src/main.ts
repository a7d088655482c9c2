#!/usr/bin/env bun
// Entry point: the root command with lazily loaded subcommands; the only place the process exits.
import "reflect-metadata"; // @peculiar/x509 needs the polyfill loaded before anything else
import { defineCommand, runCommand, type ArgsDef, type CommandDef } from "citty";
import { ConfigError, TesseraError, errorMessage } from "./errors.ts";
import { SUMMARIES } from "./commands/summaries.ts";
import { VERSION } from "./version.ts";

const main = defineCommand({
  meta: {
    name: "tessera",
    version: VERSION.replace(/^v/, ""),
    description:
      "Consent-gated remote access: share one local port or shell with one guest, for one session, with your explicit yes.",
  },
  subCommands: {
    ca: () => import("./commands/ca.ts").then((m) => m.default),
    coordinator: () => import("./commands/coordinator.ts").then((m) => m.default),
    link: () => import("./commands/link.ts").then((m) => m.default),
    share: () => import("./commands/share.ts").then((m) => m.default),
    agent: () => import("./commands/agent.ts").then((m) => m.default),
    join: () => import("./commands/join.ts").then((m) => m.default),
    connect: () => import("./commands/connect.ts").then((m) => m.default),
    token: () => import("./commands/token.ts").then((m) => m.default),
    revoke: () => import("./commands/revoke.ts").then((m) => m.default),
    admin: () => import("./commands/admin.ts").then((m) => m.default),
    replay: () => import("./commands/replay.ts").then((m) => m.default),
    receipt: () => import("./commands/receipt.ts").then((m) => m.default),
    approvers: () => import("./commands/approvers.ts").then((m) => m.default),
    approve: () => import("./commands/approve.ts").then((m) => m.default),
    version: () => import("./commands/version.ts").then((m) => m.default),
    mcp: () => import("./commands/mcp.ts").then((m) => m.default),
    audit: () => import("./commands/audit.ts").then((m) => m.default),
    "ssh-config": () => import("./commands/ssh-config.ts").then((m) => m.default),
  },
});

async function run(root: CommandDef, argv: string[]): Promise<number> {
  // `tessera help [CMD...]` is `tessera [CMD...] --help`.
  const rawArgs = argv[0] === "help" ? [...argv.slice(1), "--help"] : argv;
  try {
    // Words after `--` belong to the command a guest runs (`join CODE -- psql -h {host}`), not to us.
    const ours = rawArgs.includes("--") ? rawArgs.slice(0, rawArgs.indexOf("--")) : rawArgs;
    if (rawArgs.length === 1 && (rawArgs[0] === "--version" || rawArgs[0] === "-v")) {
      console.log(VERSION);
      return 0;
    }
    const { cmd, path, depth } = await resolve(root, ours);
    if (rawArgs.length === 0 || ours.some((a) => a === "--help" || a === "-h")) {
      const { renderUsage, usageOf } = await import("./cli/usage.ts");
      process.stdout.write(renderUsage(await usageOf(cmd, path, depth === 0 ? SUMMARIES : undefined)));
      // A command may add notes after its flags (`tessera mcp --help`: how to register it with MCP clients).
      const footer = (cmd as { footer?: () => string }).footer;
      if (footer) process.stdout.write(footer());
      // Bare `tessera` asked for nothing: the help, then a usage error's status, as git does.
      return rawArgs.length === 0 ? 2 : 0;
    }
    if (cmd.subCommands && !cmd.run && !(cmd as { default?: string }).default && depth > 0) {
      // `tessera admin` alone: which subcommands there are, rather than citty's bare "No command specified".
      const { renderUsage, usageOf } = await import("./cli/usage.ts");
      process.stderr.write(
        `error: say which \`tessera ${path}\` command to run\n\n${renderUsage(await usageOf(cmd, path))}`,
      );
      return 1;
    }
    if (!cmd.subCommands) {
      const { checkFlags } = await import("./cli/flags.ts");
      checkFlags(
        (typeof cmd.args === "function" ? await cmd.args() : await cmd.args) as ArgsDef,
        rawArgs.slice(depth),
        path,
      );
    }
    await runCommand(root, { rawArgs });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof TesseraError) {
      process.stderr.write(await fatal(err.message));
    } else if (err instanceof Error && err.name === "CLIError") {
      process.stderr.write(
        `error: ${err.message.replace(/\x1b\[[0-9;]*m/g, "")}\nrun \`tessera ${rawArgs[0] ?? ""} --help\` for usage\n`,
      );
    } else {
      process.stderr.write(await fatal(errorMessage(err)));
      if (process.env.TESSERA_DEBUG) console.error(err);
    }
    return 1;
  }
}

/** The logger (and consola) load only when something failed: `--help` and `--version` stay fast. */
async function fatal(message: string): Promise<string> {
  return (await import("./log.ts")).fatalLine(message);
}

/**
 * Follows the leading command words down to the deepest subcommand (loading only those). A first word
 * that names no command is an error with the closest command suggested; the root listing itself needs
 * only names and one-liners (SUMMARIES), so no command module loads for `tessera --help`.
 */
async function resolve(root: CommandDef, words: string[]): Promise<{ cmd: CommandDef; path: string; depth: number }> {
  let cmd = root;
  const path: string[] = [];
  for (const w of words) {
    if (w.startsWith("-") || !cmd.subCommands) break;
    const subs = (typeof cmd.subCommands === "function" ? await cmd.subCommands() : await cmd.subCommands) as Record<
      string,
      CommandDef | (() => Promise<CommandDef>)
    >;
    const sub = subs[w];
    if (!sub) {
      const { closest } = await import("./cli/flags.ts");
      const near = closest(w, Object.keys(subs));
      throw new ConfigError(
        `unknown command "${[...path, w].join(" ")}"${near ? `; did you mean \`tessera ${[...path, near].join(" ")}\`?` : ""} (see \`tessera ${path.join(" ")}${path.length ? " " : ""}--help\`)`,
      );
    }
    cmd = typeof sub === "function" ? await sub() : sub;
    path.push(w);
  }
  return { cmd, path: path.join(" "), depth: path.length };
}

const code = await run(main, process.argv.slice(2));
// Commands that keep running (coordinator, share, join) never reach here until they are done.
process.exit(code);
