// The SQLite state file is created private, and kept so.
import fs from "node:fs";

/**
 * The state file holds code hashes, sessions and host keys: it is created 0600, and an existing one
 * readable by others is tightened (SQLite gives its -wal and -shm files the database file's mode).
 */
export function privateFile(file: string): void {
  if (!file || file === ":memory:" || file.startsWith("file:")) return;
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
  try {
    if ((fs.fstatSync(fd).mode & 0o077) !== 0) fs.fchmodSync(fd, 0o600);
  } finally {
    fs.closeSync(fd);
  }
}
