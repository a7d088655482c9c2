// The one error type src/pki throws, so callers can tell certificate/key problems apart from everything else.
import { TesseraError } from "../errors.ts";

export class PkiError extends TesseraError {
  override name = "PkiError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("pki", message, options);
  }
}
