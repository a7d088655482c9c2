// Plays an asciicast v2 file back with its original timing (scaled by speed, long pauses capped).
import fs from "node:fs";
import { CastError, MAX_LINE_BYTES, parseEvent, parseHeader, type Header } from "./asciicast.ts";

export interface ReplayOptions {
  /** Playback speed factor: 2 plays twice as fast. */
  speed: number;
  /** Longest pause played, in milliseconds (undefined: keep every pause as recorded). */
  maxIdleMs?: number;
  write: (text: string) => void | Promise<void>;
  sleep?: (ms: number) => Promise<void>;
}

/** Validates as it plays: a bad line stops playback with an error naming the line. */
export async function replay(file: string, o: ReplayOptions): Promise<{ header: Header; events: number }> {
  const sleep = o.sleep ?? ((ms: number) => Bun.sleep(ms));
  let fd: number;
  try {
    fd = fs.openSync(file, "r");
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new CastError(code === "ENOENT" ? "no such file" : `cannot open it (${code ?? (err as Error).message})`);
  }
  let header: Header | undefined;
  let lineNo = 0;
  let prev = 0;
  let events = 0;
  for await (const line of lines(fs.createReadStream("", { fd, highWaterMark: 64 * 1024 }))) {
    lineNo++;
    if (!header) {
      header = parseHeader(line);
      continue;
    }
    if (line.trim() === "") continue;
    const [time, code, data] = parseEvent(line, lineNo, prev);
    let gap = ((time - prev) * 1000) / o.speed;
    if (o.maxIdleMs !== undefined) gap = Math.min(gap, o.maxIdleMs);
    prev = time;
    if (gap >= 1) await sleep(gap);
    if (code === "o") await o.write(data);
    events++;
  }
  if (!header) throw new CastError("the file is empty; an asciicast v2 file starts with a JSON header line");
  return { header, events };
}

/** Splits a byte stream into UTF-8 lines, refusing any line over MAX_LINE_BYTES before buffering more. */
async function* lines(stream: fs.ReadStream): AsyncGenerator<string> {
  let parts: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let start = 0;
      for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
        parts.push(chunk.subarray(start, nl));
        yield Buffer.concat(parts).toString("utf8");
        parts = [];
        size = 0;
        start = nl + 1;
      }
      parts.push(chunk.subarray(start));
      size += chunk.length - start;
      if (size > MAX_LINE_BYTES)
        throw new CastError(`a line is longer than ${MAX_LINE_BYTES} bytes; this is not a recording tessera wrote`);
    }
    if (size > 0) yield Buffer.concat(parts).toString("utf8");
  } finally {
    stream.destroy();
  }
}
