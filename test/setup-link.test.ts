// setup.sh's `tessera` on PATH (scripts/link-tessera.sh), run for real on temporary directories: it links
// when nothing is there, and never repoints a `tessera` it did not make.
import { expect, test } from "bun:test";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const SCRIPT = path.join(import.meta.dir, "../scripts/link-tessera.sh");

function link(bindir: string, target: string): { code: number; out: string } {
  const r = Bun.spawnSync(["bash", SCRIPT, bindir, target]);
  return { code: r.exitCode, out: r.stdout.toString() };
}

test("links when absent or when it is this checkout's; leaves a real file or another live checkout's link alone", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-link-"));
  const ours = path.join(dir, "ours/dist/tessera");
  const theirs = path.join(dir, "theirs/dist/tessera");
  for (const f of [ours, theirs]) {
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, "#!/bin/sh\n", { mode: 0o755 });
  }
  const bin = path.join(dir, "bin");
  expect(link(bin, ours).code).toBe(0);
  expect(fs.readlinkSync(path.join(bin, "tessera"))).toBe(ours);
  expect(link(bin, ours).out).toContain(`tessera is on PATH (${bin}/tessera -> ${ours})`);
  // Another checkout's live link: left alone.
  const other = path.join(dir, "bin2");
  fs.mkdirSync(other);
  fs.symlinkSync(theirs, path.join(other, "tessera"));
  const r = link(other, ours);
  expect(r.out).toContain(`${other}/tessera already exists (-> ${theirs}) and is not this checkout's; left alone`);
  expect(fs.readlinkSync(path.join(other, "tessera"))).toBe(theirs);
  // An installed binary (a real file): left alone.
  const installed = path.join(dir, "bin3");
  fs.mkdirSync(installed);
  fs.writeFileSync(path.join(installed, "tessera"), "release binary");
  expect(link(installed, ours).out).toContain("left alone");
  expect(fs.readFileSync(path.join(installed, "tessera"), "utf8")).toBe("release binary");
  // A link setup made to a checkout that is gone: repointed.
  const stale = path.join(dir, "bin4");
  fs.mkdirSync(stale);
  fs.symlinkSync(path.join(dir, "removed/dist/tessera"), path.join(stale, "tessera"));
  link(stale, ours);
  expect(fs.readlinkSync(path.join(stale, "tessera"))).toBe(ours);
});
