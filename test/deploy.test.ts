// The container and systemd files name flags, paths and ports of the real binary: checked against
// its own --help, then the very command lines they run are started (paths moved to a temp dir,
// ports to loopback port 0) and must come up. `systemd-analyze verify` checks the units when present.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import path from "node:path";
import { killAll, run, spawn, tmpDir } from "./e2e/harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

const ROOT = path.resolve(import.meta.dir, "..");
const read = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");

/** The long flags a subcommand really accepts, from its own --help. */
async function flagsOf(cmd: string): Promise<Set<string>> {
  const r = await run([...cmd.split(" "), "--help"]);
  expect(r.code).toBe(0);
  // The option column only: "--flag VALUE" or a bare boolean "--flag", then the description (or, for a
  // long option, the description on the next line).
  return new Set([...r.out.matchAll(/^ {2}(?:-[a-z], )?--([a-z][a-z-]*)(?: [A-Z_]+)?(?: {2,}|$)/gm)].map((m) => m[1]!));
}

/** ["coordinator", "--a", "x", "--b", "y"] -> { a: "x", b: "y" }, refusing flags the binary lacks. */
function flagMap(argv: string[], known: Set<string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 1; i < argv.length; i += 2) {
    const flag = argv[i]!;
    expect(flag.startsWith("--")).toBe(true);
    if (!known.has(flag.slice(2))) throw new Error(`${argv[0]} has no flag ${flag} (has: ${[...known].join(", ")})`);
    expect(argv[i + 1]).toBeDefined();
    out[flag.slice(2)] = argv[i + 1]!;
  }
  return out;
}

/** Dockerfile instructions with continuations joined and comments dropped. */
function dockerfile(text: string): { op: string; arg: string }[] {
  return text
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => ({ op: l.split(/\s+/)[0]!.toUpperCase(), arg: l.slice(l.split(/\s+/)[0]!.length).trim() }));
}

/** Starts a deployment file's coordinator command with its directories moved under `dir` and ports on loopback. */
async function startRemapped(argv: string[], dirs: Record<string, string>, env: Record<string, string> = {}) {
  const moved = argv.map((a) => {
    if (/^0\.0\.0\.0:\d+$/.test(a)) return "127.0.0.1:0";
    for (const [from, to] of Object.entries(dirs))
      if (a === from || a.startsWith(`${from}/`)) return to + a.slice(from.length);
    return a;
  });
  const p = spawn(moved, env);
  const m = await p.waitFor(/listening on 127\.0\.0\.1:\d+ \(http 127\.0\.0\.1:(\d+)\)/);
  const health = await fetch(`http://127.0.0.1:${m[1]}/healthz`);
  expect(health.status).toBe(200);
  p.kill("SIGTERM");
  expect(await p.exit()).toBe(0);
  return p;
}

async function pki(): Promise<string> {
  const dir = tmpDir();
  expect((await run(["ca", "--coordinator-name", "tessera.example.com", "--dir", path.join(dir, "certs")])).code).toBe(
    0,
  );
  fs.mkdirSync(path.join(dir, "data"));
  return dir;
}

test("Dockerfile: multi-stage, distroless, non-root, tessera entrypoint, coordinator default command with real flags", async () => {
  const ins = dockerfile(read("Dockerfile"));
  const froms = ins.filter((i) => i.op === "FROM");
  expect(froms.length).toBe(2);
  expect(froms[0]!.arg).toMatch(/oven\/bun:\$\{BUN_VERSION\} AS build$/);
  expect(froms[1]!.arg).toMatch(/^gcr\.io\/distroless\/(static|base|cc)-debian\d+(:nonroot)?$/);
  // The Bun the image builds with is the one setup.sh pins.
  const pinned = /^BUN_VERSION=(\S+)$/m.exec(read("scripts/setup.sh"))![1];
  expect(ins.find((i) => i.op === "ARG" && i.arg.startsWith("BUN_VERSION="))!.arg).toBe(`BUN_VERSION=${pinned}`);
  const build = ins.slice(0, ins.indexOf(froms[1]!));
  const final = ins.slice(ins.indexOf(froms[1]!));
  expect(
    build.some((i) => i.op === "RUN" && i.arg.includes("bun scripts/build.ts") && i.arg.includes("TESSERA_VERSION=")),
  ).toBe(true);
  for (const c of build.filter((i) => i.op === "COPY")) {
    for (const src of c.arg.split(/\s+/).slice(0, -1)) expect(fs.existsSync(path.join(ROOT, src))).toBe(true);
  }
  const user = final.filter((i) => i.op === "USER").at(-1)!.arg;
  expect(user.split(":")[0]).not.toMatch(/^(0|root)$/);
  const entry = JSON.parse(final.find((i) => i.op === "ENTRYPOINT")!.arg);
  expect(entry).toEqual(["/usr/local/bin/tessera"]);
  expect(final.some((i) => i.op === "COPY" && i.arg === "--from=build /out/tessera /usr/local/bin/tessera")).toBe(true);
  const cmd: string[] = JSON.parse(final.find((i) => i.op === "CMD")!.arg);
  expect(cmd[0]).toBe("coordinator");
  const f = flagMap(cmd, await flagsOf("coordinator"));
  const exposed = final.find((i) => i.op === "EXPOSE")!.arg.split(/\s+/);
  expect(exposed.sort()).toEqual([f.http!.split(":")[1]!, f.listen!.split(":")[1]!].sort());
  expect(exposed.sort()).toEqual(["8080", "8443"]);
  const volume = JSON.parse(final.find((i) => i.op === "VOLUME")!.arg);
  expect(volume).toEqual(["/data"]);
  expect(path.dirname(f.audit!)).toBe("/data");
  expect(path.dirname(f.db!)).toBe("/data");
  expect(f.certs).toBe("/certs");

  // The build context keeps what the build copies and drops the heavy and the secret.
  const ignored = read(".dockerignore")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"));
  for (const needed of ["package.json", "bun.lock", "tsconfig.json", "scripts", "src"])
    expect(ignored).not.toContain(needed);
  for (const dropped of [".git", "node_modules", "dist", "pki", "certs", "*.db"]) expect(ignored).toContain(dropped);

  // The image's default command, run for real.
  const dir = await pki();
  const p = await startRemapped(cmd, { "/certs": path.join(dir, "certs"), "/data": path.join(dir, "data") });
  expect(fs.existsSync(path.join(dir, "data/audit.jsonl"))).toBe(true);
  for (const line of p.err.trim().split("\n")) expect(JSON.parse(line).level).toBeString();
});

test("docker-compose.yml: the same command, ./certs read-only, state in a named volume, 8443 and 8080 published", () => {
  const compose = Bun.YAML.parse(read("docker-compose.yml")) as {
    services: Record<
      string,
      {
        image: string;
        build: string;
        command: string[];
        ports: string[];
        volumes: string[];
        read_only: boolean;
        restart: string;
      }
    >;
    volumes: Record<string, unknown>;
  };
  const svc = compose.services.coordinator!;
  const cmd = JSON.parse(dockerfile(read("Dockerfile")).find((i) => i.op === "CMD")!.arg);
  expect(svc.command).toEqual(cmd);
  expect(svc.build).toBe(".");
  expect(svc.restart).toBe("unless-stopped");
  expect(svc.read_only).toBe(true);
  expect(svc.ports.sort()).toEqual(["8080:8080", "8443:8443"]);
  expect(svc.volumes).toContain("./certs:/certs:ro");
  const data = svc.volumes.find((v) => v.endsWith(":/data"))!;
  const named = data.split(":")[0]!;
  expect(named).not.toMatch(/^[./]/); // a named volume, not a bind mount
  expect(Object.keys(compose.volumes)).toContain(named);
});

/** systemd unit: section -> key -> values (keys may repeat). */
function unit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      out[section] = {};
      continue;
    }
    const eq = line.indexOf("=");
    (out[section]![line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return out;
}

const SANDBOX = {
  NoNewPrivileges: "yes",
  ProtectSystem: "strict",
  ProtectHome: "yes",
  PrivateTmp: "yes",
  Restart: "on-failure",
  CapabilityBoundingSet: "",
};

test("systemd units: sandboxed, restarting, and running the binary with flags and paths it really has", async () => {
  for (const [file, cmd] of [
    ["tessera-coordinator.service", "coordinator"],
    ["tessera-agent@.service", "agent"],
  ] as const) {
    const u = unit(read(`deploy/systemd/${file}`));
    const svc = u.Service!;
    for (const [k, v] of Object.entries(SANDBOX)) expect(svc[k]).toEqual([v]);
    expect(svc.User ?? svc.DynamicUser).toBeDefined();
    expect(svc.User?.[0]).not.toBe("root");
    const state = `/var/lib/${svc.StateDirectory![0]}`;
    expect(svc.WorkingDirectory).toEqual([state]);
    expect(u.Install!.WantedBy).toEqual(["multi-user.target"]);
    // install.sh puts the binary in /usr/local/bin when run as root.
    const argv = svc.ExecStart![0]!.split(/\s+/);
    expect(argv[0]).toBe("/usr/local/bin/tessera");
    const flags = flagMap(
      argv.slice(1).filter((a) => a !== "$TESSERA_FLAGS"),
      await flagsOf(cmd),
    );
    if (cmd === "coordinator") {
      for (const k of ["certs", "audit", "db"]) expect(flags[k]!.startsWith(`${state}/`)).toBe(true);
      expect(flags.listen).toBe("0.0.0.0:8443");
      expect(flags.http).toBe("0.0.0.0:8080");
    } else {
      expect(flags["share-id"]).toBe("%i");
      expect(svc.Environment).toContain(`TESSERA_HOME=${state}`);
      expect(svc.EnvironmentFile).toEqual(["/etc/tessera/agent-%i.env"]);
    }
  }

  // The coordinator's ExecStart, run for real with its Environment=.
  const u = unit(read("deploy/systemd/tessera-coordinator.service")).Service!;
  const env = Object.fromEntries(u.Environment!.map((e) => e.split("=", 2) as [string, string]));
  const dir = await pki();
  fs.renameSync(path.join(dir, "certs"), path.join(dir, "data/pki"));
  const argv = u
    .ExecStart![0]!.split(/\s+/)
    .slice(1)
    .filter((a) => a !== "$TESSERA_FLAGS");
  const p = await startRemapped(argv, { "/var/lib/tessera": path.join(dir, "data") }, env);
  for (const line of p.err.trim().split("\n")) expect(JSON.parse(line).level).toBeString();
});

test("systemd-analyze verify accepts both units; their exposure score stays low (skipped without systemd-analyze)", async () => {
  const sa = Bun.which("systemd-analyze");
  if (!sa) return console.warn("skipped: systemd-analyze is not installed");
  const dir = tmpDir();
  const bin = path.resolve(ROOT, "dist/tessera");
  if (!fs.existsSync(bin)) throw new Error("build dist/tessera first (bun run build)");
  // verify checks that ExecStart's binary exists, so the copies point at the one just built.
  for (const [src, name] of [
    ["tessera-coordinator.service", "tessera-coordinator.service"],
    ["tessera-agent@.service", "tessera-agent@db.service"],
  ]) {
    const file = path.join(dir, name);
    fs.writeFileSync(file, read(`deploy/systemd/${src}`).replaceAll("/usr/local/bin/tessera", bin));
    const v = Bun.spawnSync([sa, "verify", file], { stdout: "pipe", stderr: "pipe" });
    const about = (v.stdout.toString() + v.stderr.toString()).split("\n").filter((l) => l.includes(name));
    expect(about).toEqual([]);
    expect(v.exitCode).toBe(0);
    const sec = Bun.spawnSync([sa, "security", "--offline=true", file], { stdout: "pipe", stderr: "pipe" });
    const score = /Overall exposure level for \S+: ([\d.]+)/.exec(sec.stdout.toString());
    if (!score) continue; // older systemd without --offline
    console.log(`${name}: systemd exposure ${score[1]}`);
    expect(Number(score[1])).toBeLessThanOrEqual(2);
  }
});

test("DEPLOYING.md: every tessera command it shows exists with those flags, and it quotes the unit's real command line", async () => {
  const doc = read("deploy/DEPLOYING.md");
  const blocks = [...doc.matchAll(/```(?:sh|yaml)?\n([\s\S]*?)```/g)].map((m) => m[1]!).join("\n");
  const cache = new Map<string, Set<string>>();
  let seen = 0;
  for (const m of blocks.matchAll(
    /\btessera(?::\S+)? (audit verify|audit tail|admin sessions|admin hosts remove|admin hosts|admin enroll-token|admin revoke|ca|coordinator|link|share|agent|join|connect|token|revoke|version)\b([^\n|;&)]*)/g,
  )) {
    const sub = m[1]!;
    if (!cache.has(sub)) cache.set(sub, await flagsOf(sub));
    for (const f of m[2]!.matchAll(/(?:^|\s)--([a-z][a-z-]*)/g)) {
      if (!cache.get(sub)!.has(f[1]!))
        throw new Error(`DEPLOYING.md: \`tessera ${sub}\` has no --${f[1]} (in: tessera ${sub}${m[2]})`);
      seen++;
    }
  }
  expect(seen).toBeGreaterThan(10);
  // The prose describing the unit quotes its ExecStart word for word.
  const exec = unit(read("deploy/systemd/tessera-coordinator.service"))
    .Service!.ExecStart![0]!.replace("/usr/local/bin/", "")
    .replace(" $TESSERA_FLAGS", "");
  expect(doc.replace(/`\n/g, "` ").replace(/\s+/g, " ")).toContain(`\`${exec}\``);
  // Paths it names are the ones the unit and compose files use.
  for (const p of [
    "/etc/tessera/coordinator.env",
    "/etc/tessera/agent-db.env",
    "/var/lib/tessera-agent",
    "./certs",
    "tessera-data",
  ])
    expect(doc).toContain(p);
  expect(read("deploy/systemd/tessera-coordinator.service")).toContain("EnvironmentFile=-/etc/tessera/coordinator.env");
});
