// access_list shows strings other machines chose (a target, the reason a session ended) with every
// control, bidi, zero-width and tag character escaped, in its text and in its structured content.
import { expect, test } from "bun:test";
import type { McpServer } from "@modelcontextprotocol/server";
import { registerTools, type ToolDeps } from "../../src/mcp/tools.ts";

test("access_list escapes the target and the ending reason", async () => {
  const tools = new Map<
    string,
    (...a: unknown[]) => Promise<{ content: { text: string }[]; structuredContent?: unknown }>
  >();
  const server = {
    registerTool: (name: string, _def: unknown, fn: never) => tools.set(name, fn),
  } as unknown as McpServer;
  const hostile = "host said: bye\u001b[2J\u202eevil\u200b\u{e0041}";
  const sessions = {
    list: () => [
      {
        session: "s-1",
        target: "db:5432",
        local: "127.0.0.1:13000",
        openedAt: "2026-01-01T00:00:00.000Z",
        ended: hostile,
      },
    ],
  };
  registerTools(server, { sessions, hostDial: () => ({}) } as unknown as ToolDeps);
  const r = await tools.get("access_list")!({}, {});
  const text = r.content[0]!.text;
  expect(text).toContain("ENDED (host said: bye\\u001b[2J\\u202eevil\\u200b\\u{e0041})");
  const raw = /[\p{Cc}\p{Cf}]/u;
  expect(text.replace(/\n/g, "")).not.toMatch(raw);
  expect(JSON.stringify(r.structuredContent)).not.toMatch(/[\u202e\u200b]/);
});
