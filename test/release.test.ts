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
  strategy?: { matrix: { include: { os: string; asset: string; archive: string }[] } };
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

test("build with the tag, sign, smoke-test every target on its own runner, publish with SHA256SUMS and install.sh, image, formula", () => {
  const j = release.jobs;
  const build = j.build!.steps.find((s) => s.run?.includes("scripts/build.ts"))!;
  expect(build.run).toContain('bun scripts/build.ts --release --sign "$key"');
  expect(build.env).toEqual({
    TESSERA_VERSION: "${{ env.TAG }}",
    TESSERA_RELEASE_SIGNING_KEY: "${{ secrets.TESSERA_RELEASE_SIGNING_KEY }}",
  });
  // The key file is private while it exists, and gone when the step ends.
  expect(build.run).toContain("umask 077");
  expect(build.run).toContain("trap 'rm -f \"$key\"' EXIT");
  // The secret reaches no other step.
  for (const s of Object.values(j).flatMap((job) => job.steps))
    if (s !== build) expect(JSON.stringify(s)).not.toContain("secrets.");
  const check = j.build!.steps.find((s) => s.name === "the signature verifies against the key install.sh pins")!;
  expect(check.run).toContain("deploy/release-key.pub");
  expect(check.run).toContain("ssh-keygen -Y verify");
  expect(j.build!.steps.find((s) => s.uses?.startsWith("actions/upload-artifact"))!.with!.path).toBe("dist/release/");
  const assets = j.smoke!.strategy!.matrix.include.map((m) => m.asset);
  expect(assets).toEqual(targets.map((t) => `tessera-${t}${t.startsWith("windows") ? ".exe" : ""}`));
  expect(j.smoke!.strategy!.matrix.include.map((m) => m.archive)).toEqual(targets.map((t) => `tessera-${t}.tar.gz`));
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

test("the workflow's build, signature check and smoke-test shell, run here on linux-x64", async () => {
  const dir = path.join(work, "release");
  const tag = "v1.2.3-rc.1";
  // The workflow's signing step, with a key made here standing in for the secret.
  const key = path.join(work, "signing-key");
  expect(Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key]).exitCode).toBe(0);
  const step = release.jobs.build!.steps.find((s) => s.run?.includes("scripts/build.ts"))!;
  const build = Bun.spawnSync(
    ["bash", "-euo", "pipefail", "-c", step.run!.replace("--release", "--release --targets linux-x64")],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        TESSERA_VERSION: tag,
        TESSERA_RELEASE_DIR: dir,
        RUNNER_TEMP: work,
        TESSERA_RELEASE_SIGNING_KEY: fs.readFileSync(key, "utf8"),
      },
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  expect(build.stderr.toString()).toBe("");
  expect(build.exitCode).toBe(0);
  expect(fs.existsSync(path.join(work, "release-signing-key"))).toBe(false);
  expect(fs.readdirSync(dir).sort()).toEqual([
    "SHA256SUMS",
    "SHA256SUMS.sig",
    "THIRD-PARTY-NOTICES",
    "tessera-linux-x64",
    "tessera-linux-x64.tar.gz",
  ]);
  // Signed by a key that is not the pinned one: the workflow's next step stops the release.
  const check = release.jobs
    .build!.steps.find((s) => s.name === "the signature verifies against the key install.sh pins")!
    .run!.replaceAll("dist/release/", `${dir}/`);
  const verify = (cwd: string) =>
    Bun.spawnSync(["bash", "-euo", "pipefail", "-c", check], {
      cwd,
      env: { ...process.env, RUNNER_TEMP: work },
      stdout: "pipe",
      stderr: "pipe",
    });
  const wrong = verify(ROOT);
  expect(wrong.exitCode).not.toBe(0);
  expect(wrong.stdout.toString() + wrong.stderr.toString()).toContain("Could not verify signature");
  // A checkout whose pinned key (deploy/release-key.pub and install.sh's copy) is the signing key passes.
  const fork = path.join(work, "fork");
  fs.mkdirSync(path.join(fork, "deploy"), { recursive: true });
  const pub = fs.readFileSync(`${key}.pub`, "utf8");
  fs.writeFileSync(path.join(fork, "deploy/release-key.pub"), pub);
  fs.writeFileSync(
    path.join(fork, "install.sh"),
    read("install.sh").replace(/^RELEASE_KEY='[^']*'$/m, `RELEASE_KEY='${pub.trim()}'`),
  );
  const good = verify(fork);
  expect(good.stdout.toString() + good.stderr.toString()).toContain('Good "tessera-release" signature');
  expect(good.exitCode).toBe(0);
  const smoke = release.jobs
    .smoke!.steps.find((s) => s.name === "checksum, then version")!
    .run!.replaceAll("${{ matrix.asset }}", "tessera-linux-x64")
    .replaceAll("${{ matrix.archive }}", "tessera-linux-x64.tar.gz");
  const r = Bun.spawnSync(["bash", "-euo", "pipefail", "-c", smoke], {
    cwd: dir,
    env: { ...process.env, TAG: tag },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(r.stderr.toString()).toBe("");
  expect(r.stdout.toString()).toContain("tessera-linux-x64: OK");
  expect(r.stdout.toString()).toContain("tessera-linux-x64.tar.gz: OK");
  expect(r.exitCode).toBe(0);
  fs.rmSync(path.join(dir, "unpacked"), { recursive: true });
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
  const notRelease = bad(["--sign", "/etc/hostname"], {});
  expect(notRelease.exitCode).toBe(1);
  expect(notRelease.stderr.toString()).toContain("--sign signs a release's SHA256SUMS: use it with --release");
  const noKey = bad(["--release", "--sign", path.join(work, "no-such-key")], {});
  expect(noKey.exitCode).toBe(1);
  expect(noKey.stderr.toString()).toContain("--sign: no private key at");
  const epoch = bad(["--release"], { SOURCE_DATE_EPOCH: "yesterday" });
  expect(epoch.exitCode).toBe(1);
  expect(epoch.stderr.toString()).toContain("SOURCE_DATE_EPOCH must be whole seconds");
  expect(fs.existsSync(path.join(work, "never"))).toBe(false);
});
