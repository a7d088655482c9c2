// The host's book of approvers: the delegations its key signed, and the ones it took back. The agent accepts a
// delegated receipt only if its delegation is in this book and not removed, so `tessera approvers remove` takes
// effect at the agent's next session even while the coordinator keeps routing asks to that approver. The agent
// re-reads the file when it changes (a separate `approvers` command writes it), atomically replaced, 0600.
import fs from "node:fs";
import path from "node:path";
import * as v from "valibot";
import { TesseraError } from "../errors.ts";
import { approverKey, Delegation } from "../pki/delegation.ts";
import { issueText } from "../validate.ts";

/** Most approvers a host keeps (live plus removed entries are each capped). */
export const MAX_APPROVERS = 256;

const Removal = v.strictObject({
  id: v.string(),
  name: v.string(),
  key: v.string(),
  at: v.pipe(v.number(), v.integer()),
});
const BookFile = v.strictObject({
  v: v.literal(1),
  approvers: v.pipe(v.array(Delegation), v.maxLength(MAX_APPROVERS)),
  removed: v.pipe(v.array(Removal), v.maxLength(MAX_APPROVERS * 4)),
});
type BookFile = v.InferOutput<typeof BookFile>;
export type Removal = v.InferOutput<typeof Removal>;

export class ApproverBook {
  private cache: { mtimeMs: number; size: number; book: BookFile } | undefined;

  constructor(private readonly file: string) {}

  /** The delegations in force (expired ones included: the chain check says so by name). */
  list(): Delegation[] {
    return this.read().approvers;
  }

  removals(): Removal[] {
    return this.read().removed;
  }

  /** Why the host does not (or no longer) stand behind this delegation: removed, or never in its book; else undefined. */
  revoked(d: Delegation): string | undefined {
    let b: BookFile;
    try {
      b = this.read();
    } catch (err) {
      return `the host's approvers book cannot be read (${(err as Error).message})`;
    }
    const key = approverKey(d);
    const gone = b.removed.find((r) => r.id === d.body.id || r.key === key);
    if (gone) return `was removed by the host at ${new Date(gone.at).toISOString()} (delegation ${gone.id})`;
    if (!b.approvers.some((x) => x.body.id === d.body.id && x.sig === d.sig))
      return `delegation ${d.body.id} is not in this host's approvers book`;
    return undefined;
  }

  add(d: Delegation): void {
    const b = this.read();
    if (b.approvers.some((x) => x.body.name === d.body.name))
      throw new TesseraError("config", `an approver named ${d.body.name} exists; remove it first or pick another name`);
    if (b.approvers.length >= MAX_APPROVERS)
      throw new TesseraError("limit", `this host keeps at most ${MAX_APPROVERS} approvers; remove one first`);
    this.write({ ...b, approvers: [...b.approvers, d] });
  }

  /** Takes an approver's delegations back; its key is refused for good. Returns what was removed. */
  remove(name: string, now: number): Removal[] {
    const b = this.read();
    const gone = b.approvers.filter((d) => d.body.name === name);
    if (gone.length === 0)
      throw new TesseraError("config", `no approver named ${name} (see \`tessera approvers list\`)`);
    const removals = gone.map((d) => ({ id: d.body.id, name, key: approverKey(d), at: now }));
    this.write({
      v: 1,
      approvers: b.approvers.filter((d) => d.body.name !== name),
      removed: [...b.removed, ...removals].slice(-MAX_APPROVERS * 4),
    });
    return removals;
  }

  private read(): BookFile {
    let st: fs.Stats;
    try {
      st = fs.statSync(this.file);
    } catch {
      return { v: 1, approvers: [], removed: [] };
    }
    if (this.cache && this.cache.mtimeMs === st.mtimeMs && this.cache.size === st.size) return this.cache.book;
    let json: unknown;
    try {
      json = JSON.parse(fs.readFileSync(this.file, "utf8"));
    } catch (err) {
      throw new TesseraError("config", `${this.file} is not valid JSON: ${(err as Error).message}`);
    }
    const r = v.safeParse(BookFile, json);
    if (!r.success) throw new TesseraError("config", `${this.file} is not an approvers book${issueText(r.issues)}`);
    this.cache = { mtimeMs: st.mtimeMs, size: st.size, book: r.output };
    return r.output;
  }

  private write(b: BookFile): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(b, null, 2)}\n`, { mode: 0o600 });
    fs.renameSync(tmp, this.file);
    this.cache = undefined;
  }
}
