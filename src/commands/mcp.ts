// `tessera mcp`: serve AI agents over the Model Context Protocol (stdio); only the human host approves.
import path from "node:path";
import { defineCommand, type CommandDef } from "citty";
import { loadGuestIdentity } from "../cli/guest-identity.ts";
import { ConfigError } from "../errors.ts";
import { coordinatorAddress, homeDir, readCa, readHostIdentity } from "../cli/home.ts";
import { mcpSetup } from "../cli/mcp-setup.ts";
import { osUser } from "../cli/os-user.ts";
import { untilInterrupted } from "../cli/signals.ts";
import { VERSION } from "../version.ts";

const command = defineCommand({
  meta: {
    name: "mcp",
    description:
      "Serve AI agents over MCP (stdio): they ask for access with a reason or mint invites; only the human host approves",
  },
  args: {
    name: {
      type: "string",
      description: 'How hosts see this agent at their prompt (default: your user name + " (AI agent)")',
    },
  },
  async run({ args }) {
    const name = args.name ?? `${osUser()} (AI agent)`.slice(0, 64);
    if (!/^[^\x00-\x1f\x7f]{1,64}$/.test(name))
      throw new ConfigError("--name must be 1-64 characters without control characters");
    const stop = untilInterrupted();
    // The SDK loads only to serve, so `tessera mcp --help` stays as quick as any command's help.
    const { serveMcp } = await import("../mcp/server.ts");
    await serveMcp(
      {
        version: VERSION,
        name,
        identityKeyPem: await loadGuestIdentity(),
        guestDial: (address) => ({ address: address ?? coordinatorAddress(), caPem: readCa(), version: VERSION }),
        hostDial: () => ({
          address: coordinatorAddress(),
          caPem: readCa(),
          ...readHostIdentity(),
          version: VERSION,
          secretsDir: path.join(homeDir(), "code-secrets"),
        }),
      },
      stop.promise,
    );
  },
});

/** Printed by `tessera mcp --help` after the flags (main.ts shows a command's footer). */
function footer(): string {
  // A compiled tessera is its own executable; from source it is bun running main.ts.
  const compiled = Bun.main.startsWith("/$bunfs/") || Bun.main.includes("~BUN");
  return mcpSetup({
    exe: compiled ? [process.execPath] : [process.execPath, Bun.main],
    home: process.env.TESSERA_HOME ? homeDir() : undefined,
  });
}

export default { ...command, footer } as CommandDef & { footer: () => string };
