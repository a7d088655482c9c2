// `tessera token`: store the operator token on this machine for `tessera revoke` and `tessera admin`; the token
// comes from stdin, a no-echo prompt or --token-file (argv still works, with a warning: `ps` shows it).
import { defineCommand } from "citty";
import { ConfigError } from "../errors.ts";
import { homeFile, writePrivate } from "../cli/home.ts";
import { readSecret } from "../cli/secret-input.ts";

export default defineCommand({
  meta: {
    name: "token",
    description: "Save the operator token (from the coordinator's operator-token file) for revoke and admin",
  },
  args: {
    token: {
      type: "positional",
      required: false,
      description:
        "The operator token, 64 hex characters; better left out: then it is read from stdin or typed without echo",
    },
    "token-file": { type: "string", description: "Read the operator token from this file" },
  },
  async run({ args }) {
    const t = await readSecret({
      argv: args.token as string | undefined,
      file: args["token-file"],
      what: "operator token",
      flag: "the TOKEN argument",
    });
    if (!/^[0-9a-f]{64}$/i.test(t))
      throw new ConfigError(
        "an operator token is 64 hex characters (see operator-token in the coordinator's certs directory)",
      );
    writePrivate(homeFile("operator-token"), `${t}\n`);
    console.log(`operator token saved to ${homeFile("operator-token")}`);
  },
});
