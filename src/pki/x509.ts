// Single place that wires @peculiar/x509 to the runtime's WebCrypto; every pki file imports x509 from here.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(crypto);

export { x509 };
