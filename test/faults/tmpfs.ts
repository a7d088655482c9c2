// A small tmpfs for fault tests (an audit disk that fills up): mounted on a fresh directory, unmounted
// at the end. Needs root (CI has it); where mount is refused, `mountTmpfs` returns the reason to skip with.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export interface Tmpfs {
  dir: string;
  /** Fills the file system with a filler file until the kernel says ENOSPC; returns the filler's path. */
  fill(): string;
  /** Frees space by removing what fill() wrote. */
  free(): void;
  unmount(): Promise<void>;
}

const mounted = new Set<string>();

/** Mounts a tmpfs of `size` (e.g. "256k") on a new directory; a string is why it could not (skip the test with it). */
export async function mountTmpfs(size = "256k"): Promise<Tmpfs | string> {
  if (process.platform !== "linux") return `a tmpfs needs Linux (this is ${process.platform})`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-tmpfs-"));
  const p = Bun.spawn(["mount", "-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir], {
    stdout: "pipe",
    stderr: "pipe",
  });
  const [err, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  if (code !== 0) {
    fs.rmSync(dir, { recursive: true, force: true });
    return `cannot mount a tmpfs (${err.trim() || `mount exited ${code}`}); run as root to test a full audit disk`;
  }
  mounted.add(dir);
  const filler = path.join(dir, "filler");
  return {
    dir,
    fill() {
      const fd = fs.openSync(filler, "a");
      const chunk = Buffer.alloc(4096, 0x78);
      try {
        for (;;) fs.writeSync(fd, chunk);
      } catch (e) {
        if ((e as { code?: string }).code !== "ENOSPC") throw e;
        // The last few bytes may still fit: take them one at a time so nothing is left.
        try {
          for (;;) fs.writeSync(fd, chunk.subarray(0, 1));
        } catch {}
      } finally {
        fs.closeSync(fd);
      }
      return filler;
    },
    free() {
      fs.rmSync(filler, { force: true });
    },
    async unmount() {
      if (!mounted.delete(dir)) return;
      const u = Bun.spawn(["umount", "-l", dir], { stdout: "ignore", stderr: "ignore" });
      await u.exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Unmounts every tmpfs this process mounted (an afterAll safety net). */
export async function unmountAll(): Promise<void> {
  for (const dir of [...mounted]) {
    mounted.delete(dir);
    await Bun.spawn(["umount", "-l", dir], { stdout: "ignore", stderr: "ignore" }).exited;
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
