// A real browser for the console's tests: Debian's Chromium driven by playwright-core (never a browser
// download), headless with a fresh profile; every page error and console error is collected so a test
// can fail on it, and every Chromium process is killed by pid at the end.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";
export const haveChromium = fs.existsSync(CHROMIUM);

export interface Browser {
  ctx: BrowserContext;
  page: Page;
  /** Uncaught exceptions and console errors, in order ("pageerror: ...", "console: ..."). */
  errors: string[];
  /** Where screenshots go (printed once, for a human to look at). */
  shots: string;
  shot(name: string): Promise<string>;
  close(): Promise<void>;
}

/** `extraArgs`: more Chromium flags (e.g. --host-resolver-rules to name 127.0.0.1 as another machine). */
export async function openBrowser(extraArgs: string[] = [], o: { ignoreHTTPSErrors?: boolean } = {}): Promise<Browser> {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-chromium-"));
  const shots = fs.mkdtempSync(path.join(os.tmpdir(), "tessera-console-shots-"));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 800 },
    ignoreHTTPSErrors: o.ignoreHTTPSErrors ?? false,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      ...extraArgs,
    ],
  });
  const page = ctx.pages()[0] ?? (await ctx.newPage());
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  console.log(`console screenshots: ${shots}`);
  return {
    ctx,
    page,
    errors,
    shots,
    async shot(name) {
      const file = path.join(shots, `${name}.png`);
      // Down to the content's end (a short view is not padded to the window's height).
      const bottom = await page.evaluate(() =>
        Math.ceil(
          Math.max(...[...document.querySelectorAll("header, main")].map((e) => e.getBoundingClientRect().bottom)),
        ),
      );
      const width = page.viewportSize()!.width;
      await page.screenshot({ path: file, fullPage: true, clip: { x: 0, y: 0, width, height: bottom + 16 } });
      return file;
    },
    async close() {
      await ctx.close().catch(() => {});
      // Whatever outlived close() (a renderer, the zygote): found by our own profile's path, killed by pid.
      for (const pid of pidsWith(profile)) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
      }
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Processes whose command line names `marker` (our fresh profile directory: only the Chromium we started). */
function pidsWith(marker: string): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (fs.readFileSync(`/proc/${d}/cmdline`, "utf8").includes(marker)) out.push(Number(d));
    } catch {}
  }
  return out;
}
