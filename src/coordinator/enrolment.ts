// Host enrolment: a single-use token (from the CA directory or minted by the operator) and a CSR made on
// the host become a host certificate; the key never leaves the host, the token is spent once.
import { RefusedError } from "../errors.ts";
import { issueCert, readCsr } from "../pki/index.ts";
import type { ClientFrame, FrameOf } from "../wire/protocol.ts";
import type { Consent } from "./consent.ts";
import { checkEnrollToken, parseEnrollToken } from "./enroll.ts";
import type { BrokerOptions, Peer } from "./state.ts";

export async function enrollHost(
  o: BrokerOptions,
  consent: Consent,
  peer: Peer,
  f: FrameOf<ClientFrame, "enroll">,
): Promise<void> {
  const now = Date.now();
  await consent.rateLimit(peer, "enrol");
  let tokenId: string;
  try {
    // Tokens come from the CA directory's file (`tessera ca --add-enroll-token`) or the store (`tessera admin enroll-token`).
    const minted = await o.store.getEnrollToken(parseEnrollToken(f.token).id);
    tokenId = checkEnrollToken(f.token, [...o.enrollRecords(), ...(minted ? [minted] : [])], now);
  } catch (e) {
    if (e instanceof RefusedError) consent.enrolRefused(peer, e.code);
    throw e;
  }
  const csr = await readCsr(f.csr).catch((e) => {
    throw new RefusedError("bad_csr", `certificate request refused: ${e.message}`);
  });
  if ((await o.store.hostStatus(csr.spki)) === "removed") {
    throw new RefusedError(
      "host_removed",
      "this key belongs to a host the operator removed; enrol with a fresh key (`tessera link --token` makes one)",
    );
  }
  if (!(await o.store.useEnrollToken(tokenId, csr.spki, now))) {
    consent.enrolRefused(peer, "token_used");
    throw new RefusedError(
      "token_used",
      "this enrolment token was already used; ask the operator for a new one (`tessera admin enroll-token`)",
    );
  }
  // Two hosts under one name would look the same at every prompt: a taken name gets the first free suffix
  // (the host's `link` sees the name in its certificate and says so).
  const name = await freeName(o, f.name, csr.spki);
  const cert = await issueCert({
    caCertPem: o.ca.certPem,
    caKeyPem: o.ca.keyPem,
    publicKey: csr.publicKey,
    commonName: name,
    uris: [`tessera://host/${encodeURIComponent(name)}`],
    usage: "both",
    now: new Date(now),
    validForSeconds: o.limits.hostCertSeconds,
  });
  await o.store.addHost(csr.spki, name, now);
  o.audit.append("host.enrol", { host: name, hostKey: csr.spki, addr: peer.addr, tokenId });
  peer.ch.send({ t: "enrolled", cert });
}

/** Most suffixes tried for a taken name (name-2 .. name-100) before the enrolment is refused. */
const MAX_SUFFIX = 100;

async function freeName(o: BrokerOptions, asked: string, spki: string): Promise<string> {
  const taken = await o.store.hostNamesTaken(asked.slice(0, 60), spki);
  if (!taken.has(asked)) return asked;
  for (let i = 2; i <= MAX_SUFFIX; i++) {
    const name = `${asked.slice(0, 60)}-${i}`;
    if (!taken.has(name)) return name;
  }
  throw new RefusedError(
    "name_taken",
    `the host name "${asked}" and its first ${MAX_SUFFIX - 1} numbered variants are taken; enrol with another --name`,
  );
}
