// Every MCP tool's input, as a valibot schema (the SDK takes Standard Schema, and advertises the JSON Schema
// toStandardJsonSchema derives), plus the parsing of invites and local addresses those inputs carry.
import * as v from "valibot";
import { toStandardJsonSchema } from "@valibot/to-json-schema";
import { TesseraError } from "../errors.ts";
import { splitAddress } from "../wire/address.ts";
import { formatCode, normalizeCode } from "../wire/codes.ts";

/**
 * A valibot schema the SDK can both validate with and advertise. Checks JSON Schema cannot express
 * (v.check) still run on every call; the advertised schema simply leaves them out.
 */
export function toolInput<S extends v.GenericSchema>(schema: S) {
  const std = toStandardJsonSchema(schema)["~standard"];
  const lenient = <O extends { libraryOptions?: Record<string, unknown> }>(o: O): O => ({
    ...o,
    libraryOptions: { errorMode: "ignore", ...o.libraryOptions },
  });
  return {
    "~standard": {
      ...std,
      jsonSchema: {
        input: (o: Parameters<typeof std.jsonSchema.input>[0]) => std.jsonSchema.input(lenient(o)),
        output: (o: Parameters<typeof std.jsonSchema.output>[0]) => std.jsonSchema.output(lenient(o)),
      },
    },
  };
}

/** Text an agent writes for a human to read at a prompt: one line, no control or bidi-override characters. */
const oneLine = (max: number) =>
  v.pipe(
    v.string(),
    v.maxLength(max),
    v.regex(
      /^[^\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]*$/,
      "must be one line of plain text (no control characters)",
    ),
  );

/** What would be unwise to show a host and keep in an audit log forever. */
const SECRET_SHAPES: [RegExp, string][] = [
  [/-----BEGIN [A-Z ]*PRIVATE KEY-----/, "a private key"],
  [/\b(?:AKIA|ASIA)[0-9A-Z]{16}\b/, "an AWS access key"],
  [
    /\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{20,})/,
    "an API token",
  ],
  [/\b(?:password|passwd|secret|token|api[_-]?key)\s*[:=]\s*\S{4,}/i, "a password or token"],
];

export function secretIn(text: string): string | undefined {
  return SECRET_SHAPES.find(([re]) => re.test(text))?.[1];
}

const session = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be a session id from access_request or access_list"),
  v.description("The session id access_request returned"),
);
const share = v.pipe(
  v.string(),
  v.regex(/^[A-Za-z0-9_.-]{1,64}$/, "must be a share id like sh-1a2b3c4d5e6f"),
  v.description('The share id `tessera share` printed ("sharing ... as sh-...")'),
);

export const AccessRequestInput = v.strictObject({
  invite: v.pipe(
    v.string(),
    v.maxLength(300),
    v.regex(/^\S+$/, "must be one invite or code, without spaces"),
    v.description(
      "The invite the host gave you: HOST:PORT/XXXX-XXXX, or just the code XXXX-XXXX for the coordinator this machine is linked to",
    ),
  ),
  reason: v.pipe(
    oneLine(500),
    v.regex(/\S/, "must say why you need access"),
    v.check(
      (s) => !secretIn(s),
      (i) =>
        `looks like it contains ${secretIn(String(i.input))}; the reason is shown to the host and kept in the audit log, so never put a secret in it`,
    ),
    v.description(
      "Why you need access, in one or two plain sentences; shown to the host verbatim and kept in the audit log. Never include secrets.",
    ),
  ),
  local: v.optional(
    v.pipe(
      v.string(),
      v.maxLength(300),
      v.description(
        "Local address to listen on for a port share (default 127.0.0.1 with any free port); loopback only",
      ),
    ),
  ),
  timeout_s: v.optional(
    v.pipe(
      v.number(),
      v.integer(),
      v.minValue(1),
      v.maxValue(600),
      v.description(
        "Give up (and withdraw the request) if the host has not answered in this many seconds; default: the coordinator's own limit (2 minutes unless changed)",
      ),
    ),
  ),
});
export type AccessRequestInput = v.InferOutput<typeof AccessRequestInput>;

export const SessionInput = v.strictObject({ session });

export const ShellRunInput = v.strictObject({
  session,
  input: v.pipe(
    v.string(),
    v.maxLength(16 * 1024),
    v.description(
      'What to type into the remote shell. A newline is added unless it already ends with one (or is a lone control key such as "\\u0003" for Ctrl-C)',
    ),
  ),
  wait_ms: v.optional(
    v.pipe(
      v.number(),
      v.integer(),
      v.minValue(0),
      v.maxValue(60_000),
      v.description(
        "How long to collect output before returning (default 2000; call shell_read for output that comes later)",
      ),
    ),
    2000,
  ),
});

export const ShareInviteInput = v.strictObject({
  share,
  count: v.optional(
    v.pipe(
      v.number(),
      v.integer(),
      v.minValue(1),
      v.maxValue(10),
      v.description("How many single-use invites to mint (default 1)"),
    ),
    1,
  ),
});

export const ShareStatusInput = v.strictObject({ share });

/** An invite is HOST:PORT/CODE (that coordinator, this machine's linked CA) or a bare code (the linked coordinator). */
export function parseInvite(invite: string): { address?: string; code: string } {
  const slash = invite.lastIndexOf("/");
  const address = slash >= 0 ? invite.slice(0, slash) : undefined;
  const code = normalizeCode(slash >= 0 ? invite.slice(slash + 1) : invite);
  if (!code)
    throw new TesseraError(
      "bad_code",
      `"${invite}" is not an invite: expected HOST:PORT/XXXX-XXXX or a code like K7QF-M2XD; ask the host for the exact text`,
    );
  if (address !== undefined) splitAddress(address);
  return { address, code: formatCode(code) };
}

/** Where a port share listens: loopback only, so an agent never opens the host's port to its network. */
export function parseLocal(local: string | undefined): { host: string; port: number } {
  const a = splitAddress(local ?? "127.0.0.1:0", 0, true);
  const host = a.host === "localhost" ? "127.0.0.1" : a.host;
  if (!/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) && host !== "::1") {
    throw new TesseraError(
      "bad_address",
      `local must be a loopback address (127.0.0.1:PORT or [::1]:PORT), not "${local}"`,
    );
  }
  return { host, port: a.port };
}
