// The root help lists commands from SUMMARIES without loading them; this keeps the two in step.
import { expect, test } from "bun:test";
import type { CommandDef } from "citty";
import { SUMMARIES } from "../src/commands/summaries.ts";

const COMMANDS = [
  "ca",
  "coordinator",
  "link",
  "share",
  "agent",
  "join",
  "connect",
  "token",
  "revoke",
  "admin",
  "version",
  "mcp",
  "receipt",
  "approvers",
  "approve",
];

test("every command's description matches its root-help summary", async () => {
  for (const name of COMMANDS) {
    const cmd = (await import(`../src/commands/${name}.ts`)).default as CommandDef;
    const meta = (typeof cmd.meta === "function" ? await cmd.meta() : await cmd.meta) as { description?: string };
    expect({ name, description: meta?.description }).toEqual({ name, description: SUMMARIES[name] });
  }
});

test("main.ts registers exactly the summarised commands", async () => {
  const src = await Bun.file(new URL("../src/main.ts", import.meta.url)).text();
  const registered = [...src.matchAll(/^\s+"?([\w-]+)"?: \(\) => import\("\.\/commands\/([\w-]+)\.ts"\)/gm)].map(
    (m) => m[1],
  );
  expect(registered.sort()).toEqual(Object.keys(SUMMARIES).sort());
});
