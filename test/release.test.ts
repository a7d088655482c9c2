// The release workflow: it parses, runs the build script the way CI does, covers every target the
// build script knows, and the shell it runs on a runner works here on the linux-x64 asset.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { tmpDir } from "./e2e/harness.ts";

setDefaultTimeout(120_000);

const ROOT = path.resolve(import.meta.dir, "..");
const read = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");
const work = tmpDir();
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

interface Step {
  uses?: string;
  run?: string;
  name?: string;
  env?: Record<string, string>;
  with?: Record<string, string>;
}
interface Job {
  needs?: string | string[];
  steps: Step[];
  permissions?: Record<string, string>;
  strategy?: { matrix: { include: { os: string; asset: string }[] } };
}
interface Workflow {
  on: { push?: { tags?: string[] } };
  env?: Record<string, string>;
  permissions: Record<string, string>;
  jobs: Record<string, Job>;
}

const release = Bun.YAML.parse(read(".github/workflows/release.yml")) as Workflow;
/** Release targets as build.ts declares them: "linux-x64" -> "bun-linux-x64-baseline". */
const targets = [...read("scripts/build.ts").matchAll(/^ {2}"([a-z]+-[a-z0-9]+)": "bun-\1(?:-baseline)?",$/gm)].map(
  (m) => m[1]!,
);

test("the workflow is well formed: tag trigger, jobs wired, least privilege, pinned action versions", () => {
  expect(targets).toEqual(["linux-x64", "linux-arm64", "darwin-x64", "darwin-arm64", "windows-x64"]);
  expect(release.on.push!.tags).toEqual(["v*.*.*"]);
  expect(release.permissions).toEqual({ contents: "read" });
  expect(release.env!.TAG).toBe("${{ github.ref_name }}");
  expect(release.env!.BUN_VERSION).toBe(/^BUN_VERSION=(\S+)$/m.exec(read("scripts/setup.sh"))![1]!);
  for (const [name, job] of Object.entries(release.jobs)) {
    for (const need of [job.needs ?? []].flat()) expect(Object.keys(release.jobs)).toContain(need);
    for (const s of job.steps) if (s.uses) expect(s.uses).toMatch(/^[\w.-]+\/[\w.-]+@v\d+$/);
    // Only the jobs that publish may write, and only what they publish.
    const allowed: Record<string, Record<string, string>> = {
      publish: { contents: "write" },
      formula: { contents: "write" },
      image: { contents: "read", packages: "write" },
    };
    if (job.permissions) expect({ name, perms: job.permissions }).toEqual({ name, perms: allowed[name]! });
  }
  for (const s of Object.values(release.jobs).flatMap((j) => j.steps)) {
    for (const m of (s.run ?? "").matchAll(/\b(scripts\/[\w.-]+|install\.sh|\.ci\/run)\b/g))
      expect(fs.existsSync(path.join(ROOT, m[1]!))).toBe(true);
  }
  const ci = Bun.YAML.parse(read(".github/workflows/ci.yml")) as Workflow;
  expect(ci.jobs.test!.steps.map((s) => s.run).filter(Boolean)).toEqual(["bash .ci/run"]);
});

test("build with the tag, smoke-test every target on its own runner, publish with SHA256SUMS and install.sh, image, formula", () => {
  const j = release.jobs;
  const build = j.build!.steps.find((s) => s.run?.includes("scripts/build.ts"))!;
  expect(build.run).toBe("bun scripts/build.ts --release");
  expect(build.env).toEqual({ TESSERA_VERSION: "${{ env.TAG }}" });
  expect(j.build!.steps.find((s) => s.uses?.startsWith("actions/upload-artifact"))!.with!.path).toBe("dist/release/");
  const assets = j.smoke!.strategy!.matrix.include.map((m) => m.asset);
  expect(assets).toEqual(targets.map((t) => `tessera-${t}${t.startsWith("windows") ? ".exe" : ""}`));
  expect(j.publish!.needs).toBe("smoke");
  const publish = j.publish!.steps.find((s) => s.run?.includes("gh release create"))!.run!;
  expect(publish).toContain("cp install.sh dist/release/install.sh");
  expect(publish).toContain("dist/release/*");
  const image = j.image!.steps.find((s) => s.uses?.startsWith("docker/build-push-action"))!.with!;
  expect(image.platforms).toBe("linux/amd64,linux/arm64");
  expect(image["build-args"]).toContain("TESSERA_VERSION=${{ env.TAG }}");
  expect(
    j.formula!.steps.some((s) =>
      s.run?.includes('bun scripts/formula.ts --version "$TAG" --sums dist/release/SHA256SUMS'),
    ),
  ).toBe(true);
});

test("the workflow's build and smoke-test shell, run here on linux-x64: the binary reports the tag and passes its checksum", async () => {
  const dir = path.join(work, "release");
  const tag = "v1.2.3-rc.1";
  const build = Bun.spawnSync(["bun", "scripts/build.ts", "--release", "--targets", "linux-x64"], {
    cwd: ROOT,
    env: { ...process.env, TESSERA_VERSION: tag, TESSERA_RELEASE_DIR: dir },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(build.exitCode).toBe(0);
  expect(fs.readdirSync(dir).sort()).toEqual(["SHA256SUMS", "tessera-linux-x64"]);
  const smoke = release.jobs
    .smoke!.steps.find((s) => s.name === "checksum, then version")!
    .run!.replaceAll("${{ matrix.asset }}", "tessera-linux-x64");
  const r = Bun.spawnSync(["bash", "-euo", "pipefail", "-c", smoke], {
    cwd: dir,
    env: { ...process.env, TAG: tag },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(r.stderr.toString()).toBe("");
  expect(r.stdout.toString()).toContain("tessera-linux-x64: OK");
  expect(r.exitCode).toBe(0);
  // And a tampered asset fails that same step.
  fs.appendFileSync(path.join(dir, "tessera-linux-x64"), "x");
  expect(
    Bun.spawnSync(["bash", "-euo", "pipefail", "-c", smoke], {
      cwd: dir,
      env: { ...process.env, TAG: tag },
      stdout: "pipe",
      stderr: "pipe",
    }).exitCode,
  ).not.toBe(0);
});

test("the build script refuses an unknown target and a version that is not a tag", () => {
  const bad = (args: string[], env: Record<string, string>) =>
    Bun.spawnSync(["bun", "scripts/build.ts", ...args], {
      cwd: ROOT,
      env: { ...process.env, TESSERA_RELEASE_DIR: path.join(work, "never"), ...env },
      stderr: "pipe",
    });
  const t = bad(["--release", "--targets", "linux-x64,plan9-mips"], {});
  expect(t.exitCode).toBe(1);
  expect(t.stderr.toString()).toContain("unknown target plan9-mips");
  const v = bad(["--release"], { TESSERA_VERSION: "latest" });
  expect(v.exitCode).toBe(1);
  expect(v.stderr.toString()).toContain("TESSERA_VERSION must look like v1.2.3");
  expect(fs.existsSync(path.join(work, "never"))).toBe(false);
});
