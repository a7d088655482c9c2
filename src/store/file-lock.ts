// One coordinator per audit log and state file: an exclusive flock(2) on a `.lock` file beside each.
//
// Why flock and not an O_EXCL lock file with a pid: the kernel drops a flock the moment its holder dies,
// SIGKILL and power loss included, so there is never a stale lock to judge, and no pid (possibly reused
// by another process since) to trust. The pid written into the file is only there to name the holder in
// the error. The lock is on a file beside the log, not the log itself, because the log is renamed at
// rotation and the lock must stay with the name.
import fs from "node:fs";
import { dlopen, FFIType } from "bun:ffi";
import { TesseraError } from "../errors.ts";
import { logger } from "../log.ts";

const LOCK_EX = 2;
const LOCK_NB = 4;

let flock: ((fd: number, op: number) => number) | undefined | null;

function libcFlock(): ((fd: number, op: number) => number) | null {
  if (flock !== undefined) return flock;
  const lib = process.platform === "linux" ? "libc.so.6" : process.platform === "darwin" ? "libc.dylib" : undefined;
  try {
    if (!lib) return (flock = null);
    const { symbols } = dlopen(lib, { flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 } });
    return (flock = (fd, op) => symbols.flock(fd, op));
  } catch {
    return (flock = null);
  }
}

export interface HeldLock {
  path: string;
  release(): void;
}

/**
 * Takes `<file>.lock` exclusively for this process, or throws a TesseraError("in_use") naming the pid
 * that holds it. `what` names the file in the message ("audit log", "state database"). Returns undefined
 * where the platform has no flock (the caller warns): nothing is taken, nothing is promised.
 */
export function lockBeside(file: string, what: string): HeldLock | undefined {
  const take = libcFlock();
  if (!take) return undefined;
  const lockPath = `${file}.lock`;
  const fd = fs.openSync(lockPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  if (take(fd, LOCK_EX | LOCK_NB) !== 0) {
    const holder = readPid(fd);
    fs.closeSync(fd);
    throw new TesseraError(
      "in_use",
      `another coordinator${holder ? ` (pid ${holder})` : ""} is running on the ${what} ${file}; stop it first, or give this one its own --audit and --db`,
    );
  }
  // Ours now: say who holds it, for the next one's message.
  fs.ftruncateSync(fd, 0);
  fs.writeSync(fd, `${process.pid}\n`, 0);
  let released = false;
  return {
    path: lockPath,
    release() {
      if (released) return;
      released = true;
      // Closing the descriptor drops the lock; the file stays (removing it would race a new holder).
      fs.closeSync(fd);
    },
  };
}

function readPid(fd: number): number | undefined {
  const buf = Buffer.alloc(32);
  const n = fs.readSync(fd, buf, 0, buf.length, 0);
  const pid = Number(buf.subarray(0, n).toString("utf8").trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/**
 * A coordinator's audit log and, with SQLite, its state file, each locked (a PostgreSQL database is
 * shared by a deployment's nodes by design). Throws "in_use" naming the holder's pid.
 */
export function lockCoordinatorFiles(audit: string, db: string): { release(): void } {
  const locks = [lockBeside(audit, "audit log")];
  if (!/^postgres(ql)?:\/\//.test(db) && db !== ":memory:") locks.push(lockBeside(db, "state database"));
  if (locks.some((x) => !x))
    logger("coordinator").warn(`no file locking on ${process.platform}: make sure no other coordinator uses ${audit}`);
  return {
    release() {
      for (const l of locks) l?.release();
    },
  };
}
