// `tessera mcp --help`'s set-up notes: the JSON an MCP client takes, with the binary's absolute path.
import { expect, test } from "bun:test";
import { mcpSetup } from "../src/cli/mcp-setup.ts";
import { run } from "./e2e/harness.ts";

test("the snippet is valid JSON naming the executable, and keeps TESSERA_HOME when one is set", () => {
  const text = mcpSetup({ exe: ["/opt/tessera/bin/tessera"] });
  const json = JSON.parse(/^ {2}\{[\s\S]*?^ {2}\}$/m.exec(text)![0]);
  expect(json).toEqual({ mcpServers: { tessera: { command: "/opt/tessera/bin/tessera", args: ["mcp"] } } });
  expect(text).toContain("claude mcp add tessera -- /opt/tessera/bin/tessera mcp");

  const src = mcpSetup({ exe: ["/usr/bin/bun", "/home/me/tessera/src/main.ts"], home: "/home/me/my tessera" });
  const j2 = JSON.parse(/^ {2}\{[\s\S]*?^ {2}\}$/m.exec(src)![0]);
  expect(j2.mcpServers.tessera).toEqual({
    command: "/usr/bin/bun",
    args: ["/home/me/tessera/src/main.ts", "mcp"],
    env: { TESSERA_HOME: "/home/me/my tessera" },
  });
  expect(src).toContain("-e TESSERA_HOME='/home/me/my tessera' -- /usr/bin/bun /home/me/tessera/src/main.ts mcp");
});

test("`tessera mcp --help` prints the flags and then the snippet with this binary's absolute path", async () => {
  const r = await run(["mcp", "--help"]);
  expect(r.code).toBe(0);
  expect(r.out).toContain("--name");
  const json = JSON.parse(/^ {2}\{[\s\S]*?^ {2}\}$/m.exec(r.out)![0]);
  const server = json.mcpServers.tessera;
  expect(server.command.startsWith("/")).toBe(true);
  expect(server.args.at(-1)).toBe("mcp");
  // Every line fits 80 columns but those that carry this binary's path (as long as it is).
  for (const line of r.out.split("\n"))
    if (!line.includes(server.command)) expect(line.length, line).toBeLessThanOrEqual(80);
});
