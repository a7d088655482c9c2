// `tessera replay FILE`: play a shell session's asciicast recording back in this terminal.
import { defineCommand } from "citty";
import { ConfigError, TesseraError } from "../errors.ts";
import { parseDuration } from "../cli/duration.ts";
import { CastError } from "../shell/asciicast.ts";
import { replay } from "../shell/replay.ts";

export default defineCommand({
  meta: { name: "replay", description: "Play back a recorded shell session (asciicast v2) with its original timing" },
  args: {
    file: {
      type: "positional",
      required: true,
      description: "The recording, e.g. TESSERA_HOME/recordings/SESSION.cast",
    },
    speed: { type: "string", default: "1", description: "Playback speed: 2 plays twice as fast" },
    "max-idle": { type: "string", description: "Cap every pause at this long, e.g. 2s or 500ms" },
  },
  async run({ args }) {
    const speed = Number(args.speed);
    if (!(speed > 0 && speed <= 1000))
      throw new ConfigError(`--speed must be a number above 0 and at most 1000 (got "${args.speed}")`);
    const maxIdleMs = args["max-idle"] !== undefined ? parseDuration(args["max-idle"], "max-idle") : undefined;
    try {
      await replay(args.file, {
        speed,
        maxIdleMs,
        write: (text) =>
          new Promise<void>((resolve) =>
            process.stdout.write(text) ? resolve() : process.stdout.once("drain", () => resolve()),
          ),
      });
    } catch (err) {
      if (err instanceof CastError) throw new TesseraError("bad_recording", `${args.file}: ${err.message}`);
      throw err;
    }
  },
});
