// The README is written for a reader who has only it: no internal files or issue numbers, and the host's
// answers and receipts documented where the host reads (the Quickstart's own sections).
import { expect, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { ANSWER_HELP } from "../src/cli/answer.ts";

const README = fs.readFileSync(path.join(import.meta.dir, "../README.md"), "utf8");

test("no reference to a file the reader does not have, and no internal issue numbers", () => {
  expect(README).not.toContain("DESIGN.md");
  expect(README).not.toMatch(/\bissues? #?\d+/i);
});

test("every scoped answer the prompt accepts is documented, with tessera receipt, before the operator's sections", () => {
  const hostPart = README.slice(README.indexOf("## Quickstart"), README.indexOf("## The operator's view"));
  for (const word of ANSWER_HELP.split("\n").map((l) => l.trim().split(/\s{2,}/)[0]!))
    expect(hostPart).toContain(`\n${word.split(" ")[0]}`);
  for (const s of ["y 15m", "y 1 ", "ro ", "n REASON", "tessera receipt verify FILE --host-key", "host key SHA256:"])
    expect(hostPart).toContain(s);
});
