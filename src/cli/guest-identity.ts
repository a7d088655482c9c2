// The guest's long-term identity key in TESSERA_HOME: made on first use (0600), the same key on every join after.
import fs from "node:fs";
import { ConfigError } from "../errors.ts";
import { exportPrivateKeyPem, generateKeyPair, importPrivateKeyPem } from "../pki/index.ts";
import { homeFile, writePrivate } from "./home.ts";

/** The identity key (PKCS#8 PEM), made now if this machine has none. */
export async function loadGuestIdentity(): Promise<string> {
  const file = homeFile("identity.key");
  let pem = read(file);
  if (pem === undefined) {
    const keys = await generateKeyPair();
    try {
      // Exclusive create: two joins starting at once keep one identity, not two.
      writePrivate(file, await exportPrivateKeyPem(keys.privateKey), { force: false });
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      if ((err as { code?: string }).code !== "EEXIST")
        throw new ConfigError(`cannot write ${file}: ${(err as Error).message}`, { cause: err });
    }
    pem = read(file) ?? "";
  }
  try {
    await importPrivateKeyPem(pem);
  } catch (err) {
    throw new ConfigError(
      `${file} is not a usable identity key (${(err as Error).message}); delete it to start over as a new guest (hosts will see you as one)`,
      { cause: err },
    );
  }
  return pem;
}

function read(file: string): string | undefined {
  try {
    return fs.readFileSync(file, "utf8");
  } catch (err) {
    if ((err as { code?: string }).code === "ENOENT") return undefined;
    throw new ConfigError(`cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
}
