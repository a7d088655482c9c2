// What reaches the MCP SDK's stdio transport: whole lines that parse as JSON-RPC objects. The SDK skips a
// line that is not JSON without a word; JSON-RPC says the client gets -32700 (parse error), or -32600 for
// JSON that is not a request object. Those answers are written here; good lines pass through unchanged.
import { PassThrough, type Readable, type Writable } from "node:stream";

/** Longest line kept while waiting for its end; a longer one is answered -32700 and skipped to its newline. */
export const MAX_LINE_BYTES = 4 * 1024 * 1024;

export function jsonRpcLines(input: Readable, output: Writable): PassThrough {
  const out = new PassThrough();
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let skipping = false;
  const answer = (code: number, message: string, id: unknown = null) =>
    output.write(`${JSON.stringify({ jsonrpc: "2.0", id, error: { code, message } })}\n`);
  const line = (buf: Buffer) => {
    const text = buf.toString("utf8").replace(/\r$/, "");
    if (!text.trim()) return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch (err) {
      return answer(-32700, `Parse error: ${(err as Error).message}`);
    }
    if (
      typeof msg !== "object" ||
      msg === null ||
      Array.isArray(msg) ||
      (msg as { jsonrpc?: unknown }).jsonrpc !== "2.0"
    ) {
      const id = (msg as { id?: unknown } | null)?.id;
      return answer(
        -32600,
        "Invalid Request: expected a JSON-RPC 2.0 object",
        typeof id === "string" || typeof id === "number" ? id : null,
      );
    }
    out.write(`${text}\n`);
  };
  input.on("data", (chunk: Buffer) => {
    let from = 0;
    for (let nl = chunk.indexOf(10, from); nl !== -1; nl = chunk.indexOf(10, from)) {
      const piece = chunk.subarray(from, nl);
      from = nl + 1;
      if (skipping) {
        skipping = false;
        continue;
      }
      line(pending.length ? Buffer.concat([...pending, piece]) : piece);
      pending = [];
      pendingBytes = 0;
    }
    if (from < chunk.length && !skipping) {
      pending.push(Buffer.from(chunk.subarray(from)));
      pendingBytes += chunk.length - from;
      if (pendingBytes > MAX_LINE_BYTES) {
        answer(-32700, `Parse error: a message longer than ${MAX_LINE_BYTES} bytes`);
        pending = [];
        pendingBytes = 0;
        skipping = true;
      }
    }
  });
  input.on("end", () => {
    if (pending.length && !skipping) line(Buffer.concat(pending));
    out.end();
  });
  input.on("close", () => out.end());
  input.on("error", (err) => out.destroy(err));
  return out;
}
