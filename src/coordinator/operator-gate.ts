// The one door to the operator's endpoints (revoke, /admin/, the console's data): the bearer token
// compared in constant time, wrong tokens rate limited per address, and every refusal audited as one
// counted `refused` line per address a window (refusals.ts), so guessing is slow, visible and cheap.
import { createHash, timingSafeEqual } from "node:crypto";
import type { AuditLog } from "../audit/log.ts";
import { RateLimiter } from "./limits.ts";
import { metrics } from "./metrics.ts";
import { RefusalTally } from "./refusals.ts";

/** Wrong tokens one address may send a window; past it, even the right one waits out the window. */
export const WRONG_TOKENS_PER_MINUTE = 10;

export interface GateOptions {
  /** SHA-256 of the operator token; undefined: the operator endpoints are off (403). */
  tokenHash: Buffer | undefined;
  audit: AuditLog;
  windowMs: number;
  maxAddresses: number;
  warn: (message: string) => void;
}

/** Why a request was turned away, with the status and the one line that says what to do. */
export interface Refusal {
  status: 401 | 403 | 429;
  message: string;
}

export class OperatorGate {
  private readonly wrong: RateLimiter;
  private readonly tally: RefusalTally;
  /** Addresses past their budget, until when: checked before the token so a right guess is not told apart. */
  private readonly blocked = new Map<string, number>();

  constructor(private readonly o: GateOptions) {
    this.wrong = new RateLimiter(WRONG_TOKENS_PER_MINUTE, o.windowMs, o.maxAddresses);
    this.tally = new RefusalTally(o.audit, o.windowMs, o.maxAddresses, o.warn);
  }

  /** Undefined when `header` carries the operator token and `ip` is not blocked; else the refusal. */
  check(header: string | null, ip: string, now = Date.now()): Refusal | undefined {
    if (!this.o.tokenHash) {
      return {
        status: 403,
        message:
          "operator endpoints (revoke, admin) are disabled: this coordinator has no operator token; put one in operator-token in its --certs directory and restart it",
      };
    }
    const until = this.blocked.get(ip);
    if (until !== undefined && until > now) return this.refuse(ip, "rate_limited", now);
    if (until !== undefined) this.blocked.delete(ip);
    if (checkBearer(header, this.o.tokenHash)) return undefined;
    if (!this.wrong.allow(ip, now)) {
      // Bounded like the limiter: a flood from many addresses forgets the oldest blocks, never grows.
      if (this.blocked.size >= this.o.maxAddresses) this.blocked.clear();
      this.blocked.set(ip, now + this.o.windowMs);
      return this.refuse(ip, "rate_limited", now);
    }
    return this.refuse(ip, "bad_token", now);
  }

  /** Writes the window's refused lines now (at shutdown), so none is lost. */
  flush(): Promise<void> {
    return this.tally.flush();
  }

  private refuse(ip: string, why: "bad_token" | "rate_limited", now: number): Refusal {
    this.tally.note(ip, `operator.${why}`, undefined, now);
    metrics.operatorRefusals.inc(1, { reason: why });
    return why === "bad_token"
      ? { status: 401, message: "missing or wrong operator token" }
      : {
          status: 429,
          message: `too many wrong operator tokens from ${ip}; wait ${Math.round(this.o.windowMs / 1000)}s and try again`,
        };
  }
}

export function hashToken(token: string): Buffer {
  return createHash("sha256").update(token.trim()).digest();
}

function checkBearer(header: string | null, expected: Buffer): boolean {
  const m = /^Bearer\s+(\S{1,512})$/.exec(header ?? "");
  // Compare hashes so the comparison is constant-time whatever the lengths.
  return m !== null && timingSafeEqual(hashToken(m[1]!), expected);
}
