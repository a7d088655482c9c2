// `tessera mcp`: the Model Context Protocol server over stdio, on the official SDK. stdout carries only
// the protocol (every log line goes to stderr); it serves until the client closes stdin or a signal.
import { McpServer } from "@modelcontextprotocol/server";
import { serveStdio, StdioServerTransport } from "@modelcontextprotocol/server/stdio";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { DialOptions } from "../wire/control-client.ts";
import guide from "../../docs/mcp.md" with { type: "text" };
import { GuestSessions } from "./guest-sessions.ts";
import { registerTools } from "./tools.ts";
import { jsonRpcLines } from "./json-lines.ts";

const log = logger("mcp");
const END_OF_INSTRUCTIONS = "<!-- The server's instructions end here";

/** The etiquette served as the server's instructions: docs/mcp.md down to its set-up notes for humans. */
export const INSTRUCTIONS = guide
  .slice(0, guide.includes(END_OF_INSTRUCTIONS) ? guide.indexOf(END_OF_INSTRUCTIONS) : undefined)
  .trim();

export interface McpOptions {
  version: string;
  /** How hosts see this agent at their prompt. */
  name: string;
  /** Dial options for a coordinator (the invite's address, else the linked one), with the linked CA. */
  guestDial(address?: string): DialOptions;
  /** The machine's guest identity key (TESSERA_HOME/identity.key), signing each request. */
  identityKeyPem?: string;
  /** Dial options with this machine's host identity; throws when it is not enrolled. */
  /** secretsDir: where minted codes' secret halves go for this machine's `tessera share` (never to the coordinator). */
  hostDial(): DialOptions & { secretsDir: string };
}

/** Serves until `stop` resolves or the client hangs up; then closes every session. Resolves with why it stopped. */
export async function serveMcp(o: McpOptions, stop: Promise<string>): Promise<string> {
  const sessions = new GuestSessions({ name: o.name, dial: o.guestDial, identityKeyPem: o.identityKeyPem });
  const hungUp = new Promise<string>((resolve) => {
    process.stdin.once("end", () => resolve("the MCP client closed stdin"));
    process.stdin.once("close", () => resolve("the MCP client closed stdin"));
  });
  // The SDK may build an instance per protocol era it probes; all of them share the one set of sessions.
  const handle = serveStdio(
    () => {
      const server = new McpServer(
        { name: "tessera", version: o.version },
        { instructions: INSTRUCTIONS, capabilities: { tools: {} } },
      );
      registerTools(server, { sessions, hostDial: o.hostDial });
      return server;
    },
    {
      // Malformed lines are answered -32700/-32600 before the SDK (which would skip them silently) sees them.
      transport: new StdioServerTransport(jsonRpcLines(process.stdin, process.stdout), process.stdout),
      onerror: (err) => log.warn(`mcp: ${errorMessage(err)}`),
    },
  );
  log.info(`serving MCP on stdio as "${o.name}"`);
  const why = await Promise.race([stop, hungUp]);
  await sessions.closeAll();
  await handle.close().catch(() => {});
  return why;
}
