// Pairing an approver, the host's half: a one-off share (id pair-..., target "shell") whose single-use code the
// other device redeems with its approver key as its identity. The code's CPace binds that key and the host's key,
// so a coordinator relaying the pairing can neither learn a private key nor slip in its own. Once the run is
// confirmed the host says yes (one stream, two minutes) and hands the signed delegation over the end-to-end TLS
// stream: the coordinator carries ciphertext only. A wrong code is burnt and reported on both sides.
import { randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import { TesseraError } from "../errors.ts";
import { type Delegation, signDelegation } from "../pki/delegation.ts";
import { spkiFingerprint } from "../pki/fingerprint.ts";
import { SHELL_TARGET } from "../wire/protocol.ts";
import type { DialOptions } from "../wire/control-client.ts";
import { Agent } from "./agent.ts";
import type { ApproverBook } from "./approver-book.ts";
import { CodeKeeper } from "./code-keeper.ts";
import { HostConsent } from "./consent.ts";
import { askIdentity } from "./known-guests.ts";
import { TargetPolicy } from "./policy.ts";
import { YesBook } from "./yes-book.ts";

export interface PairingOptions
  extends Required<Pick<DialOptions, "address" | "caPem" | "keyPem" | "certPem" | "version">> {
  name: string;
  shares: "*" | string[];
  /** How long the delegation holds from now. */
  lifetimeMs: number;
  hostName: string;
  book: ApproverBook;
}

export interface PairingEvents {
  /** The code to give the other device (print it once). */
  code(code: string, expiresAt: number): void;
  /** Something the host must read: a wrong or abandoned code, a refused request. */
  notice(line: string): void;
}

/** Runs one pairing to its end: resolves with the delegation (kept in the book and handed over), or rejects. */
export async function pairApprover(o: PairingOptions, ev: PairingEvents): Promise<Delegation> {
  const shareId = `pair-${randomBytes(9).toString("base64url")}`;
  const yes = new YesBook();
  // The host's key goes into the PAKE: the device pairing pins it, and the delegation must be signed by it.
  const keeper = new CodeKeeper(spkiFingerprint(o.certPem));
  let done!: (d: Delegation) => void;
  let failed!: (e: Error) => void;
  const result = new Promise<Delegation>((res, rej) => {
    done = res;
    failed = rej;
  });
  // It may fail before it is awaited (a notice while the code is being minted): never an unhandled rejection.
  result.catch(() => {});
  /** The approver key the code vouched for, once the host said yes to it. */
  let approverPub: string | undefined;
  const consent = new HostConsent(
    { shareId, keeper, hostKeyPem: o.keyPem, requestsById: false, yes, failBudget: 1 },
    {
      ask: (w) => {
        const id = askIdentity(w.ask);
        if (!w.ask.pake || !w.ask.identity || !id.id) {
          consent.decide(w.ask.requestId, { allow: false, reason: "a pairing needs the code and an approver key" });
          return failed(
            new TesseraError(
              "bad_identity",
              `the pairing request carried no approver key it could prove (${id.problem ?? "none"})`,
            ),
          );
        }
        approverPub = w.ask.identity.pub;
        consent.decide(w.ask.requestId, { allow: true, scope: { streams: 1, ttlMs: 120_000 } });
      },
      gone: (_id, reason) => failed(new TesseraError("denied", `the pairing request ended: ${reason}`)),
      notice: (line) => {
        // A wrong or abandoned code (burnt), or a refused request: this pairing is over.
        const said = `${line.replace(/ \(make a new one with c \+ Enter\)$/, "")}; run \`tessera approvers add\` again for a new code`;
        ev.notice(said);
        failed(new TesseraError("code_mismatch", said));
      },
    },
  );
  const handOver = {
    serve(stream: Duplex) {
      if (!approverPub) return void stream.destroy();
      const now = Date.now();
      let d: Delegation;
      try {
        d = signDelegation(o.keyPem, {
          name: o.name,
          hostName: o.hostName,
          approverPub,
          shares: o.shares,
          issuedAt: now,
          expiresAt: now + o.lifetimeMs,
        });
        o.book.add(d);
      } catch (err) {
        stream.destroy();
        return failed(err as Error);
      }
      // Done when the device has read it all and closed its side: stopping sooner would cut the stream under it.
      stream.on("error", () => {});
      stream.on("close", () => done(d));
      stream.end(`${JSON.stringify(d)}\n`);
      stream.resume();
    },
  };
  const agent = new Agent({
    ...o,
    shareId,
    policy: new TargetPolicy([]),
    approver: true,
    reconnect: false,
    vouch: yes,
    receipts: true,
    shell: handOver,
    relayOnly: true,
  });
  try {
    const client = await agent.start();
    consent.bind(client);
    const { code, expiresAt } = await consent.mint(SHELL_TARGET);
    ev.code(code, expiresAt);
    const timer = setTimeout(
      () => failed(new TesseraError("timeout", "the pairing code expired unused")),
      Math.max(0, expiresAt - Date.now()),
    );
    try {
      return await result;
    } finally {
      clearTimeout(timer);
    }
  } finally {
    await agent.stop().catch(() => {});
  }
}
