// The name a guest shows the host by default: the login name, from the environment or the account database.
import fs from "node:fs";
import os from "node:os";

/** USER/LOGNAME/USERNAME when set, else the account of this process's uid, else "guest"; at most 64 characters. */
export function osUser(
  env: Record<string, string | undefined> = process.env,
  account: () => string | undefined = accountName,
): string {
  const name = env.USER || env.LOGNAME || env.USERNAME || account() || "guest";
  return name.slice(0, 64);
}

/**
 * The account name of this process's user. Not os.userInfo() alone: Bun 1.4's answers from $USER and
 * says "unknown" when it is unset (oven-sh/bun#39859), so on POSIX the passwd entry for our uid is read,
 * then `id -un` (which also sees directory-service accounts).
 */
export function accountName(): string | undefined {
  if (typeof process.getuid === "function") {
    const uid = process.getuid();
    const fromFile = passwdName(readOr("/etc/passwd"), uid);
    if (fromFile) return fromFile;
    try {
      const r = Bun.spawnSync(["id", "-un"], { stdout: "pipe", stderr: "ignore" });
      const name = r.success ? r.stdout.toString().trim() : "";
      if (name) return name;
    } catch {
      // No `id` on PATH: fall through.
    }
  }
  try {
    const name = os.userInfo().username;
    return name && name !== "unknown" ? name : undefined;
  } catch {
    return undefined;
  }
}

/** The name on the passwd line whose third field is `uid`. */
export function passwdName(passwd: string, uid: number): string | undefined {
  for (const line of passwd.split("\n")) {
    const f = line.split(":");
    if (f.length >= 3 && f[2] === String(uid) && f[0]) return f[0];
  }
  return undefined;
}

function readOr(file: string): string {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return "";
  }
}
