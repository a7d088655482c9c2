// `tessera link`: trust a coordinator's CA (guests), or enrol this machine as a host with a one-time token.
import fs from "node:fs";
import os from "node:os";
import { defineCommand } from "citty";
import { ConfigError, TesseraError } from "../errors.ts";
import { certFingerprint, certInfo, createCsr, exportPrivateKeyPem, generateKeyPair, parsePin } from "../pki/index.ts";
import { ControlClient } from "../wire/control-client.ts";
import { parseEnrollToken } from "../coordinator/enroll.ts";
import { homeDir, homeFile, readConfig, writeConfig, writePrivate, writePublic } from "../cli/home.ts";
import { ask } from "../cli/ui.ts";
import { waitForCoordinator } from "../cli/coordinator-wait.ts";
import { readSecret } from "../cli/secret-input.ts";
import { VERSION } from "../version.ts";

export default defineCommand({
  meta: { name: "link", description: "Trust a coordinator (guests), or enrol this machine as a host with --token" },
  args: {
    coordinator: {
      type: "positional",
      required: true,
      description: "Coordinator address HOST:PORT (port 8443 if omitted)",
    },
    token: {
      type: "string",
      description:
        "Host enrolment token from the operator (pins the CA; makes this machine a host); `--token -` reads it from stdin or a no-echo prompt",
    },
    "token-file": {
      type: "string",
      description:
        "Read the enrolment token from this file (e.g. pki/enroll-token on the coordinator's machine), once the coordinator answers; keeps it out of `ps`",
    },
    name: { type: "string", description: "Host name shown to guests (default: this machine's hostname)" },
    "ca-file": { type: "string", description: "Trust the CA certificate in this file" },
    "ca-pin": { type: "string", description: "Trust the CA whose SHA-256 is this (sha256:...)" },
    yes: { type: "boolean", description: "Accept the CA fingerprint shown without asking (trust on first use)" },
  },
  async run({ args }) {
    const address = args.coordinator;
    const base = { address, version: VERSION };
    // A file that is not a certificate is reported before waiting on the network.
    const caFromFile = args["ca-file"] !== undefined ? readCaFile(args["ca-file"]) : undefined;
    await waitForCoordinator(address, (line) => console.error(line));
    if (args.token !== undefined || args["token-file"] !== undefined) {
      // Read only now: a coordinator started a moment ago writes the token file before it opens its port.
      const token = await readSecret({
        argv: args.token,
        file: args["token-file"],
        what: "enrolment token",
        flag: "--token",
      });
      const { caPin } = parseEnrollToken(token);
      const c = await ControlClient.dial({ ...base, caPinHex: caPin });
      const keys = await generateKeyPair();
      const name = (args.name || os.hostname()).slice(0, 64);
      c.send({ t: "enroll", token, csr: await createCsr({ keys, commonName: name }), name });
      const { cert } = await c.next("enrolled").finally(() => c.close());
      writePrivate(homeFile("host.key"), await exportPrivateKeyPem(keys.privateKey));
      writePublic(homeFile("host.crt"), cert);
      save(address, c.caPem);
      // The coordinator gives a taken name a suffix: the name in the certificate is the one guests see.
      const given = certInfo(cert).commonName;
      if (given !== name)
        console.error(
          `warning: another host is already enrolled as "${name}"; this one is "${given}" (enrol again with --name to choose another)`,
        );
      console.log(`enrolled as host "${given}" with ${address} (CA sha256:${caPin}); config in ${homeDir()}`);
      return;
    }
    let caPem: string;
    if (caFromFile !== undefined) {
      caPem = caFromFile;
      (await ControlClient.dial({ ...base, caPem })).close();
    } else {
      const pin = args["ca-pin"] ? parsePin(args["ca-pin"]) : undefined;
      const c = await ControlClient.dial({ ...base, caPinHex: pin });
      c.close();
      caPem = c.caPem;
      if (!pin && !args.yes) {
        const fp = certFingerprint(caPem);
        if (!process.stdin.isTTY)
          throw new ConfigError(
            `cannot ask whether to trust CA sha256:${fp} without a terminal; pass --ca-file, --ca-pin sha256:${fp} or --yes`,
          );
        const answer = await ask(
          `The coordinator at ${address} presents CA\n  sha256:${fp}\nCompare it with the operator's ca.sha256. Trust it? [y/N] `,
        );
        if (!/^y(es)?$/i.test(answer)) throw new TesseraError("not_trusted", "not linked: CA not trusted");
      }
    }
    save(address, caPem);
    console.log(`linked to ${address} (CA sha256:${certFingerprint(caPem)}); config in ${homeDir()}`);
  },
});

function save(address: string, caPem: string): void {
  writePublic(homeFile("ca.crt"), caPem);
  writeConfig({ ...readConfig(), coordinator: address });
}

function readCaFile(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read --ca-file ${file}: ${(err as Error).message}`);
  }
  try {
    if (text.includes("-----BEGIN CERTIFICATE-----")) {
      certFingerprint(text);
      return text;
    }
  } catch {
    // a damaged PEM block: said below, like any other non-certificate
  }
  const pin = /^\s*(sha256:[0-9a-f]{64})\s*$/i.exec(text);
  throw new ConfigError(
    pin
      ? `--ca-file ${file} holds a fingerprint, not a certificate: use --ca-pin ${pin[1]}`
      : `--ca-file ${file} is not a PEM certificate (a file starting -----BEGIN CERTIFICATE-----, such as the operator's pki/ca.crt)`,
  );
}
