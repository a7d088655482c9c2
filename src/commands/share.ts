// `tessera share`: offer one local port or a shell (embedded agent) or approve for a running agent; prints a code and prompts per request.
import { randomBytes } from "node:crypto";
import { defineCommand } from "citty";
import { ConfigError, RefusedError, errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import { Agent } from "../host/agent.ts";
import { ControlClient, type DialOptions } from "../wire/control-client.ts";
import { Reconnector } from "../wire/reconnect.ts";
import { TargetPolicy } from "../host/policy.ts";
import { formatTarget } from "../wire/address.ts";
import { Approver } from "../cli/approver.ts";
import { ShellShare } from "../cli/shell-share.ts";
import { coordinatorAddress, readCa, readHostIdentity } from "../cli/home.ts";
import { untilInterrupted } from "../cli/signals.ts";
import { osUser } from "../cli/ui.ts";
import { VERSION } from "../version.ts";

const log = logger("share");

export default defineCommand({
  meta: { name: "share", description: "Share a local port or your shell: print a code, ask you about each guest, open access once you say y" },
  args: {
    port: { type: "string", description: "Local port to share (runs an embedded agent for exactly this target)" },
    host: { type: "string", default: "127.0.0.1", description: "Host of the target to share" },
    "share-id": { type: "string", description: "Approve requests for a running `tessera agent --share-id ID` instead" },
    target: { type: "string", description: "With --share-id: which of the agent's targets the code is for (default: its first)" },
    shell: { type: "boolean", description: "Share an interactive shell on this machine (a PTY a session, as your user) instead of a port" },
    command: { type: "string", description: "With --shell: what to run in the terminal (default: your login shell, as a login shell)" },
    "read-only": { type: "boolean", description: "With --shell: the guest only watches; you type in this terminal (implies --watch)" },
    watch: { type: "boolean", description: "With --shell: mirror the shared shell here and let you type too; Ctrl-] ends the session" },
    record: { type: "string", description: "With --shell: directory for asciicast recordings (default TESSERA_HOME/recordings; --no-record turns them off)" },
  },
  async run({ args }) {
    const dial = { address: coordinatorAddress(), caPem: readCa(), ...readHostIdentity(), version: VERSION };
    const stop = untilInterrupted();
    let client: ControlClient;
    let shareId: string;
    let agent: Agent | undefined;
    let approver: Approver | undefined;
    let shell: ShellShare | undefined;
    let reconnector: Reconnector | undefined;
    if (args.shell && (args.port !== undefined || args["share-id"])) throw new ConfigError("--shell shares this machine's shell; leave out --port and --share-id");
    if (!args.shell && (args["read-only"] || args.watch || args.command !== undefined)) throw new ConfigError("--read-only, --watch and --command go with --shell");
    if (args.port !== undefined || args.shell) {
      let policy: TargetPolicy;
      if (args.shell) {
        shell = new ShellShare({ command: args.command, readOnly: !!args["read-only"], watch: !!args.watch, record: args.record as string | boolean | undefined });
        policy = new TargetPolicy([]);
      } else {
        const port = Number(args.port);
        if (!Number.isInteger(port) || port < 1 || port > 65535) throw new ConfigError(`--port must be 1-65535 (got "${args.port}")`);
        policy = new TargetPolicy([formatTarget(args.host, port)]);
      }
      shareId = `sh-${randomBytes(6).toString("hex")}`;
      let approverRef: Approver | undefined;
      agent = new Agent({ ...dial, shareId, policy, approver: true, reconnect: true, shell: shell?.host }, {
        onDisconnected: (err, retry) => {
          if (retry === undefined) return stop.trigger(`lost the coordinator${err ? `: ${err.message}` : ""}`);
          approverRef?.pause();
          log.warn(`lost the coordinator${err ? ` (${err.message})` : ""}; reconnecting in ${(retry / 1000).toFixed(1)}s. Codes and approved sessions stay valid meanwhile`);
        },
        onConnected: (c) => {
          if (!approverRef) return;
          approverRef.rebind(c);
          shell?.rebind(c);
          log.info("reconnected to the coordinator; the share is live again");
        },
        onStream: (sid, error) => error && log.warn(`session ${sid}: ${error}`),
      });
      client = await agent.start();
      approver = approverRef = new Approver(client, shareId, shell?.what);
      log.info(`sharing ${shell ? `a shell as ${osUser()}${shell.recordDir ? `, recorded to ${shell.recordDir}` : ", not recorded"}` : policy.targets[0]} as ${shareId}`);
    } else if (args["share-id"]) {
      shareId = args["share-id"];
      const id = shareId;
      client = await attachApprover(dial, id);
      const a = (approver = new Approver(client, id));
      // Like the agent, an approver rides out a lost connection or a coordinator restart.
      const again: Reconnector = new Reconnector({
        connect: async () => {
          const c = await attachApprover(dial, id);
          client = c;
          c.onClose((e) => again.lost(e));
          a.rebind(c);
          log.info("reconnected to the coordinator; approving again");
        },
        fatal: (e) => e instanceof RefusedError && (e.code === "no_share" || e.code === "host_removed"),
        onRetry: (err, delay) => {
          a.pause();
          log.warn(`lost the coordinator${err ? ` (${err.message})` : ""}; reconnecting in ${(delay / 1000).toFixed(1)}s`);
        },
        onGiveUp: (e) => stop.trigger(`stopped: ${e?.message ?? "the share is gone"}`),
      });
      reconnector = again;
      client.onClose((e) => again.lost(e));
    } else {
      throw new ConfigError("say what to share: --port N (and --host), or --share-id ID of a running agent");
    }
    approver ??= new Approver(client, shareId);
    approver.start();
    shell?.bind(client, approver);
    await approver.mint(args.target);
    const why = await stop.promise;
    reconnector?.stop();
    shell?.stop();
    approver.stop();
    if (agent) await agent.stop();
    else await client.leave(shareId);
    if (why.startsWith("lost")) {
      log.error(why);
      process.exitCode = 1;
    } else if (agent) log.info(`stopped sharing (${why}); every session of this share is closed`);
    else log.info(`stopped approving (${why}); the sessions approved here are closed, the agent keeps serving`);
  },
});

async function attachApprover(dial: DialOptions, shareId: string): Promise<ControlClient> {
  const c = await ControlClient.dial(dial);
  c.send({ t: "attach", shareId });
  try {
    await c.next("registered");
  } catch (err) {
    c.close();
    throw err;
  }
  return c;
}
