// OpenSSH signatures over a release's SHA256SUMS (`ssh-keygen -Y sign`, namespace tessera-release):
// the same tool every macOS and Linux has had since OpenSSH 8.1 verifies them, so users need nothing
// new. install.sh verifies with the same allowed-signers line verifyFile writes here.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const NAMESPACE = "tessera-release";
/** The principal in the allowed-signers line; any name works, this one says what the key is for. */
export const PRINCIPAL = "tessera-release";

export class SigningError extends Error {
  override name = "SigningError";
}

/** Signs FILE into FILE.sig with the private key at keyFile; returns the public key that verifies it. */
export function signFile(file: string, keyFile: string): { publicKey: string; fingerprint: string } {
  if (!fs.existsSync(keyFile)) throw new SigningError(`no signing key at ${keyFile}`);
  const sig = `${file}.sig`;
  // ssh-keygen asks before overwriting, and with no terminal the answer is no: never leave an old signature.
  fs.rmSync(sig, { force: true });
  const signed = sshKeygen(["-Y", "sign", "-f", keyFile, "-n", NAMESPACE, file]);
  if (signed.code !== 0 || !fs.existsSync(sig))
    throw new SigningError(
      `ssh-keygen could not sign ${path.basename(file)} with ${keyFile}: ${lastLines(signed.err)}`,
    );
  const pub = sshKeygen(["-y", "-f", keyFile]);
  if (pub.code !== 0) throw new SigningError(`cannot read the public half of ${keyFile}: ${lastLines(pub.err)}`);
  const publicKey = pub.out.trim();
  // Check what we just wrote, the way install.sh will, before anyone publishes it.
  verifyFile(file, sig, publicKey);
  return { publicKey, fingerprint: fingerprint(publicKey) };
}

/** Throws unless sigFile is a tessera-release signature of file by publicKey ("ssh-ed25519 AAAA... comment"). */
export function verifyFile(file: string, sigFile: string, publicKey: string): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-verify-"));
  try {
    const allowed = path.join(dir, "allowed_signers");
    fs.writeFileSync(allowed, allowedSigners(publicKey));
    const r = sshKeygen(["-Y", "verify", "-f", allowed, "-I", PRINCIPAL, "-n", NAMESPACE, "-s", sigFile], file);
    if (r.code !== 0)
      throw new SigningError(
        `${path.basename(sigFile)} is not a valid signature of ${path.basename(file)}: ${lastLines(r.err || r.out)}`,
      );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export function allowedSigners(publicKey: string): string {
  const [type, blob] = publicKey.trim().split(/\s+/);
  if (!type || !blob || !/^(ssh-ed25519|ecdsa-sha2-nistp\d+|ssh-rsa|sk-[\w@.-]+)$/.test(type))
    throw new SigningError(`not an OpenSSH public key: "${publicKey.slice(0, 40)}"`);
  return `${PRINCIPAL} namespaces="${NAMESPACE}" ${type} ${blob}\n`;
}

export function fingerprint(publicKey: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-fp-"));
  try {
    fs.writeFileSync(path.join(dir, "k.pub"), `${publicKey.trim()}\n`);
    const r = sshKeygen(["-l", "-f", path.join(dir, "k.pub")]);
    if (r.code !== 0) throw new SigningError(`cannot fingerprint the public key: ${lastLines(r.err)}`);
    return r.out.split(/\s+/)[1]!;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function sshKeygen(args: string[], stdinFile?: string): { code: number; out: string; err: string } {
  const bin = Bun.which("ssh-keygen");
  if (!bin) throw new SigningError("signing needs ssh-keygen (OpenSSH 8.1 or newer) on PATH");
  const r = Bun.spawnSync([bin, ...args], {
    stdin: stdinFile ? Bun.file(stdinFile) : "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: r.exitCode ?? 1, out: r.stdout.toString(), err: r.stderr.toString() };
}

const lastLines = (s: string) => s.trim().split("\n").slice(-2).join(" ").slice(0, 300);
