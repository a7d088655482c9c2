// Typed errors: every failure a user can see carries a stable code and a message they can act on.
export class TesseraError extends Error {
  override name = "TesseraError";
  constructor(
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A peer sent something we refuse; the connection ends, the process does not. */
export class ProtocolError extends TesseraError {
  override name = "ProtocolError";
  constructor(message: string, code = "protocol") {
    super(code, message);
  }
}

/** Local configuration (TESSERA_HOME, flags, files) is missing or wrong. */
export class ConfigError extends TesseraError {
  override name = "ConfigError";
  constructor(message: string, options?: { cause?: unknown }) {
    super("config", message, options);
  }
}

/** The coordinator refused a request; `code` is the refusal's code from the error frame. */
export class RefusedError extends TesseraError {
  override name = "RefusedError";
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
