// The guest's "path:" line, said once per change. A session's first streams go through the relay while the
// direct path is still being tried; that first "through the coordinator" is held a moment, so a join that
// goes direct says only "direct" (relay, then direct, a second later, read as a fault).
const HOLD_FIRST_RELAY_MS = 5_000;

export class PathLine {
  private shown: "direct" | "relay" | undefined;
  private held: ReturnType<typeof setTimeout> | undefined;

  /** relayOnly: no direct path will be tried, so nothing is held. */
  constructor(
    private readonly say: (line: string) => void,
    private readonly relayOnly = false,
  ) {}

  report(p: "direct" | "relay"): void {
    if (p === this.shown) return;
    if (this.shown === undefined && p === "relay" && !this.relayOnly) {
      this.held ??= setTimeout(() => {
        this.held = undefined;
        this.show("relay");
      }, HOLD_FIRST_RELAY_MS);
      this.held.unref?.();
      return;
    }
    this.stop();
    this.show(p);
  }

  stop(): void {
    if (this.held) clearTimeout(this.held);
    this.held = undefined;
  }

  private show(p: "direct" | "relay"): void {
    this.shown = p;
    this.say(p === "direct" ? "path: direct to the host" : "path: through the coordinator");
  }
}
