// An AI agent's side of a host: minting invites for a share a human runs in a terminal, over a
// mint-only attach (the coordinator refuses any decision from it), and asking how the share is doing.
import { TesseraError, errorMessage } from "../errors.ts";
import { capExpiry, leaveSecret } from "../host/code-keeper.ts";
import { ControlClient, type DialOptions } from "../wire/control-client.ts";
import type { FrameOf, ServerFrame } from "../wire/protocol.ts";

export interface Invite {
  /** HOST:PORT/XXXX-XXXX: what a guest (or a guest's agent) passes to access_request. */
  invite: string;
  code: string;
  target: string;
  expiresAt: string;
}

/** secretsDir: where this machine's `tessera share` looks for the secret halves of codes minted here. */
export async function mintInvites(
  dial: DialOptions & { secretsDir: string },
  shareId: string,
  count: number,
): Promise<{ invites: Invite[]; stopped?: string }> {
  const c = await ControlClient.dial(dial);
  const invites: Invite[] = [];
  try {
    c.send({ t: "attach", shareId, approve: false });
    await c.next("registered").catch((err) => {
      throw new TesseraError(
        "no_share",
        `cannot mint for share "${shareId}": ${errorMessage(err)}. The human runs \`tessera share\` on this machine, which prints the share id`,
      );
    });
    for (let i = 0; i < count; i++) {
      c.send({ t: "mint", shareId });
      let f: FrameOf<ServerFrame, "code">;
      try {
        f = await c.next("code");
      } catch (err) {
        if (!invites.length) throw err;
        return { invites, stopped: errorMessage(err) };
      }
      // The host's `share` answers it only for this share and target, and no later than the host's own cap.
      const code = leaveSecret(dial.secretsDir, f.nameplate, { shareId, target: f.target, expiresAt: f.expiresAt });
      invites.push({
        invite: `${dial.address}/${code}`,
        code,
        target: f.target,
        // The host's own cap applies (host/code-keeper.ts): the invite says the earlier of the two.
        expiresAt: new Date(capExpiry(f.expiresAt, Date.now())).toISOString(),
      });
    }
    return { invites };
  } finally {
    c.close();
  }
}

export async function shareStatus(dial: DialOptions, shareId: string): Promise<FrameOf<ServerFrame, "status">> {
  const c = await ControlClient.dial(dial);
  try {
    c.send({ t: "status", shareId });
    return await c.next("status");
  } finally {
    c.close();
  }
}
