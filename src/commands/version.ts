// `tessera version`: prints the version this binary was built as (--json: with commit, Bun and build date).
import { defineCommand } from "citty";
import { VERSION, buildDetails } from "../version.ts";

export default defineCommand({
  meta: { name: "version", description: "Print the version" },
  args: {
    json: { type: "boolean", description: "Print version, commit, Bun version and build date as JSON" },
  },
  run({ args }) {
    console.log(args.json ? JSON.stringify(buildDetails()) : VERSION);
  },
});
