// src/mcp/json-lines.ts: malformed input gets a JSON-RPC error (-32700, -32600) instead of silence; good
// lines reach the SDK unchanged, however they are split across chunks.
import { describe, expect, test } from "bun:test";
import { PassThrough } from "node:stream";
import { jsonRpcLines, MAX_LINE_BYTES } from "../../src/mcp/json-lines.ts";

function rig() {
  const input = new PassThrough();
  const output = new PassThrough();
  const passed: string[] = [];
  const answered: string[] = [];
  const out = jsonRpcLines(input, output);
  out.on("data", (d: Buffer) => passed.push(d.toString()));
  output.on("data", (d: Buffer) => answered.push(d.toString()));
  const ended = new Promise<void>((r) => out.on("end", r));
  return { input, passed, answered, ended };
}

describe("jsonRpcLines", () => {
  test("answers malformed JSON with -32700 and non-requests with -32600; passes the rest", async () => {
    const r = rig();
    const good = '{"jsonrpc":"2.0","id":1,"method":"ping"}';
    r.input.write(`${good.slice(0, 10)}`);
    r.input.write(`${good.slice(10)}\n{not json\n\n[1,2]\n{"id":7,"method":"x"}\n`);
    r.input.end(`${good}`);
    await r.ended;
    expect(r.passed.join("")).toBe(`${good}\n${good}\n`);
    const errors = r.answered
      .join("")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l));
    expect(errors.map((e) => e.error.code)).toEqual([-32700, -32600, -32600]);
    expect(errors[0]).toMatchObject({ jsonrpc: "2.0", id: null });
    expect(errors[2].id).toBe(7);
  });

  test("an endless line is answered once and skipped to its newline, without holding it all", async () => {
    const r = rig();
    const chunk = "x".repeat(1024 * 1024);
    for (let i = 0; i < MAX_LINE_BYTES / chunk.length + 2; i++) r.input.write(chunk);
    r.input.end('\n{"jsonrpc":"2.0","id":2,"method":"ping"}\n');
    await r.ended;
    expect(r.answered).toHaveLength(1);
    expect(JSON.parse(r.answered[0]!).error.code).toBe(-32700);
    expect(r.passed.join("")).toBe('{"jsonrpc":"2.0","id":2,"method":"ping"}\n');
  });
});
