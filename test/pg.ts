// Fresh PostgreSQL databases for tests (from TESSERA_TEST_PG_URL, set by scripts/test-services.sh),
// each dropped when the test file is done.
import { SQL } from "bun";
import { randomBytes } from "node:crypto";

export const PG = process.env.TESSERA_TEST_PG_URL;

export class PgDatabases {
  private readonly names: string[] = [];

  constructor(private readonly prefix: string) {}

  /** A new empty database; its URL. */
  async fresh(): Promise<string> {
    const name = `${this.prefix}_${randomBytes(5).toString("hex")}`;
    const admin = new SQL(PG!);
    await admin.unsafe(`CREATE DATABASE ${name}`);
    await admin.close();
    this.names.push(name);
    const u = new URL(PG!);
    u.pathname = `/${name}`;
    return u.toString();
  }

  async dropAll(): Promise<void> {
    if (!PG || this.names.length === 0) return;
    const admin = new SQL(PG);
    for (const name of this.names.splice(0)) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.close();
  }
}
