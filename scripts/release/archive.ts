// A release archive (.tar.gz) written byte for byte by us, so the same inputs give the same bytes on
// any machine: POSIX ustar entries in the order given, owner root (0/0), one fixed mtime (the
// commit's), then gzip with no name or timestamp in its header. GNU tar, bsdtar (macOS, Windows'
// tar.exe) and Homebrew unpack it.

export interface ArchiveEntry {
  name: string;
  data: Uint8Array;
  mode: number;
}

const BLOCK = 512;
const MAX_SIZE = 8 ** 11 - 1; // ustar's 11 octal digits: 8 GiB

export function tarGz(entries: ArchiveEntry[], mtime: number): Uint8Array {
  return Bun.gzipSync(tar(entries, mtime), { level: 9 });
}

export function tar(entries: ArchiveEntry[], mtime: number): Uint8Array<ArrayBuffer> {
  let total = 2 * BLOCK; // the two zero blocks that end an archive
  for (const e of entries) total += BLOCK + Math.ceil(e.data.length / BLOCK) * BLOCK;
  const out = new Uint8Array(total);
  let at = 0;
  for (const e of entries) {
    out.set(header(e, mtime), at);
    out.set(e.data, at + BLOCK);
    at += BLOCK + Math.ceil(e.data.length / BLOCK) * BLOCK;
  }
  return out;
}

function header(e: ArchiveEntry, mtime: number): Uint8Array {
  // Plain names only: no directories, no "..", nothing a careless extractor could place elsewhere.
  if (!/^[A-Za-z0-9._-]{1,100}$/.test(e.name) || e.name.startsWith("."))
    throw new Error(`archive entry name "${e.name}" must be a plain file name`);
  if (e.data.length > MAX_SIZE) throw new Error(`archive entry ${e.name} is larger than ustar allows`);
  if (!Number.isInteger(mtime) || mtime < 0 || mtime > MAX_SIZE) throw new Error(`bad archive mtime ${mtime}`);
  const h = new Uint8Array(BLOCK);
  const put = (offset: number, text: string) => h.set(new TextEncoder().encode(text), offset);
  const octal = (offset: number, width: number, n: number) =>
    put(offset, `${n.toString(8).padStart(width - 1, "0")}\0`);
  put(0, e.name);
  octal(100, 8, e.mode & 0o7777);
  octal(108, 8, 0);
  octal(116, 8, 0);
  octal(124, 12, e.data.length);
  octal(136, 12, mtime);
  put(148, "        "); // the checksum counts its own field as spaces
  put(156, "0");
  put(257, "ustar\u000000");
  put(265, "root");
  put(297, "root");
  let sum = 0;
  for (const b of h) sum += b;
  put(148, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}
