// `tessera version`: prints the version this binary was built as.
import { defineCommand } from "citty";
import { VERSION } from "../version.ts";

export default defineCommand({
  meta: { name: "version", description: "Print the version" },
  run() {
    console.log(VERSION);
  },
});
