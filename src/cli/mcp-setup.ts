// What `tessera mcp --help` adds after the flags: how to register this binary with common MCP clients.

/** `exe` is how to start tessera (the compiled binary, or bun + main.ts); `home` a TESSERA_HOME to keep. */
export function mcpSetup(o: { exe: string[]; home?: string }): string {
  const [command, ...pre] = o.exe as [string, ...string[]];
  const server: Record<string, unknown> = { command, args: [...pre, "mcp"] };
  if (o.home) server.env = { TESSERA_HOME: o.home };
  const json = JSON.stringify({ mcpServers: { tessera: server } }, null, 2);
  const shellWords = [...o.exe, "mcp"].map(quote).join(" ");
  // Prose lines fit 80 columns; a command or path is on a line of its own, as long as it is.
  return [
    "",
    "Set-up: add this stdio server to your MCP client (Claude Desktop's",
    "claude_desktop_config.json, Cursor's .cursor/mcp.json, Windsurf, and most",
    "others take this shape; VS Code's .vscode/mcp.json names the key",
    '"servers" instead of "mcpServers"):',
    "",
    json.replace(/^/gm, "  "),
    "",
    "Claude Code:",
    `  claude mcp add tessera${o.home ? ` -e TESSERA_HOME=${quote(o.home)}` : ""} -- ${shellWords}`,
    "Codex (~/.codex/config.toml):",
    "  [mcp_servers.tessera]",
    `  command = ${JSON.stringify(command)}`,
    `  args = ${JSON.stringify([...pre, "mcp"])}`,
    ...(o.home ? [`  env = { TESSERA_HOME = ${JSON.stringify(o.home)} }`] : []),
    "",
    "The agent's etiquette (also served as the server's instructions) is in",
    "docs/mcp.md. Logs go to stderr; stdout carries only the protocol.",
    "",
  ].join("\n");
}

function quote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
