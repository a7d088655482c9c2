// Unit tests for src/cli/flags.ts: suggestions, unknown flags, repeated values.
import { expect, test } from "bun:test";
import { checkFlags, closest, repeatedValues } from "../src/cli/flags.ts";

test("closest suggests a near name and nothing for a far one", () => {
  expect(closest("prot", ["port", "host", "shell"])).toBe("port");
  expect(closest("resaon", ["reason", "name", "local"])).toBe("reason");
  expect(closest("shre", ["share", "join", "ca"])).toBe("share");
  expect(closest("zzzzzz", ["share", "join"])).toBeUndefined();
});

test("checkFlags accepts known flags, --no-X for booleans, -h and anything after --", () => {
  const args = {
    port: { type: "string" as const },
    shell: { type: "boolean" as const },
    code: { type: "positional" as const },
  };
  expect(() => checkFlags(args, ["--port", "1", "--no-shell", "-h", "--", "--whatever"], "share")).not.toThrow();
  expect(() => checkFlags(args, ["--port=5"], "share")).not.toThrow();
  expect(() => checkFlags(args, ["--code", "x"], "share")).toThrow(/unknown option --code/);
  expect(() => checkFlags(args, ["--prot=5"], "share")).toThrow(/did you mean --port\?/);
});

test("repeatedValues keeps every value, in order, until --", () => {
  expect(
    repeatedValues(["--allow", "a:1", "--x", "--allow=b:2", "--allow", "c:3", "--", "--allow", "d:4"], "allow"),
  ).toEqual(["a:1", "b:2", "c:3"]);
});
