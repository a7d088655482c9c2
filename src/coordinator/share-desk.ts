// The host's side of a share: an agent registers it (within the coordinator's and its host's caps),
// approvers and mint-only helpers attach to it, codes are minted for it, and its host may ask its status.
import { RefusedError } from "../errors.ts";
import { generateNameplate, hashCode } from "../wire/codes.ts";
import { attachProofProblem, delegationProblem, delegationSigner } from "../pki/delegation.ts";
import type { ClientFrame, FrameOf } from "../wire/protocol.ts";
import { sessionFrame } from "./consent.ts";
import { agentBack } from "./direct.ts";
import type { SessionBook } from "./sessions.ts";
import { shareStatus } from "./share-status.ts";
import { requireHost, type BrokerOptions, type LiveShare, type Peer } from "./state.ts";

type CF<T extends ClientFrame["t"]> = FrameOf<ClientFrame, T>;
/** Delegated approvers' connections one share hears at once: each is asked every request, so they are bounded. */
export const MAX_DELEGATED_APPROVERS = 16;

export class ShareDesk {
  /** Share ids being registered, with their host's key: held while the store answers, counted against the caps. */
  private readonly opening = new Map<string, string>();

  constructor(
    private readonly o: BrokerOptions,
    private readonly shares: Map<string, LiveShare>,
    private readonly sessions: SessionBook,
  ) {}

  async register(peer: Peer, f: CF<"register">): Promise<void> {
    const host = requireHost(peer);
    const known = this.shares.get(f.shareId);
    if (known && known.hostSpki !== host.spki)
      throw new RefusedError("share_taken", `share id "${f.shareId}" belongs to another host; pick another id`);
    if (known?.agent) throw new RefusedError("share_busy", `an agent is already serving share "${f.shareId}"`);
    const now = Date.now();
    const put = async () =>
      this.o.store.putShare({ id: f.shareId, hostSpki: host.spki, hostName: host.name, targets: f.targets }, now);
    if (known) {
      await put();
      await this.o.cluster?.claim(f.shareId);
    } else {
      this.checkShareCaps(f.shareId, host);
      // Held while the store answers, so racing registrations cannot overshoot the caps.
      this.opening.set(f.shareId, host.spki);
      try {
        const row = await this.o.store.getShare(f.shareId);
        if (row && row.hostSpki !== host.spki)
          throw new RefusedError("share_taken", `share id "${f.shareId}" belongs to another host; pick another id`);
        await put();
        await this.o.cluster?.claim(f.shareId);
      } finally {
        this.opening.delete(f.shareId);
      }
    }
    const share: LiveShare = known ?? {
      id: f.shareId,
      hostSpki: host.spki,
      hostName: host.name,
      targets: f.targets,
      approvers: new Set(),
      requests: new Set(),
      sessions: new Set(),
    };
    share.targets = f.targets;
    share.requestsById = f.requestsById ?? false;
    share.agent = peer;
    share.agentArrived?.();
    share.agentArrived = undefined;
    share.offlineSince = undefined;
    share.awayReason = undefined;
    if (f.approver) share.approvers.add(peer);
    this.shares.set(share.id, share);
    this.o.audit.append(known ? "share.back" : "share.open", {
      shareId: share.id,
      host: host.name,
      hostKey: host.spki,
      targets: f.targets.join(","),
      addr: peer.addr,
      requestsById: f.requestsById || undefined,
    });
    peer.ch.send({ t: "registered", shareId: share.id, targets: share.targets });
    this.noticeIfFull(peer);
    // The agent forgot its sessions when it lost us; tell it again which guests it serves.
    for (const s of [...share.sessions]) {
      if (!share.targets.includes(s.target)) this.sessions.close(s, "the host no longer offers this target");
      else {
        peer.ch.send(sessionFrame(s));
        agentBack(s);
      }
    }
  }

  /** A new share must fit the coordinator's cap and its host's (shares being registered count too). */
  private checkShareCaps(shareId: string, host: { spki: string; name: string }): void {
    if (this.opening.has(shareId))
      throw new RefusedError("share_busy", `an agent is already registering share "${shareId}"`);
    const { maxShares, maxSharesPerHost } = this.o.limits;
    if (this.shares.size + this.opening.size >= maxShares)
      throw new RefusedError(
        "limit",
        `this coordinator has reached its share limit (${maxShares} shares); try again later`,
      );
    let mine = 0;
    for (const s of this.shares.values()) if (s.hostSpki === host.spki) mine++;
    for (const spki of this.opening.values()) if (spki === host.spki) mine++;
    if (mine >= maxSharesPerHost) {
      throw new RefusedError(
        "limit",
        `host "${host.name}" already holds ${mine} shares, the per-host cap; stop one of them (a share whose agent went away counts until its resume grace ends), or ask the coordinator's operator to raise --max-shares-per-host`,
      );
    }
  }

  attach(peer: Peer, f: CF<"attach">): void {
    const host = requireHost(peer);
    const share = this.shares.get(f.shareId);
    if (!share || share.hostSpki !== host.spki) {
      throw new RefusedError(
        "no_share",
        `no agent of this host is serving share "${f.shareId}"; start \`tessera agent --share-id ${f.shareId} --allow HOST:PORT\` first`,
      );
    }
    // Mint-only (`tessera mcp`): codes yes, answers never; the human's prompt stays the only approver.
    if (f.approve === false) (share.minters ??= new Set()).add(peer);
    else share.approvers.add(peer);
    peer.ch.send({ t: "registered", shareId: share.id, targets: share.targets, requestsById: !!share.requestsById });
    this.noticeIfFull(peer);
  }

  /**
   * A delegated approver attaches: its delegation must be signed by the key of the host that holds the share, name
   * that share and be in force, and its proof must come from the approver key the delegation names. It then hears
   * that share's asks as the host's own approvers do. Whether the host still stands behind the delegation is the
   * agent's word (it refuses a removed approver's receipts); here it only decides who hears asks.
   */
  attachApprover(peer: Peer, f: CF<"attach-approver">): void {
    if (peer.host) throw new RefusedError("forbidden", "a host approves its shares with `tessera share --share-id`");
    const now = Date.now();
    const d = f.delegation;
    const bad = attachProofProblem(d, f.at, f.proof, now);
    if (bad) throw new RefusedError("forbidden", `this approver's attach does not hold: ${bad}`);
    const hostKey = delegationSigner(d);
    const mine = [...this.shares.values()].filter(
      (s) => s.hostSpki === hostKey && (f.shareId === undefined || s.id === f.shareId),
    );
    const covered = mine.filter((s) => !delegationProblem(d, { hostKey: s.hostSpki, shareId: s.id, at: now }));
    if (covered.length === 0) {
      const why = mine[0]
        ? delegationProblem(d, { hostKey: mine[0].hostSpki, shareId: mine[0].id, at: now })?.message
        : undefined;
      throw new RefusedError(
        "no_share",
        why ??
          `no share${f.shareId ? ` "${f.shareId}"` : ""} of the host that delegated to ${d.body.name} is served here right now; start its agent first`,
      );
    }
    for (const s of covered) {
      let delegated = 0;
      for (const a of s.approvers) if (a.approverName !== undefined) delegated++;
      if (delegated >= MAX_DELEGATED_APPROVERS)
        throw new RefusedError(
          "limit",
          `share "${s.id}" already has ${MAX_DELEGATED_APPROVERS} approvers attached from other devices; stop one first`,
        );
    }
    peer.approverName = d.body.name;
    for (const s of covered) {
      s.approvers.add(peer);
      this.o.audit.append("approver.attach", {
        shareId: s.id,
        host: s.hostName,
        approver: d.body.name,
        delegation: d.body.id,
        addr: peer.addr,
      });
      peer.ch.send({ t: "registered", shareId: s.id, targets: s.targets, requestsById: !!s.requestsById });
    }
  }

  status(peer: Peer, f: CF<"status">): void {
    const host = requireHost(peer);
    const share = this.shares.get(f.shareId);
    if (!share || share.hostSpki !== host.spki)
      throw new RefusedError("no_share", `this host has no share "${f.shareId}" on this coordinator`, { ref: f.ref });
    peer.ch.send(shareStatus(share, Date.now(), this.o.limits.idleTimeoutMs));
  }

  async mint(peer: Peer, f: CF<"mint">): Promise<void> {
    const share = this.shares.get(f.shareId);
    const mintOnly = !!share?.minters?.has(peer);
    if (!share || !(share.approvers.has(peer) || mintOnly))
      throw new RefusedError("forbidden", `you are not approving share "${f.shareId}"`);
    const target = f.target ?? share.targets[0]!;
    if (!share.targets.includes(target))
      throw new RefusedError(
        "bad_target",
        `share "${share.id}" does not allow ${target} (allowed: ${share.targets.join(", ")})`,
      );
    const now = Date.now();
    const max = this.o.limits.maxCodesPerShare;
    if ((await this.o.store.liveCodes(share.id, now)) >= max) {
      throw new RefusedError(
        "limit",
        `share "${share.id}" already has ${max} unused codes, the per-share cap; use one or wait for some to expire (the coordinator's operator sets the cap with --max-codes-per-share)`,
      );
    }
    // Only the nameplate is made here: the secret half is the minter's, and never comes this way.
    const expiresAt = now + this.o.limits.codeTtlMs;
    let nameplate = generateNameplate();
    for (
      let i = 0;
      !(await this.o.store.claimCode(hashCode(this.o.codeKey, nameplate), share.id, target, expiresAt, now));
      i++
    ) {
      if (i >= 20)
        throw new RefusedError(
          "limit",
          "the coordinator could not find a free nameplate for a new code; try again shortly",
        );
      nameplate = generateNameplate();
    }
    this.o.audit.append("code.mint", {
      shareId: share.id,
      host: share.hostName,
      target,
      expiresAt: new Date(expiresAt).toISOString(),
      mintOnly: mintOnly || undefined,
    });
    peer.ch.send({ t: "code", shareId: share.id, nameplate, target, expiresAt });
  }

  /** A host that (re)connects while the audit disk is full hears it at once, as the others did when it filled. */
  private noticeIfFull(peer: Peer): void {
    const trouble = this.o.audit.trouble;
    if (trouble) peer.ch.send({ t: "notice", code: "audit_full", message: trouble.slice(0, 500) });
  }
}
