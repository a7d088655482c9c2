// The fault rig's deployment: a CA, N coordinator nodes on one PostgreSQL (each a separate process of the
// compiled binary, tracked by pid), optionally HAProxy in front, and helpers to link hosts and guests and
// read each node's audit log.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { run, spawn, spawnProgram, type Proc } from "../e2e/harness.ts";

export const HAPROXY = ["/usr/sbin/haproxy", "/usr/bin/haproxy"].find((p) => fs.existsSync(p));

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export interface AuditLine {
  event: string;
  [k: string]: unknown;
}

export class RigNode {
  proc!: Proc;
  constructor(
    readonly rig: Rig,
    readonly name: string,
    readonly port: number,
    readonly http: number,
    /** The database URL this node dials (the rig's, or a forwarder's in front of it). */
    public db: string,
  ) {}

  get audit(): string {
    return path.join(this.rig.dir, `audit-${this.name}.jsonl`);
  }

  /** Starts (or restarts, same port, audit file and name) the node; resolves once it listens. */
  /** Output of this node's earlier runs (before a restart), kept for reading a failure afterwards. */
  earlier = "";

  async start(): Promise<void> {
    if (this.proc) this.earlier += this.proc.all;
    this.proc = spawn(
      [
        "coordinator",
        "--certs",
        "pki",
        "--db",
        this.db,
        "--node",
        this.name,
        "--advertise",
        `127.0.0.1:${this.port}`,
        "--listen",
        `127.0.0.1:${this.port}`,
        "--http",
        `127.0.0.1:${this.http}`,
        "--audit",
        this.audit,
        ...this.rig.nodeArgs,
      ],
      this.rig.env,
      { cwd: this.rig.dir },
    );
    await this.proc.waitFor(/listening on/, 60_000);
  }

  events(event?: string): AuditLine[] {
    if (!fs.existsSync(this.audit)) return [];
    const lines = fs
      .readFileSync(this.audit, "utf8")
      .split("\n")
      .filter((l) => l.trim() !== "");
    const out: AuditLine[] = [];
    // A line torn by a SIGKILL mid-write is the audit checker's business, not the reader's.
    for (const l of lines) {
      try {
        out.push(JSON.parse(l));
      } catch {}
    }
    return event ? out.filter((e) => e.event === event) : out;
  }

  async health(): Promise<{ status: number; body: string }> {
    const r = await fetch(`http://127.0.0.1:${this.http}/healthz`);
    return { status: r.status, body: await r.text() };
  }
}

export interface RigOptions {
  db: string;
  nodes: number;
  /** Extra coordinator flags for every node (defaults below come first; later flags win). */
  nodeArgs?: string[];
  /** Per node, the database URL it dials instead of `db` (a freezable forwarder, say). */
  dbFor?: (i: number) => string | Promise<string>;
  haproxy?: boolean;
  env?: Record<string, string>;
}

export class Rig {
  readonly nodes: RigNode[] = [];
  haPort = 0;
  nodeArgs: string[] = [];
  env: Record<string, string> = {};
  private haproxy: Proc | undefined;

  private constructor(readonly dir: string) {}

  static async start(dir: string, o: RigOptions): Promise<Rig> {
    const rig = new Rig(dir);
    rig.nodeArgs = ["--node-ttl", "3s", "--resume-grace", "120s", ...(o.nodeArgs ?? [])];
    rig.env = o.env ?? {};
    const ca = await run(["ca", "--coordinator-name", "localhost", "--dir", "pki"], {}, dir);
    if (ca.code !== 0) throw new Error(`ca failed: ${ca.err}`);
    for (let i = 0; i < o.nodes; i++) {
      const db = o.dbFor ? await o.dbFor(i) : o.db;
      rig.nodes.push(new RigNode(rig, `n${i + 1}`, await freePort(), await freePort(), db));
    }
    await Promise.all(rig.nodes.map((n) => n.start()));
    if (o.haproxy) await rig.startHaproxy();
    return rig;
  }

  /** HAProxy in TCP mode, round robin over the nodes, health-checking each every 300 ms. */
  private async startHaproxy(): Promise<void> {
    if (!HAPROXY) throw new Error("haproxy is not installed");
    this.haPort = await freePort();
    const cfg = path.join(this.dir, "haproxy.cfg");
    fs.writeFileSync(
      cfg,
      [
        "global",
        "  maxconn 4000",
        "defaults",
        "  mode tcp",
        "  timeout connect 2s",
        "  timeout client 1h",
        "  timeout server 1h",
        "  retries 3",
        "  option redispatch",
        "frontend tessera",
        `  bind 127.0.0.1:${this.haPort}`,
        "  default_backend nodes",
        "backend nodes",
        "  balance roundrobin",
        // Readiness, not liveness: a stopping node says 503 here while it drains (a database outage does not).
        "  option httpchk",
        "  http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost",
        ...this.nodes.map(
          (n) => `  server ${n.name} 127.0.0.1:${n.port} check port ${n.http} inter 300ms fall 1 rise 2`,
        ),
        "",
      ].join("\n"),
    );
    this.haproxy = spawnProgram([HAPROXY, "-db", "-f", cfg]);
    for (let i = 0; ; i++) {
      const up = await new Promise<boolean>((r) => {
        const s = net.connect(this.haPort, "127.0.0.1", () => {
          s.destroy();
          r(true);
        });
        s.on("error", () => r(false));
      });
      if (up) return;
      if (i > 200 || this.haproxy.proc.exitCode !== null)
        throw new Error(`haproxy did not listen: ${this.haproxy.err}`);
      await Bun.sleep(25);
    }
  }

  /** Where clients dial: HAProxy when there is one, else node `i`. */
  address(i = 0): string {
    return this.haPort ? `localhost:${this.haPort}` : `localhost:${this.nodes[i]!.port}`;
  }

  private host: Promise<Record<string, string>> | undefined;

  /** The one enrolled host's TESSERA_HOME (linked through HAProxy on first use). */
  hostEnv(): Promise<Record<string, string>> {
    this.host ??= this.link("hosty", { host: true });
    return this.host;
  }

  /** A TESSERA_HOME linked as a host (with the enrolment token) or as a guest (trusting the CA file). */
  async link(name: string, opts: { host?: boolean; address?: string } = {}): Promise<Record<string, string>> {
    const env = { TESSERA_HOME: path.join(this.dir, name) };
    const address = opts.address ?? this.address();
    const token = fs.readFileSync(path.join(this.dir, "pki/enroll-token"), "utf8").trim();
    const r = await run(
      opts.host ? ["link", address, "--token", token, "--name", name] : ["link", address, "--ca-file", "pki/ca.crt"],
      env,
      this.dir,
    );
    if (r.code !== 0) throw new Error(`link ${name} failed: ${r.err}`);
    return env;
  }

  /** Every audit line of every node (in node order, then file order). */
  all(event?: string): (AuditLine & { node: string })[] {
    return this.nodes.flatMap((n) => n.events(event).map((e) => ({ ...e, node: n.name })));
  }

  /** `tessera audit verify` over every node's log at once. */
  async verifyAudit(): Promise<{ code: number; out: string; err: string }> {
    const files = this.nodes.map((n) => n.audit).filter((f) => fs.existsSync(f));
    return await run(["audit", "verify", ...files, "--cert", path.join(this.dir, "pki/coordinator.crt")]);
  }
}

/** Polls `f` every 50 ms until it gives a value (a bounded wait for an event, never an assertion on time). */
export async function until<T>(what: string, f: () => T | undefined | Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}
