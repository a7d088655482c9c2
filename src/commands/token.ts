// `tessera token HEX`: store the operator token on this machine for `tessera revoke` and `tessera admin`.
import { defineCommand } from "citty";
import { ConfigError } from "../errors.ts";
import { homeFile, writePrivate } from "../cli/home.ts";

export default defineCommand({
  meta: {
    name: "token",
    description: "Save the operator token (from the coordinator's operator-token file) for revoke and admin",
  },
  args: { token: { type: "positional", required: true, description: "The operator token, 64 hex characters" } },
  run({ args }) {
    const t = args.token.trim();
    if (!/^[0-9a-f]{64}$/i.test(t))
      throw new ConfigError(
        "an operator token is 64 hex characters (see operator-token in the coordinator's certs directory)",
      );
    writePrivate(homeFile("operator-token"), `${t}\n`);
    console.log(`operator token saved to ${homeFile("operator-token")}`);
  },
});
