// Resolves when the user presses Ctrl-C (or the process is asked to stop), so commands can clean up.
export function untilInterrupted(): { promise: Promise<string>; trigger(reason: string): void; readonly done: boolean } {
  let trigger!: (reason: string) => void;
  let done = false;
  const promise = new Promise<string>((resolve) => {
    trigger = resolve;
    process.once("SIGINT", () => resolve("interrupted"));
    process.once("SIGTERM", () => resolve("terminated"));
    process.once("SIGHUP", () => resolve("hung up"));
  });
  void promise.then(() => (done = true));
  return { promise, trigger, get done() { return done; } };
}
