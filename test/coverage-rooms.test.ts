// Unit tests for scripts/coverage-rooms.ts: lcov records summed per folder of src/, unloaded files counted.
import { expect, test } from "bun:test";
import { parseLcov, rooms, table } from "../scripts/coverage-rooms.ts";

const LCOV = [
  "TN:",
  "SF:src/wire/codec.ts",
  "FNF:4",
  "FNH:3",
  "DA:1,1",
  "LF:10",
  "LH:9",
  "end_of_record",
  "SF:src/wire/channel.ts",
  "FNF:6",
  "FNH:3",
  "LF:30",
  "LH:15",
  "end_of_record",
  "SF:src/errors.ts",
  "FNF:2",
  "FNH:2",
  "LF:5",
  "LH:5",
  "end_of_record",
  "SF:test/data/fixtures.ts",
  "FNF:9",
  "FNH:9",
  "LF:90",
  "LH:90",
  "end_of_record",
].join("\n");

test("sums each room's lines and functions, leaves tests out, and counts the files never loaded", () => {
  const files = ["src/wire/codec.ts", "src/wire/channel.ts", "src/wire/scope.ts", "src/errors.ts", "src/data/pipe.ts"];
  const r = rooms(parseLcov(LCOV), files);
  expect(r.get("wire/")).toEqual({ lines: 40, linesHit: 24, fns: 10, fnsHit: 6, loaded: 2, files: 3 });
  expect(r.get("src/")).toEqual({ lines: 5, linesHit: 5, fns: 2, fnsHit: 2, loaded: 1, files: 1 });
  expect(r.get("data/")).toEqual({ lines: 0, linesHit: 0, fns: 0, fnsHit: 0, loaded: 0, files: 1 });
  const t = table(r).split("\n");
  expect(t).toContain("| src/wire/        |  60.0% |     60.0% |          2/3 |");
  expect(t).toContain("| src/data/        |      - |         - |          0/1 |");
  expect(t.at(-1)).toBe("| all of src/      |  64.4% |     66.7% |          3/5 |");
});
