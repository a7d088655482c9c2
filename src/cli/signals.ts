// Resolves when the user presses Ctrl-C (or the process is asked to stop), so commands can clean up.
export function untilInterrupted(): { promise: Promise<string>; trigger(reason: string): void } {
  let trigger!: (reason: string) => void;
  const promise = new Promise<string>((resolve) => {
    trigger = resolve;
    process.once("SIGINT", () => resolve("interrupted"));
    process.once("SIGTERM", () => resolve("terminated"));
    process.once("SIGHUP", () => resolve("hung up"));
  });
  return { promise, trigger };
}
