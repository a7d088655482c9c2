// The fault rig's own PostgreSQL: initdb in a temporary directory, started and stopped at will (as the
// `postgres` user when we are root, as scripts/test-services.sh does), so a test can take the database
// away from running nodes and bring it back on the same port with the same data.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { freePort } from "./cluster.ts";

function pgBin(): string | undefined {
  const root = "/usr/lib/postgresql";
  if (!fs.existsSync(root)) return undefined;
  const versions = fs.readdirSync(root).sort((a, b) => Number(a) - Number(b));
  const v = versions.at(-1);
  return v && fs.existsSync(path.join(root, v, "bin/pg_ctl")) ? path.join(root, v, "bin") : undefined;
}

export const PG_BIN = pgBin();
const AS_ROOT = process.getuid?.() === 0;

async function sh(argv: string[]): Promise<{ code: number; out: string }> {
  const full = AS_ROOT ? ["runuser", "-u", "postgres", "--", ...argv] : argv;
  const p = Bun.spawn(full, { stdout: "pipe", stderr: "pipe" });
  const [out, err] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text()]);
  return { code: await p.exited, out: out + err };
}

export class PrivatePg {
  private running = false;

  private constructor(
    readonly dir: string,
    readonly port: number,
  ) {}

  /** A fresh cluster on a free loopback port, running. */
  static async start(): Promise<PrivatePg> {
    if (!PG_BIN)
      throw new Error("PostgreSQL's server binaries are not installed (scripts/test-services.sh installs them)");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-faults-pg-"));
    if (AS_ROOT) {
      await Bun.spawn(["chown", "postgres", dir]).exited;
    }
    const init = await sh([`${PG_BIN}/initdb`, "-D", `${dir}/data`, "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
    if (init.code !== 0) throw new Error(`initdb failed: ${init.out}`);
    const pg = new PrivatePg(dir, await freePort());
    await pg.up();
    return pg;
  }

  url(db = "postgres"): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${db}`;
  }

  /** Starts the server (again) on the same port and data; resolves once it accepts connections. */
  async up(): Promise<void> {
    const opts = `-c listen_addresses=127.0.0.1 -c port=${this.port} -c unix_socket_directories=${this.dir} -c fsync=off -c max_connections=200`;
    const r = await sh([
      `${PG_BIN}/pg_ctl`,
      "-D",
      `${this.dir}/data`,
      "-l",
      `${this.dir}/server.log`,
      "-w",
      "-o",
      opts,
      "start",
    ]);
    if (r.code !== 0)
      throw new Error(
        `PostgreSQL did not start: ${r.out}\n${fs.readFileSync(`${this.dir}/server.log`, "utf8").slice(-2000)}`,
      );
    this.running = true;
  }

  /** Stops the server: `fast` ends every client's connection (as a restart would); `immediate` is a crash. */
  async down(mode: "fast" | "immediate" = "fast"): Promise<void> {
    const r = await sh([`${PG_BIN}/pg_ctl`, "-D", `${this.dir}/data`, "-m", mode, "-w", "stop"]);
    if (r.code !== 0) throw new Error(`PostgreSQL did not stop: ${r.out}`);
    this.running = false;
  }

  /** Stops the server (by its pid file, via pg_ctl) and removes its files. */
  async destroy(): Promise<void> {
    if (this.running) await this.down("immediate").catch(() => {});
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
