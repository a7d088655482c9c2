#!/usr/bin/env bun
// Entry point: the root command with lazily loaded subcommands; the only place the process exits.
import "reflect-metadata"; // @peculiar/x509 needs the polyfill loaded before anything else
import { defineCommand, runCommand, showUsage, type CommandDef } from "citty";
import { TesseraError, errorMessage } from "./errors.ts";
import { SUMMARIES } from "./commands/summaries.ts";
import { VERSION } from "./version.ts";

const main = defineCommand({
  meta: { name: "tessera", version: VERSION.replace(/^v/, ""), description: "Consent-gated remote access: share one local port or shell with one guest, for one session, with your explicit yes." },
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
    replay: () => import("./commands/replay.ts").then((m) => m.default),
    version: () => import("./commands/version.ts").then((m) => m.default),
    mcp: () => import("./commands/mcp.ts").then((m) => m.default),
    audit: () => import("./commands/audit.ts").then((m) => m.default),
    "ssh-config": () => import("./commands/ssh-config.ts").then((m) => m.default),
  },
});

async function run(cmd: CommandDef, rawArgs: string[]): Promise<number> {
  try {
    // Words after `--` belong to the command a guest runs (`join CODE -- psql -h {host}`), not to us.
    const ours = rawArgs.includes("--") ? rawArgs.slice(0, rawArgs.indexOf("--")) : rawArgs;
    if (rawArgs.length === 0 || ours.some((a) => a === "--help" || a === "-h")) {
      const [shown, parent] = await resolveForHelp(cmd, rawArgs);
      await showUsage(shown, parent);
      // A command may add notes after its flags (`tessera mcp --help`: how to register it with MCP clients).
      const footer = (shown as { footer?: () => string }).footer;
      if (footer) process.stdout.write(footer());
      return 0;
    }
    if (rawArgs.length === 1 && (rawArgs[0] === "--version" || rawArgs[0] === "-v")) {
      console.log(VERSION);
      return 0;
    }
    await runCommand(cmd, { rawArgs });
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof TesseraError) {
      process.stderr.write(await fatal(err.message));
    } else if (err instanceof Error && err.name === "CLIError") {
      process.stderr.write(`error: ${err.message}\nrun \`tessera ${rawArgs[0] ?? ""} --help\` for usage\n`);
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

/** Follows `tessera a b --help` down to the deepest named subcommand. */
async function resolveForHelp(cmd: CommandDef, rawArgs: string[]): Promise<[CommandDef, CommandDef?]> {
  let parent: CommandDef | undefined;
  for (const name of rawArgs.filter((a) => !a.startsWith("-"))) {
    const subs = (cmd.subCommands ?? {}) as Record<string, CommandDef | (() => Promise<CommandDef>)>;
    const sub = subs[name];
    if (!sub) break;
    parent = cmd;
    cmd = typeof sub === "function" ? await sub() : sub;
  }
  if (parent) return [cmd, parent];
  // The root listing needs only names and one-liners: stand-ins keep every command module unloaded.
  const subs = (cmd.subCommands ?? {}) as Record<string, () => Promise<CommandDef>>;
  const listed = Object.fromEntries(Object.entries(subs).map(([n, load]) =>
    [n, SUMMARIES[n] ? defineCommand({ meta: { name: n, description: SUMMARIES[n] } }) : load]));
  return [{ ...cmd, subCommands: listed }];
}

const code = await run(main, process.argv.slice(2));
// Commands that keep running (coordinator, share, join) never reach here until they are done.
process.exit(code);
