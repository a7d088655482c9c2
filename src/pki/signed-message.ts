// The bytes a signature covers: each field prefixed with its length (4 bytes, big-endian), so no field's
// content can shift the boundary between two fields. Receipts (v2) and delegations sign messages built here.

/** A label and its fields, each length-prefixed; a field that is itself a list is passed pre-encoded. */
export function lengthPrefixed(parts: readonly (string | Buffer)[]): Buffer {
  return Buffer.concat(
    parts.flatMap((f) => {
      const bytes = typeof f === "string" ? Buffer.from(f, "utf8") : f;
      const len = Buffer.alloc(4);
      len.writeUInt32BE(bytes.length);
      return [len, bytes];
    }),
  );
}
