// A host as `tessera share --port` runs it, without the terminal: the real Agent and the real host/consent.ts,
// with a test front end that answers each request it is shown (or leaves it waiting) and keeps every notice.
import { Agent } from "../../src/host/agent.ts";
import { CodeKeeper } from "../../src/host/code-keeper.ts";
import { type Decision, HostConsent, type Waiting } from "../../src/host/consent.ts";
import { TargetPolicy } from "../../src/host/policy.ts";
import { YesBook } from "../../src/host/yes-book.ts";
import type { ApproverBook } from "../../src/host/approver-book.ts";
import type { ControlClient } from "../../src/wire/control-client.ts";
import type { Live } from "../coordinator/live.ts";

export interface TestHost {
  spki: string;
  keyPem: string;
  certPem: string;
  code: string;
  agent: Agent;
  consent: HostConsent;
  client: ControlClient;
  /** Requests shown to the host (its prompts), in order. */
  prompts: Waiting[];
  /** Notices the host read (wrong code, abandoned, refused) and the agent's refusals, in order. */
  log: string[];
  /** Session closes the host heard of. */
  closed: string[];
  mint(target?: string): Promise<string>;
}

export async function startHost(
  l: Live,
  shareId: string,
  port: number,
  o: {
    answer?: (w: Waiting) => Decision | undefined;
    requestsById?: boolean;
    failBudget?: number;
    targets?: string[];
    /** Run the agent as `tessera agent` does (receipts and this approvers book, no in-process vouch). */
    approvers?: ApproverBook;
  } = {},
): Promise<TestHost> {
  const id = await l.enrolledHost(shareId);
  const keeper = new CodeKeeper(id.spki);
  const yes = new YesBook();
  const log: string[] = [];
  const prompts: Waiting[] = [];
  const closed: string[] = [];
  let consent!: HostConsent;
  consent = new HostConsent(
    { shareId, keeper, hostKeyPem: id.keyPem, requestsById: !!o.requestsById, yes, failBudget: o.failBudget },
    {
      ask: (w) => {
        prompts.push(w);
        const d = (o.answer ?? (() => ({ allow: true })))(w);
        if (d) consent.decide(w.ask.requestId, d);
      },
      gone: () => {},
      notice: (line) => log.push(line),
    },
  );
  const agent = new Agent(
    {
      address: l.address,
      caPem: l.ca.certPem,
      ...id,
      version: "test",
      shareId,
      policy: new TargetPolicy(o.targets ?? [`127.0.0.1:${port}`]),
      approver: true,
      reconnect: false,
      requestsById: o.requestsById,
      vouch: o.approvers ? undefined : yes,
      receipts: true,
      approvers: o.approvers,
    },
    { onStream: (_sid, err) => err && log.push(err) },
  );
  const client = await agent.start();
  consent.bind(client);
  client.on("closed", (f) => closed.push(f.reason));
  const mint = async (target?: string) => (await consent.mint(target)).code;
  return {
    spki: id.spki,
    keyPem: id.keyPem,
    certPem: id.certPem,
    code: await mint(),
    agent,
    consent,
    client,
    prompts,
    log,
    closed,
    mint,
  };
}

/** Resolves once `cond` holds, polled on the event loop (bounded by the test's timeout). */
export async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(5);
  }
}
