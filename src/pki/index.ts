// Public face of src/pki: import from here rather than from the individual files.
export { x509 } from "./x509.ts";
export * from "./errors.ts";
export * from "./pem.ts";
export * from "./keys.ts";
export * from "./fingerprint.ts";
export * from "./ca.ts";
export * from "./csr.ts";
export * from "./verify.ts";
