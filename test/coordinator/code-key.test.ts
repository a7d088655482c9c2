// Unit tests for src/coordinator/code-key.ts and the state file's mode: neither a copy of the database
// nor another local user can recover what makes code hashes searchable.
import { afterEach, expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { loadCodeKey } from "../../src/coordinator/code-key.ts";
import { Store } from "../../src/store/store.ts";

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(async () => {
  for (const s of stores.splice(0)) await s.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-codekey-"));
  dirs.push(d);
  return d;
}
async function open(file: string): Promise<Store> {
  const s = await Store.open(file);
  stores.push(s);
  return s;
}

test("a new state database is created 0600, and a looser existing one is tightened", async () => {
  const d = tmp();
  await open(path.join(d, "new.db"));
  expect(fs.statSync(path.join(d, "new.db")).mode & 0o777).toBe(0o600);
  fs.writeFileSync(path.join(d, "old.db"), "", { mode: 0o644 });
  fs.chmodSync(path.join(d, "old.db"), 0o644);
  await open(path.join(d, "old.db"));
  expect(fs.statSync(path.join(d, "old.db")).mode & 0o777).toBe(0o600);
});

test("the code key is made once in a 0600 file and never stored in the database", async () => {
  const d = tmp();
  const store = await open(path.join(d, "state.db"));
  const key = await loadCodeKey(path.join(d, "code-key"), store);
  expect(key).toHaveLength(32);
  expect(fs.statSync(path.join(d, "code-key")).mode & 0o777).toBe(0o600);
  expect((await loadCodeKey(path.join(d, "code-key"), store)).equals(key)).toBe(true);
  expect(await store.getMeta("code_key")).toBeUndefined();
  const raw = fs.readFileSync(path.join(d, "state.db"));
  expect(raw.includes(Buffer.from(key.toString("hex")))).toBe(false);
});

test("a key an older tessera kept in the database moves to the file, so codes handed out keep working", async () => {
  const d = tmp();
  const store = await open(path.join(d, "state.db"));
  const legacy = "ab".repeat(32);
  await store.initMeta("code_key", legacy);
  const key = await loadCodeKey(path.join(d, "code-key"), store);
  expect(key.toString("hex")).toBe(legacy);
  expect(fs.readFileSync(path.join(d, "code-key"), "utf8").trim()).toBe(legacy);
  expect(await store.getMeta("code_key")).toBeUndefined();
});

test("a damaged key file is a clear error, not a new key", async () => {
  const d = tmp();
  const store = await open(path.join(d, "state.db"));
  fs.writeFileSync(path.join(d, "code-key"), "not a key\n", { mode: 0o600 });
  await expect(loadCodeKey(path.join(d, "code-key"), store)).rejects.toThrow(/is not a code key/);
});
