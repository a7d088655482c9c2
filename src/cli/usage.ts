// `--help` text: plain lines wrapped to the terminal's width (80 when it is not a terminal), colour only
// on a terminal and never with NO_COLOR. citty's own renderer pads to a wide table and always colours.
import type { ArgsDef, CommandDef } from "citty";

export interface UsageInput {
  name: string;
  description: string;
  args: ArgsDef;
  /** For a command with subcommands: name -> one-line description. */
  commands?: Record<string, string>;
}

/** Whether escape codes may be written to this stream. */
export function useColor(stream: { isTTY?: boolean }): boolean {
  return !!stream.isTTY && !process.env.NO_COLOR && process.env.TERM !== "dumb";
}

export function renderUsage(
  u: UsageInput,
  width = Math.max(40, Math.min(process.stdout.columns || 80, 120)),
  color = useColor(process.stdout),
): string {
  const bold = (s: string) => (color ? `\x1b[1m${s}\x1b[22m` : s);
  const out: string[] = [...wrap(u.description, width, ""), ""];
  const positionals = Object.entries(u.args).filter(([, a]) => a.type === "positional");
  const pos = positionals.map(([n, a]) =>
    (a as { required?: boolean }).required === false ? `[${n.toUpperCase()}]` : n.toUpperCase(),
  );
  out.push(
    `${bold("Usage:")} tessera${u.name ? ` ${u.name}` : ""}${u.commands ? " COMMAND" : ""}${pos.length ? ` ${pos.join(" ")}` : ""} [OPTIONS]`,
    "",
  );
  const rows: [string, string][] = [];
  for (const [n, a] of positionals) rows.push([n.toUpperCase(), a.description ?? ""]);
  if (u.commands) {
    out.push(bold("Commands:"));
    out.push(...table(Object.entries(u.commands), width));
    out.push("");
  }
  for (const [n, a] of Object.entries(u.args)) {
    if (a.type === "positional") continue;
    const value = a.type === "string" ? ` ${n.replace(/-/g, "_").toUpperCase()}` : "";
    const dflt =
      "default" in a && a.default !== undefined && a.default !== false && a.default !== ""
        ? ` (default: ${String(a.default)})`
        : "";
    // A one-letter alias is shown first, as `-n, --lines LINES`, so the short form is found in --help.
    const short = [(a as { alias?: string | string[] }).alias ?? []].flat().find((x) => x.length === 1);
    rows.push([`${short ? `-${short}, ` : ""}--${n}${value}`, `${a.description ?? ""}${dflt}`]);
  }
  if (rows.length) {
    out.push(bold("Options:"));
    out.push(...table(rows, width));
  }
  return `${out.join("\n")}\n`;
}

/** Two columns; a left cell too wide for the column puts its text on the next line instead. */
function table(rows: [string, string][], width: number): string[] {
  const col = Math.min(28, Math.max(...rows.map(([l]) => l.length)) + 4);
  const out: string[] = [];
  for (const [left, text] of rows) {
    const indent = " ".repeat(col);
    const lines = wrap(text, width, indent);
    const head = `  ${left}`;
    if (head.length + 2 <= col) out.push(head + lines[0]!.slice(head.length), ...lines.slice(1));
    else out.push(head, ...lines);
  }
  return out;
}

/** Word-wraps text to `width`, every line starting with `indent`. */
function wrap(text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = indent;
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line.length > indent.length && line.length + 1 + word.length > width) {
      lines.push(line);
      line = indent;
    }
    line += (line.length > indent.length ? " " : "") + word;
  }
  lines.push(line);
  return lines;
}

/** The usage input of a loaded citty command. */
export async function usageOf(cmd: CommandDef, path: string, summaries?: Record<string, string>): Promise<UsageInput> {
  const meta = (typeof cmd.meta === "function" ? await cmd.meta() : await cmd.meta) ?? {};
  const args = ((typeof cmd.args === "function" ? await cmd.args() : await cmd.args) ?? {}) as ArgsDef;
  let commands: Record<string, string> | undefined;
  if (cmd.subCommands) {
    commands = {};
    const subs = (typeof cmd.subCommands === "function" ? await cmd.subCommands() : await cmd.subCommands) as Record<
      string,
      unknown
    >;
    for (const [n, s] of Object.entries(subs)) {
      if (summaries?.[n]) commands[n] = summaries[n]!;
      else {
        const sub = (typeof s === "function" ? await (s as () => Promise<CommandDef>)() : s) as CommandDef;
        const m = (typeof sub.meta === "function" ? await sub.meta() : await sub.meta) ?? {};
        commands[n] = (m as { description?: string }).description ?? "";
      }
    }
  }
  return { name: path, description: (meta as { description?: string }).description ?? "", args, commands };
}
