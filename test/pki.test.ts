// Unit tests for src/pki, plus a real node:tls mutual-TLS handshake using the certificates it produces.
import { describe, expect, test } from "bun:test";
import tls from "node:tls";
import type { AddressInfo } from "node:net";
import {
  certFingerprint,
  certInfo,
  createCA,
  createCsr,
  derToPem,
  exportPrivateKeyPem,
  formatPin,
  generateKeyPair,
  importPrivateKeyPem,
  issueCert,
  parsePin,
  pemToDer,
  PkiError,
  publicKeyFromPrivatePem,
  readCsr,
  sanForName,
  spkiFingerprint,
  splitPemBlocks,
  verifyIssuedBy,
  x509,
} from "../src/pki/index.ts";

const NOW = new Date("2030-01-01T00:00:00Z");

async function leaf(
  ca: { certPem: string; keyPem: string },
  names: string[],
  usage: "server" | "client" | "both",
  now = NOW,
) {
  const keys = await generateKeyPair();
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  const san = names.map(sanForName);
  const certPem = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    publicKey: keys.publicKey,
    commonName: names[0] ?? "client",
    dnsNames: san.flatMap((s) => s.dnsNames),
    ipAddresses: san.flatMap((s) => s.ipAddresses),
    usage,
    now,
    validForSeconds: 3600,
  });
  return { certPem, keyPem, keys };
}

async function expectPkiError(p: Promise<unknown> | (() => unknown), match: RegExp) {
  let err: unknown;
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(PkiError);
  expect((err as PkiError).code).toBe("pki");
  expect((err as PkiError).name).toBe("PkiError");
  expect((err as PkiError).message).toMatch(match);
}

describe("pem", () => {
  test("round trips DER and splits chains", () => {
    const der = new Uint8Array(200).map((_, i) => i);
    const pem = derToPem(der, "CERTIFICATE");
    expect(pem.startsWith("-----BEGIN CERTIFICATE-----\n")).toBe(true);
    expect(pem.split("\n").every((l) => l.length <= 64)).toBe(true);
    expect(pemToDer(pem)).toEqual(der);
    const other = derToPem(new Uint8Array([1, 2, 3]), "PRIVATE KEY");
    expect(splitPemBlocks(`junk\n${pem}\r\n${other}`)).toEqual([pem, other]);
    expect(pemToDer(pem.replace(/\n/g, "\r\n"))).toEqual(der);
  });

  test("rejects non-PEM and corrupt base64", async () => {
    await expectPkiError(() => pemToDer("hello"), /not PEM/);
    await expectPkiError(() => pemToDer("-----BEGIN X-----\nab$d\n-----END X-----"), /invalid base64/);
  });
});

describe("keys", () => {
  test("PKCS#8 export/import and public key derivation", async () => {
    const keys = await generateKeyPair();
    const pem = await exportPrivateKeyPem(keys.privateKey);
    expect(pem.startsWith("-----BEGIN PRIVATE KEY-----\n")).toBe(true);
    const priv = await importPrivateKeyPem(pem);
    const pub = await publicKeyFromPrivatePem(pem);
    expect(new Uint8Array(await crypto.subtle.exportKey("spki", pub))).toEqual(
      new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
    );
    const data = new TextEncoder().encode("hi");
    const alg = { name: "ECDSA", hash: "SHA-256" };
    const sig = await crypto.subtle.sign(alg, priv, data);
    expect(await crypto.subtle.verify(alg, pub, sig, data)).toBe(true);
  });

  test("rejects SEC1 and non-P-256 keys with actionable errors", async () => {
    await expectPkiError(
      importPrivateKeyPem(derToPem(new Uint8Array([48, 0]), "EC PRIVATE KEY")),
      /openssl pkcs8 -topk8/,
    );
    const p384 = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
      "sign",
    ])) as CryptoKeyPair;
    await expectPkiError(importPrivateKeyPem(await exportPrivateKeyPem(p384.privateKey)), /ECDSA P-256/);
  });
});

describe("CA and issuance", () => {
  test("createCA makes a self-signed CA", async () => {
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    const cert = new x509.X509Certificate(ca.certPem);
    expect(ca.keyPem).toContain("-----BEGIN PRIVATE KEY-----");
    expect(await cert.isSelfSigned()).toBe(true);
    const bc = cert.getExtension(x509.BasicConstraintsExtension)!;
    expect(bc.ca).toBe(true);
    expect(bc.critical).toBe(true);
    expect(bc.pathLength).toBe(0);
    const ku = cert.getExtension(x509.KeyUsagesExtension)!;
    expect(ku.critical).toBe(true);
    expect(ku.usages).toBe(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign);
    expect(cert.getExtension(x509.SubjectKeyIdentifierExtension)).not.toBeNull();
    expect(cert.serialNumber.length).toBeGreaterThanOrEqual(30);
    expect(cert.signatureAlgorithm).toMatchObject({ name: "ECDSA", hash: { name: "SHA-256" } });
    await verifyIssuedBy(ca.certPem, ca.certPem, NOW);
    const info = certInfo(ca.certPem);
    expect(info.commonName).toBe("Test CA");
    expect(info.notAfter.getTime()).toBe(NOW.getTime() + 3650 * 86_400_000);
  });

  test("server cert for localhost has a DNS SAN and the right extensions", async () => {
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    const { certPem } = await leaf(ca, ["localhost"], "server");
    await verifyIssuedBy(certPem, ca.certPem, NOW);
    const info = certInfo(certPem);
    expect(info).toMatchObject({ commonName: "localhost", dnsNames: ["localhost"], ipAddresses: [], uris: [] });
    expect(info.notBefore.getTime()).toBe(NOW.getTime() - 60_000);
    expect(info.notAfter.getTime()).toBe(NOW.getTime() + 3_600_000);
    const cert = new x509.X509Certificate(certPem);
    expect(cert.getExtension(x509.BasicConstraintsExtension)!.ca).toBe(false);
    const ku = cert.getExtension(x509.KeyUsagesExtension)!;
    expect([ku.critical, ku.usages]).toEqual([true, x509.KeyUsageFlags.digitalSignature]);
    expect(cert.getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([x509.ExtendedKeyUsage.serverAuth]);
    const aki = cert.getExtension(x509.AuthorityKeyIdentifierExtension)!;
    const caSki = new x509.X509Certificate(ca.certPem).getExtension(x509.SubjectKeyIdentifierExtension)!;
    expect(aki.keyId).toBe(caSki.keyId);
  });

  test("IP literals become IP SANs, not DNS SANs", async () => {
    expect(sanForName("127.0.0.1")).toEqual({ dnsNames: [], ipAddresses: ["127.0.0.1"] });
    expect(sanForName("::1")).toEqual({ dnsNames: [], ipAddresses: ["::1"] });
    expect(sanForName("[::1]")).toEqual({ dnsNames: [], ipAddresses: ["::1"] });
    expect(sanForName("example.com")).toEqual({ dnsNames: ["example.com"], ipAddresses: [] });
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    const v4 = certInfo((await leaf(ca, ["127.0.0.1"], "server")).certPem);
    expect([v4.dnsNames, v4.ipAddresses]).toEqual([[], ["127.0.0.1"]]);
    const v6 = certInfo((await leaf(ca, ["::1"], "server")).certPem);
    expect([v6.dnsNames, v6.ipAddresses]).toEqual([[], ["::1"]]);
    const mapped = certInfo((await leaf(ca, ["::ffff:10.0.0.1"], "server")).certPem);
    expect(mapped.ipAddresses).toEqual(["::ffff:a00:1"]);
  });

  test("usage both, URIs and explicit serial", async () => {
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    const keys = await generateKeyPair();
    const certPem = await issueCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      publicKey: keys.publicKey,
      commonName: "node-1",
      uris: ["spiffe://tessera/node-1"],
      usage: "both",
      now: NOW,
      validForSeconds: 60,
      serial: new Uint8Array([0x01, 0x02, 0xff]),
    });
    const info = certInfo(certPem);
    expect(info.uris).toEqual(["spiffe://tessera/node-1"]);
    expect(info.serialHex).toBe("0102ff");
    expect(new x509.X509Certificate(certPem).getExtension(x509.ExtendedKeyUsageExtension)!.usages).toEqual([
      x509.ExtendedKeyUsage.serverAuth,
      x509.ExtendedKeyUsage.clientAuth,
    ]);
  });

  test("issueCert refuses a CA key that does not match the CA certificate", async () => {
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    const other = await createCA({ commonName: "Test CA", now: NOW });
    const keys = await generateKeyPair();
    await expectPkiError(
      issueCert({
        caCertPem: ca.certPem,
        caKeyPem: other.keyPem,
        publicKey: keys.publicKey,
        commonName: "x",
        usage: "server",
        now: NOW,
        validForSeconds: 60,
      }),
      /does not match/,
    );
  });
});

describe("verifyIssuedBy", () => {
  test("rejects a cert from another CA, even one with the same name", async () => {
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    const sameName = await createCA({ commonName: "Test CA", now: NOW });
    const otherName = await createCA({ commonName: "Other CA", now: NOW });
    await expectPkiError(
      verifyIssuedBy((await leaf(sameName, ["localhost"], "server")).certPem, ca.certPem, NOW),
      /not issued by this CA/,
    );
    await expectPkiError(
      verifyIssuedBy((await leaf(otherName, ["localhost"], "server")).certPem, ca.certPem, NOW),
      /not issued by this CA/,
    );
  });

  test("rejects expired and not-yet-valid certs", async () => {
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    const { certPem } = await leaf(ca, ["localhost"], "server");
    const { notAfter } = certInfo(certPem);
    await expectPkiError(
      verifyIssuedBy(certPem, ca.certPem, new Date(notAfter.getTime() + 1000)),
      new RegExp(`expired at ${notAfter.toISOString()}`),
    );
    await expectPkiError(verifyIssuedBy(certPem, ca.certPem, new Date(NOW.getTime() - 3_600_000)), /not valid until/);
  });
});

describe("CSR", () => {
  test("round trip", async () => {
    const keys = await generateKeyPair();
    const csrPem = await createCsr({ keys, commonName: "alice, O=evil" });
    expect(csrPem.startsWith("-----BEGIN CERTIFICATE REQUEST-----\n")).toBe(true);
    const csr = await readCsr(csrPem);
    expect(csr.commonName).toBe("alice, O=evil");
    expect(csr.spki).toBe(spkiFingerprint(csrPem));
    expect(new Uint8Array(await crypto.subtle.exportKey("spki", csr.publicKey))).toEqual(
      new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
    );
    // The key in the CSR is the one that ends up certified.
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    const certPem = await issueCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      publicKey: csr.publicKey,
      commonName: csr.commonName,
      usage: "client",
      now: NOW,
      validForSeconds: 60,
    });
    expect(certInfo(certPem).spki).toBe(csr.spki);
  });

  test("tampered signature is rejected", async () => {
    const csrPem = await createCsr({ keys: await generateKeyPair(), commonName: "alice" });
    const der = pemToDer(csrPem);
    der[der.length - 1]! ^= 0x01; // last byte is inside the ECDSA signature's s value
    await expectPkiError(readCsr(derToPem(der, "CERTIFICATE REQUEST")), /signature is invalid/);
  });

  test("rejects oversized and non-CSR input", async () => {
    await expectPkiError(readCsr("A".repeat(16 * 1024 + 1)), /too large/);
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    await expectPkiError(readCsr(ca.certPem), /CERTIFICATE REQUEST/);
  });

  test("rejects keys that are not P-256", async () => {
    const keys = (await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-384" }, true, [
      "sign",
      "verify",
    ])) as CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({
      name: "CN=x",
      keys,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-384" } as EcdsaParams,
    });
    await expectPkiError(readCsr(csr.toString("pem")), /P-256/);
  });
});

describe("fingerprints and pins", () => {
  test("formats", async () => {
    const ca = await createCA({ commonName: "Test CA", now: NOW });
    const fp = certFingerprint(ca.certPem);
    expect(fp).toMatch(/^[0-9a-f]{64}$/);
    expect(fp).toBe(new Bun.CryptoHasher("sha256").update(pemToDer(ca.certPem)).digest("hex"));
    const spki = spkiFingerprint(ca.certPem);
    expect(spki).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    const pub = await publicKeyFromPrivatePem(ca.keyPem);
    const spkiDer = await crypto.subtle.exportKey("spki", pub);
    expect(spkiFingerprint(derToPem(spkiDer, "PUBLIC KEY"))).toBe(spki);
    expect(spkiFingerprint(Buffer.from(spkiDer).toString("base64"))).toBe(spki);
    await expectPkiError(() => spkiFingerprint("not a key"), /PEM/);
    expect(formatPin(fp)).toBe(`sha256:${fp}`);
    expect(certInfo(ca.certPem)).toMatchObject({ fingerprint: fp, spki });
  });

  test("parsePin accepts and rejects", async () => {
    const hex = "ab".repeat(32);
    expect(parsePin(`sha256:${hex}`)).toBe(hex);
    expect(parsePin(`SHA256:${hex.toUpperCase()}`)).toBe(hex);
    expect(parsePin(`sha256:${hex.match(/../g)!.join(":").toUpperCase()}`)).toBe(hex);
    expect(parsePin(formatPin(hex))).toBe(hex);
    for (const bad of [
      hex,
      `sha256:${hex.slice(2)}`,
      `sha256:${hex}ab`,
      `sha1:${hex}`,
      `sha256:${"zz".repeat(32)}`,
      `sha256::${hex}`,
      "",
    ]) {
      await expectPkiError(() => parsePin(bad), /invalid pin/);
    }
  });
});

describe("node:tls interop", () => {
  type Tls = Parameters<typeof tls.connect>[0] & object;

  async function startEchoServer(opts: tls.TlsOptions) {
    const accepted: boolean[] = [];
    const refused: string[] = [];
    const server = tls.createServer({ ...opts, requestCert: true, rejectUnauthorized: true }, (socket) => {
      accepted.push(socket.authorized);
      socket.on("data", (d) => socket.write(d));
      socket.on("error", () => {});
    });
    server.on("tlsClientError", (err) => refused.push(err.message));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as AddressInfo).port;
    return { server, port, accepted, refused };
  }

  function closeServer(server: tls.Server) {
    return new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Connects, sends "ping", and reports what happened within the timeout. */
  function tryClient(opts: Tls, timeoutMs = 3000) {
    return new Promise<{ authorized: boolean; echoed: string; error?: Error }>((resolve) => {
      let echoed = "";
      let authorized = false;
      let error: Error | undefined;
      const socket = tls.connect(opts, () => {
        authorized = socket.authorized;
        socket.write("ping");
      });
      const finish = () => {
        clearTimeout(timer);
        socket.destroy();
        resolve({ authorized, echoed, error });
      };
      const timer = setTimeout(finish, timeoutMs);
      socket.on("data", (d) => {
        echoed += d.toString();
        if (echoed === "ping") finish();
      });
      socket.on("error", (e) => {
        error = e;
        finish();
      });
      socket.on("close", finish);
    });
  }

  test("mutual TLS with issued certificates", async () => {
    const now = new Date();
    const ca = await createCA({ commonName: "Interop CA", now });
    const server = await leaf(ca, ["localhost", "127.0.0.1"], "server", now);
    const client = await leaf(ca, ["client-1"], "client", now);
    const {
      server: srv,
      port,
      accepted,
    } = await startEchoServer({ key: server.keyPem, cert: server.certPem, ca: ca.certPem });
    try {
      const res = await tryClient({
        host: "127.0.0.1",
        port,
        ca: ca.certPem,
        key: client.keyPem,
        cert: client.certPem,
      });
      expect(res.error).toBeUndefined();
      expect(res.authorized).toBe(true);
      expect(res.echoed).toBe("ping");
      expect(accepted).toEqual([true]);
    } finally {
      await closeServer(srv);
    }
  });

  test("client certificate from a different CA is refused", async () => {
    const now = new Date();
    const ca = await createCA({ commonName: "Interop CA", now });
    const rogue = await createCA({ commonName: "Interop CA", now });
    const server = await leaf(ca, ["127.0.0.1"], "server", now);
    const client = await leaf(rogue, ["client-1"], "client", now);
    const {
      server: srv,
      port,
      accepted,
      refused,
    } = await startEchoServer({ key: server.keyPem, cert: server.certPem, ca: ca.certPem });
    try {
      const res = await tryClient({
        host: "127.0.0.1",
        port,
        ca: ca.certPem,
        key: client.keyPem,
        cert: client.certPem,
      });
      expect(res.echoed).toBe("");
      expect(accepted).toEqual([]);
      expect(refused.length).toBe(1);
    } finally {
      await closeServer(srv);
    }
  });
});
