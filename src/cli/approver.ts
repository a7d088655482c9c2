// The host's side of consent: shows each request as a prompt, one at a time, and sends the answer.
import readline from "node:readline";
import { errorMessage } from "../errors.ts";
import { logger } from "../log.ts";
import type { ControlClient } from "../relay/client.ts";
import type { FrameOf, ServerFrame } from "../relay/protocol.ts";

type Ask = FrameOf<ServerFrame, "ask">;
const log = logger("share");

export class Approver {
  private readonly queue: Ask[] = [];
  private current: Ask | undefined;
  private rl: readline.Interface | undefined;

  constructor(private client: ControlClient, private readonly shareId: string, private readonly what = "port") {}

  start(): void {
    this.listen();
    this.rl = readline.createInterface({ input: process.stdin, terminal: false });
    this.rl.on("line", (line) => this.onLine(line.trim()));
    this.rl.on("close", () => {
      if (!process.stdin.isTTY) log.warn("standard input closed: requests can no longer be answered here and will expire");
    });
  }

  /** The connection dropped: whatever was waiting is void (the coordinator denies it, the guest may ask again). */
  pause(): void {
    if (this.current || this.queue.length) process.stderr.write(`\n  ${this.queue.length + (this.current ? 1 : 0)} waiting request(s) were cancelled: the connection to the coordinator dropped\n`);
    this.current = undefined;
    this.queue.length = 0;
  }

  /** Carries on over a new connection after a reconnect. */
  rebind(client: ControlClient): void {
    this.pause();
    this.client = client;
    this.listen();
  }

  private listen(): void {
    this.client.on("ask", (f) => {
      this.queue.push(f);
      if (!this.current) this.showNext();
    });
    this.client.on("cancel", (f) => {
      if (this.current?.requestId === f.requestId) {
        process.stderr.write(`\n  request ${f.requestId} is no longer waiting: ${f.reason}\n`);
        this.current = undefined;
        this.showNext();
      } else {
        const i = this.queue.findIndex((q) => q.requestId === f.requestId);
        if (i >= 0) this.queue.splice(i, 1);
      }
    });
    this.client.on("session", (f) => log.info(`session ${f.sessionId} open: ${f.guest.name} -> ${f.target}`));
    this.client.on("closed", (f) => log.info(`session ${f.sessionId} ended: ${f.reason}`));
  }

  /** Asks the coordinator for a fresh single-use code and prints it on a line of its own. */
  async mint(target?: string): Promise<void> {
    this.client.send({ t: "mint", shareId: this.shareId, target });
    const f = await this.client.next("code");
    const mins = Math.round((f.expiresAt - Date.now()) / 60_000);
    console.log(`code: ${f.code}`);
    process.stderr.write(`  the guest runs: tessera join ${f.code} --reason "..."   (single use, valid ${mins} minutes; type c + Enter for another code)\n`);
  }

  stop(): void {
    this.rl?.close();
  }

  private showNext(): void {
    const f = this.queue.shift();
    this.current = f;
    if (!f) return;
    const secs = Math.max(0, Math.round((f.deadline - Date.now()) / 1000));
    process.stderr.write(
      `\n── access request ${f.requestId} ──\n` +
        `  guest   ${f.guest.name}\n` +
        `  from    ${f.guest.addr}\n` +
        `  wants   ${this.what === "shell" ? "an interactive SHELL on this machine" : f.target}\n` +
        `  reason  ${f.reason || "(none given)"}\n` +
        `  key     ${f.guest.spki}\n` +
        `Allow ${f.guest.name} to reach ${this.what === "shell" ? "a shell" : f.target}? [y/N] (${secs}s to answer) `,
    );
  }

  private onLine(line: string): void {
    const f = this.current;
    if (!f) {
      if (/^c(ode)?$/i.test(line)) this.mint().catch((err) => log.error(errorMessage(err)));
      else if (line) process.stderr.write("  no request is waiting; type c + Enter to mint another code\n");
      return;
    }
    let allow: boolean;
    if (/^y(es)?$/i.test(line)) allow = true;
    else if (/^(n(o)?)?$/i.test(line)) allow = false;
    else {
      process.stderr.write("  please answer y or n: ");
      return;
    }
    this.client.send({ t: "decision", requestId: f.requestId, allow });
    process.stderr.write(allow ? `  approved ${f.guest.name}\n` : `  denied ${f.guest.name}\n`);
    this.current = undefined;
    this.showNext();
  }
}
