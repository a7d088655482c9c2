// `share --share-id ID`: approving for a running agent's share from another terminal. It rides out a lost
// coordinator and an agent that stops or restarts: it says so, waits for the share to come back, attaches
// again by itself and mints a fresh code, and when it cannot, it says why and what to run.
import { RefusedError } from "../errors.ts";
import { logger } from "../log.ts";
import { ControlClient, type DialOptions } from "../wire/control-client.ts";
import { Reconnector } from "../wire/reconnect.ts";
import type { ClientFrame } from "../wire/protocol.ts";
import { Approver, type ApproverView } from "./approver.ts";
import type { HostConsentOptions } from "../host/consent.ts";
import { OutageReport } from "./outage.ts";

const log = logger("share");
/** How long the approver waits for a share whose agent is gone before it gives up. */
const AGENT_WAIT_MS = 10 * 60_000;
/**
 * Codes minted by themselves on a reattach, an hour: each is one more guess a coordinator that cycles the
 * agent could make; past this the host is asked to type c + Enter.
 */
export const AUTO_MINTS_PER_HOUR = 3;

export class AttachedApprover {
  client!: ControlClient;
  approver!: Approver;
  private waitingForAgent = false;
  private readonly again: Reconnector;
  private readonly outage = new OutageReport("share");
  private readonly autoMints: number[] = [];

  constructor(
    private readonly dial: DialOptions,
    private readonly shareId: string,
    stop: (why: string) => void,
    private readonly consent: Omit<HostConsentOptions, "shareId" | "requestsById">,
    private readonly view: ApproverView,
    private readonly target?: string,
    /** How to attach (default `attach`; a delegated approver presents its delegation: `tessera approve`). */
    private readonly attachFrame: () => ClientFrame = () => ({ t: "attach", shareId }),
  ) {
    this.again = new Reconnector({
      connect: () => this.attach().then(() => {}),
      capMs: 5_000,
      // A removed host can do nothing here until it enrols again: say so and stop.
      fatal: (err) => err instanceof RefusedError && err.code === "host_removed",
      giveUpAfterMs: AGENT_WAIT_MS,
      onRetry: (err, delay) => {
        this.approver.pause();
        if (this.waitingForAgent) return;
        if (err instanceof RefusedError && err.code === "no_share")
          this.waitForAgent(`share ${shareId} has no agent right now (it stopped or is restarting)`);
        else this.outage.retrying(err?.message, delay, "lost the coordinator");
      },
      onGiveUp: (err) =>
        stop(
          err instanceof RefusedError && err.code === "host_removed"
            ? `stopped: ${err.message}`
            : err instanceof RefusedError && err.code === "no_share"
              ? `stopped: share ${shareId} has had no agent for ${AGENT_WAIT_MS / 60_000} minutes; start \`tessera agent --share-id ${shareId} --allow HOST:PORT\`, then run \`tessera share --share-id ${shareId}\` again`
              : `stopped: ${err?.message ?? "cannot reach the coordinator"}`,
        ),
    });
  }

  /** Attaches for the first time; a refusal here (no such share) is the caller's to report. */
  async start(): Promise<void> {
    await this.attach();
  }

  stop(): void {
    this.again.stop();
  }

  private waitForAgent(why: string): void {
    this.waitingForAgent = true;
    this.approver.pause();
    log.warn(
      `${why}. Waiting for it to come back; if it is not running, start it: tessera agent --share-id ${this.shareId} --allow HOST:PORT`,
    );
  }

  private async attach(): Promise<void> {
    const c = await ControlClient.dial(this.dial);
    c.send(this.attachFrame());
    let registered: { requestsById?: boolean };
    try {
      registered = await c.next("registered");
    } catch (err) {
      c.close();
      throw err;
    }
    const first = !this.approver;
    this.client = c;
    // The agent's own setting (`--allow-requests-by-id`) decides whether an ask without a code is shown here.
    const consent = { ...this.consent, shareId: this.shareId, requestsById: !!registered.requestsById };
    if (first) this.approver = Approver.open(c, consent, this.view);
    else this.approver.rebind(c);
    // The agent stopped serving the share: its codes are void; wait for the share to come back.
    c.on("left", () => {
      this.waitForAgent(`the agent serving share ${this.shareId} stopped; its codes no longer work`);
      c.close();
    });
    c.onClose((e) => this.again.lost(e));
    if (first) return;
    if (this.waitingForAgent) {
      this.waitingForAgent = false;
      const now = Date.now();
      while (this.autoMints.length && this.autoMints[0]! <= now - 3600_000) this.autoMints.shift();
      if (this.autoMints.length >= AUTO_MINTS_PER_HOUR) {
        log.warn(
          `share ${this.shareId} is served again; ${this.autoMints.length} codes were made by themselves in the last hour, the most without asking: type c + Enter for a new one`,
        );
        return;
      }
      this.autoMints.push(now);
      log.info(`share ${this.shareId} is served again; approving again with a new code`);
      await this.approver.mint(this.target);
    } else this.outage.back("reconnected to the coordinator; approving again");
  }
}
