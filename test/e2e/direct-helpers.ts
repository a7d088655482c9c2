// Helpers for the direct-path end-to-end tests (direct.test.ts, direct-more.test.ts): share and join with
// flags, an in-process guest that chooses its own hints, listeners that count connections, /metrics figures.
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import "reflect-metadata";
import { Guest } from "../../src/guest/guest.ts";
import type { Hint } from "../../src/wire/hints.ts";
import { spawn, type Deployment, type Proc } from "./harness.ts";

/** `tessera share --port` with extra flags; returns it and its code. */
export async function shareWith(
  d: Deployment,
  port: number,
  extra: string[] = [],
): Promise<{ host: Proc; code: string }> {
  const host = spawn(["share", "--port", String(port), ...extra], d.hostEnv, { cwd: d.dir });
  return { host, code: (await host.waitFor(/^code: ([0-9A-Z]{4}-[0-9A-Z]{4})\r?$/m))[1]! };
}

export async function joinWith(
  d: Deployment,
  host: Proc,
  code: string,
  name: string,
  extra: string[] = [],
): Promise<{ guest: Proc; local: number }> {
  const guest = spawn(["join", code, "--name", name, "--local", "127.0.0.1:0", ...extra], d.guestEnv);
  await host.waitFor(new RegExp(`Allow ${name} `));
  host.write("y\n");
  return { guest, local: Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]) };
}

export async function relayedBytes(d: Deployment): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.httpPort}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^tessera_relayed_bytes_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

export function metric(text: string, series: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.split(" ")[1]);
}

/** A guest run in this process (so a test can choose its hints), against the real coordinator and share. */
/** `hints`: the list offered, or made from the guest's direct listener's port. */
export async function guestInProcess(
  d: Deployment,
  host: Proc,
  code: string,
  name: string,
  hints?: Hint[] | ((port: number) => Hint[]),
) {
  const caPem = fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8");
  const errors: string[] = [];
  const paths: string[] = [];
  const guest = await Guest.connect(
    { address: d.address, caPem, version: "test" },
    { onStreamError: (m) => errors.push(m), onPath: (p) => paths.push(p) },
    hints ? { hints: typeof hints === "function" ? hints : () => hints } : {},
  );
  const approved = guest.request({ code, name, reason: "" });
  await host.waitFor(new RegExp(`Allow ${name} `));
  host.write("y\n");
  await approved;
  const { port } = await guest.listen("127.0.0.1", 0);
  return { guest, local: port, errors, paths };
}

/** TCP listeners that count connections and never answer (not the guest). */
export async function countingServers(
  n: number,
): Promise<{ ports: number[]; accepted: () => number; close: () => void }> {
  let accepted = 0;
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve) => {
          const s = net.createServer((c) => {
            accepted++;
            c.on("error", () => {});
          });
          s.listen(0, "127.0.0.1", () => resolve(s));
        }),
    ),
  );
  return {
    ports: servers.map((s) => (s.address() as net.AddressInfo).port),
    accepted: () => accepted,
    close: () => {
      for (const s of servers) s.close();
    },
  };
}
