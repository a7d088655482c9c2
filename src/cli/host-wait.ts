// The guest's wait for the host's answer, as its terminal shows it: a spinner only once a host is asking.
import { spinner } from "./ui.ts";

/**
 * The wait for the host, shown only once there is one: after the coordinator took the request and, for a
 * code, after the host's side proved it holds the code (before that nobody is asked). A request refused
 * here (a shell asked for with --local) ends with that reason instead of "disconnected".
 */
export class HostWait {
  private spin: { stop(): void } | undefined;
  refused: string | undefined;
  asked = false;

  constructor(private readonly byCode: boolean) {}

  pending(): void {
    if (!this.byCode) this.start();
  }

  confirmed(): void {
    this.start();
  }

  refuse(why: string, close: () => void): void {
    this.refused = why;
    close();
  }

  stop(): void {
    this.spin?.stop();
  }

  private start(): void {
    this.asked = true;
    this.spin ??= spinner("waiting for the host to approve... (Ctrl-C to cancel)");
  }
}
