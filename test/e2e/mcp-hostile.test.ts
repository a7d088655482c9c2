// `tessera mcp` (the compiled binary) answers a malformed line with JSON-RPC -32700 instead of silence, and
// keeps serving: the next request on the same stdin is answered as usual.
import { afterAll, expect, test } from "bun:test";
import path from "node:path";
import { killAll, spawn, tmpDir } from "./harness.ts";

afterAll(killAll);

test("malformed JSON gets -32700, a non-request -32600, and the server goes on", async () => {
  const home = path.join(tmpDir(), "home");
  const m = spawn(["mcp", "--name", "probe"], { TESSERA_HOME: home });
  m.write("{this is not json\n");
  await m.waitFor(/"code":-32700/);
  m.write('["not","a","request"]\n');
  await m.waitFor(/"code":-32600/);
  m.write(
    `${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } } })}\n`,
  );
  await m.waitFor(/"protocolVersion":"2025-06-18"[\s\S]*"id":1\}/);
  const lines = m.out
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  expect(lines[0]).toMatchObject({ jsonrpc: "2.0", id: null, error: { code: -32700 } });
  expect(lines[1]).toMatchObject({ jsonrpc: "2.0", id: null, error: { code: -32600 } });
  expect(lines[2]).toMatchObject({ jsonrpc: "2.0", id: 1 });
  m.kill("SIGTERM");
  await m.exit();
}, 30_000);
