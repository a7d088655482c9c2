// Resolves when the user presses Ctrl-C (or the process is asked to stop), so commands can clean up.
const SIGNALS = { SIGINT: "interrupted", SIGTERM: "terminated", SIGHUP: "hung up" } as const;

export function untilInterrupted(): {
  promise: Promise<string>;
  trigger(reason: string): void;
  release(): void;
  readonly done: boolean;
} {
  let trigger!: (reason: string) => void;
  let done = false;
  const promise = new Promise<string>((resolve) => (trigger = resolve));
  void promise.then(() => (done = true));
  const handlers = Object.entries(SIGNALS).map(([sig, why]) => [sig, () => trigger(why)] as const);
  for (const [sig, fn] of handlers) process.once(sig, fn);
  return {
    promise,
    trigger,
    /** Stops listening for signals (trigger still works), for a caller that handles them itself from here on. */
    release: () => {
      for (const [sig, fn] of handlers) process.off(sig, fn);
    },
    get done() {
      return done;
    },
  };
}
