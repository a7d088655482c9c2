// `tessera audit verify|tail`: prove the log's chain is whole, or read it as a table or raw JSON.
import fs from "node:fs";
import path from "node:path";
import { defineCommand } from "citty";
import { ConfigError, TesseraError } from "../errors.ts";
import { parseLine, splitLines, type VerifyResult } from "../audit/verify.ts";
import { groupChains, oneChainForHead, verifyChains } from "../audit/chains.ts";
import { duration } from "../audit/coverage.ts";
import { fetchHead, headUrl } from "../audit/head.ts";
import { isCaCertificate } from "../pki/index.ts";
import { header, row } from "../cli/audit-table.ts";
import { untilInterrupted } from "../cli/signals.ts";
import { repeatedValues } from "../cli/flags.ts";

function files(args: { _: string[] }, name: string): string[] {
  const list = args._.filter(Boolean);
  if (list.length === 0) throw new ConfigError(`say which audit log to ${name}: tessera audit ${name} FILE`);
  for (const f of list) if (!fs.existsSync(f)) throw new ConfigError(`${f}: no such file`);
  return list;
}

const verify = defineCommand({
  meta: {
    name: "verify",
    description:
      "Walk the hash chain (following rotated files beside it); several nodes' files at once are grouped into one chain per node by their rotation lines and each is verified; exit 0 with a summary per chain, or 1 naming each chain's first bad line",
  },
  args: {
    file: {
      type: "positional",
      required: true,
      description:
        "Audit log file(s), of one node or several (e.g. n1/audit.jsonl n2/audit.jsonl); rotated files each continues are found next to it",
    },
    cert: {
      type: "string",
      description:
        "Coordinator certificate (PEM), e.g. pki/coordinator.crt: check the signed checkpoints, require a signed start and the checkpoints the coordinator promised, and report the unsigned tail",
    },
    against: {
      type: "string",
      description:
        "The running coordinator's HTTP address, e.g. http://127.0.0.1:8080: fetch its signed head (GET /audit/head) and fail unless the file reaches it unchanged (needs --cert; one node's chain only)",
    },
    "host-key": {
      type: "string",
      description:
        "Pin the host key (SHA256:..., from `tessera version` on the host or its share's first line); repeat for several: every consent receipt must be signed by one of them, not by a key the coordinator recorded",
    },
    json: { type: "boolean", default: false, description: "Print the result as JSON" },
  },
  async run({ args, rawArgs }) {
    const certPem = args.cert ? readCoordinatorCert(args.cert) : undefined;
    const hostKeys = repeatedValues(rawArgs, "host-key")
      .flatMap((k) => k.split(","))
      .filter(Boolean);
    for (const k of hostKeys)
      if (!/^SHA256:[A-Za-z0-9+/]{43}$/.test(k))
        throw new ConfigError(
          `--host-key: "${k}" is not a key fingerprint (expected SHA256: and 43 base64 characters)`,
        );
    const list = files(args, "verify");
    if (args.against && !certPem)
      throw new ConfigError("--against needs --cert: the head the coordinator serves is checked with its certificate");
    if (args.against) oneChainForHead(groupChains(list).chains.length);
    // The head first, then the file: a live log only grows, so it must reach a head read before it.
    const head = args.against ? await fetchHead(headUrl(args.against), certPem!) : undefined;
    const all = verifyChains(list, { certPem, head, ...(hostKeys.length ? { hostKeys } : {}) });
    if (args.json) console.log(JSON.stringify(all.chains.length === 1 ? all.chains[0] : all));
    const many = all.chains.length > 1;
    all.chains.forEach((r, i) => {
      // Several nodes' logs share file names (n1/audit.jsonl, n2/audit.jsonl): name each chain by its newest file's path.
      if (many && !args.json) console.log(`chain ${i + 1} of ${all.chains.length}: ${r.files.at(-1)}`);
      if (r.ok && !args.json) for (const l of summary(r, hostKeys.length > 0)) console.log(l);
      if (!r.ok && !args.json) process.stderr.write(`FAILED: ${r.bad!.file}: ${r.bad!.message}\n`);
    });
    if (!args.json) for (const w of all.warnings) console.log(`warning: ${w}`);
    const broken = all.chains.filter((r) => !r.ok);
    if (many && !args.json) {
      console.log(
        broken.length === 0
          ? `overall: ok, all ${all.chains.length} chains verify`
          : `overall: FAILED, ${broken.length} of ${all.chains.length} chains broken (${broken.map((r) => r.bad!.file).join(", ")})`,
      );
    }
    if (broken.length > 0) {
      const where = broken
        .map((r) => `${r.bad!.kind} at line ${r.bad!.line} of ${many ? r.bad!.file : path.basename(r.bad!.file)}`)
        .join("; ");
      throw new TesseraError("audit_broken", `the audit chain is broken (${where})`);
    }
  },
});

/** One chain's summary as printed when it verifies. */
function summary(r: VerifyResult, pinned = false): string[] {
  const out: string[] = [];
  const span = r.events ? `seq ${r.firstSeq}-${r.lastSeq}, ${r.firstTs} .. ${r.lastTs}` : "empty";
  out.push(`ok: ${r.events} events (${span}) in ${r.files.map((f) => path.basename(f)).join(", ")}`);
  const sig =
    r.checkpoints === 0
      ? "no signed checkpoints"
      : r.signaturesChecked
        ? `${r.checkpoints} checkpoint signatures valid`
        : `${r.checkpoints} checkpoints (signatures not checked: pass --cert)`;
  const promise =
    r.signaturesChecked && r.policy && (r.policy.every || r.policy.intervalMs)
      ? `; the coordinator signs ${promised(r.policy)}`
      : "";
  out.push(`     ${sig}${promise}`);
  if (r.receipts)
    out.push(
      `     ${r.receipts} consent receipt${r.receipts === 1 ? "" : "s"} signed by ${pinned ? "a host key you pinned" : "the share's host (as the coordinator recorded it; pin it with --host-key)"}, each matching its decision`,
    );
  for (const d of r.delegated ?? []) out.push(`     ${d}`);
  if (r.cleanStop)
    out.push(
      `     ends with the signed checkpoint of a clean stop (seq ${r.lastCheckpoint!.seq}, ${r.lastCheckpoint!.ts})`,
    );
  if (r.head)
    out.push(
      `     reaches the running coordinator's signed head: seq ${r.head.seq} (written ${r.head.ts}, served ${r.head.at})`,
    );
  if (r.continuesFrom) out.push(`     continues from ${r.continuesFrom}, which is not here: that link is not checked`);
  for (const w of r.warnings) out.push(`warning: ${w}`);
  return out;
}

function promised(p: { every: number; intervalMs: number }): string {
  const parts = [
    p.every ? `every ${p.every} events` : "",
    p.intervalMs ? `within ${duration(p.intervalMs)} of any event` : "",
  ];
  return parts.filter(Boolean).join(" and ");
}

const tail = defineCommand({
  meta: {
    name: "tail",
    description: "Show audit events as a table (who, what, when, bytes), or raw JSON lines with --json",
  },
  args: {
    file: { type: "positional", required: true, description: "Audit log file" },
    lines: { type: "string", alias: "n", default: "20", description: "How many of the last events to show (0: all)" },
    follow: {
      type: "boolean",
      alias: "f",
      default: false,
      description: "Keep printing events as they are appended (follows rotation)",
    },
    json: { type: "boolean", default: false, description: "Raw JSON lines, for piping to jq and friends" },
  },
  async run({ args }) {
    const [file] = files(args, "tail");
    const n = Number(args.lines);
    if (!Number.isInteger(n) || n < 0) throw new ConfigError(`--lines must be a whole number (got "${args.lines}")`);
    const print = (b: Buffer) => {
      if (args.json)
        return void process.stdout.write(b.toString("utf8").endsWith("\n") ? b : Buffer.concat([b, Buffer.from("\n")]));
      const rec = parseLine(b);
      console.log(rec ? row(rec) : `(unreadable line) ${b.toString("utf8").trim().slice(0, 120)}`);
    };
    if (!args.json) console.log(header());
    const buf = fs.readFileSync(file!);
    const whole = buf.lastIndexOf(10) + 1;
    const lines = splitLines(buf.subarray(0, whole));
    for (const l of n === 0 ? lines : lines.slice(-n)) print(l);
    if (!args.follow) return;
    await follow(file!, whole, print);
  },
});

/** Polls for appended lines; a replaced or shrunk file (rotation) is read again from its start. */
async function follow(file: string, from: number, print: (b: Buffer) => void): Promise<void> {
  const stop = untilInterrupted();
  let offset = from;
  let ino = fs.statSync(file).ino;
  let partial = Buffer.alloc(0);
  const timer = setInterval(() => {
    let st: fs.Stats;
    try {
      st = fs.statSync(file);
    } catch {
      return; // between rename and re-create
    }
    if (st.ino !== ino || st.size < offset) {
      ino = st.ino;
      offset = 0;
      partial = Buffer.alloc(0);
    }
    if (st.size <= offset) return;
    const fd = fs.openSync(file, "r");
    const chunk = Buffer.alloc(st.size - offset);
    fs.readSync(fd, chunk, 0, chunk.length, offset);
    fs.closeSync(fd);
    offset = st.size;
    const data = Buffer.concat([partial, chunk]);
    const cut = data.lastIndexOf(10) + 1;
    for (const l of splitLines(data.subarray(0, cut))) print(l);
    partial = Buffer.from(data.subarray(cut));
  }, 200);
  await stop.promise;
  clearInterval(timer);
}

export default defineCommand({
  meta: { name: "audit", description: "Check and read the coordinator's append-only audit log" },
  subCommands: { verify, tail },
});

/** --cert: the coordinator's own certificate (its key signs the checkpoints); the CA's is the usual mix-up. */
function readCoordinatorCert(file: string): string {
  let pem: string;
  try {
    pem = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(`cannot read --cert ${file}: ${(err as Error).message}`);
  }
  let ca: boolean;
  try {
    ca = isCaCertificate(pem);
  } catch {
    throw new ConfigError(`--cert ${file} is not a PEM certificate: pass the coordinator's, e.g. pki/coordinator.crt`);
  }
  if (ca)
    throw new ConfigError(
      `--cert ${file}: that is the CA, not the coordinator's certificate; pass ${path.join(path.dirname(file), "coordinator.crt")} (its key signs the checkpoints)`,
    );
  return pem;
}
