// One consola instance for the whole process; modules take a tagged child so output says who spoke.
import { createConsola } from "consola";

export const baseLogger = createConsola({
  level: process.env.TESSERA_LOG_LEVEL ? Number(process.env.TESSERA_LOG_LEVEL) : 3,
  // Status goes to stderr so stdout stays clean for codes and piped data.
  stdout: process.stderr,
  stderr: process.stderr,
});

export function logger(tag: string) {
  return baseLogger.withTag(tag);
}
