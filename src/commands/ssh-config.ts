// `tessera ssh-config CODE`: print a ~/.ssh/config Host block whose ProxyCommand is `tessera join --stdio`.
import { defineCommand } from "citty";
import { ConfigError } from "../errors.ts";
import { homeDir } from "../cli/home.ts";
import { sshConfigBlock } from "../cli/ssh-config.ts";

export default defineCommand({
  meta: {
    name: "ssh-config",
    description:
      "Print an ssh config Host block that reaches a shared ssh port through `tessera join --stdio` (append it to ~/.ssh/config)",
  },
  args: {
    code: {
      type: "positional",
      required: false,
      description: "The code the host gave you (or use --share-id and --target)",
    },
    alias: { type: "string", description: "Host name to use with ssh (default tessera-CODE, or SHARE-PORT)" },
    reason: {
      type: "string",
      description: 'Reason shown to the host; ssh fills in %r (user), %h (alias), %p (port) (default "ssh %r@%h:%p")',
    },
    "share-id": {
      type: "string",
      description: "Ask a running share by id each time instead of redeeming a single-use code",
    },
    target: { type: "string", description: "With --share-id: HOST:PORT of the ssh server on the host's side" },
  },
  run({ args }) {
    const shareId = args["share-id"];
    if (!!args.code === !!shareId) throw new ConfigError("give either a CODE or --share-id ID --target HOST:PORT");
    if (shareId && !args.target)
      throw new ConfigError("--share-id needs --target HOST:PORT (the host's ssh server, e.g. 127.0.0.1:22)");
    // A compiled tessera is its own executable; from source it is bun running main.ts.
    const compiled = Bun.main.startsWith("/$bunfs/") || Bun.main.includes("~BUN");
    process.stdout.write(
      sshConfigBlock({
        via: shareId ? { shareId, target: args.target! } : { code: args.code! },
        alias: args.alias,
        reason: args.reason,
        exe: compiled ? [process.execPath] : [process.execPath, Bun.main],
        home: process.env.TESSERA_HOME ? homeDir() : undefined,
        platform: process.platform,
      }),
    );
  },
});
