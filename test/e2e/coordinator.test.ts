// What the coordinator sees and survives: only ciphertext crosses it, and hostile control frames
// cost only their own connection.
import { afterAll, expect, setDefaultTimeout, test } from "bun:test";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import tls from "node:tls";
import { ControlClient } from "../../src/wire/control-client.ts";
import { encodeFrame } from "../../src/wire/codec.ts";
import { deploy, echoServer, killAll, roundTrip, spawn } from "./harness.ts";

setDefaultTimeout(60_000);
afterAll(killAll);

/** A loopback proxy in front of the coordinator that records every byte it relays, both ways. */
async function tap(port: number): Promise<{ port: number; bytes: () => Buffer }> {
  const seen: Buffer[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (a) => {
    const b = net.connect({ port, host: "127.0.0.1", allowHalfOpen: true });
    a.on("data", (d) => seen.push(Buffer.from(d)));
    b.on("data", (d) => seen.push(Buffer.from(d)));
    a.pipe(b).on("error", () => {});
    b.pipe(a).on("error", () => {});
    a.on("error", () => b.destroy());
    b.on("error", () => a.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  afterAll(() => void server.close());
  return { port: (server.address() as net.AddressInfo).port, bytes: () => Buffer.concat(seen) };
}

test("a plaintext marker sent through the tunnel never appears in the bytes the coordinator relays", async () => {
  const d = await deploy();
  const echo = await echoServer();
  const wire = await tap(d.port);
  // Both host and guest reach the coordinator only through the tap.
  const via = { TESSERA_COORDINATOR: `localhost:${wire.port}` };
  const host2 = spawn(["share", "--port", String(echo.port)], { ...d.hostEnv, ...via });
  const code2 = (await host2.waitFor(/^code: (\S+)$/m))[1]!;
  const guest = spawn(["join", code2, "--name", "tapped", "--local", "127.0.0.1:0"], { ...d.guestEnv, ...via });
  await host2.waitFor(/Allow tapped/);
  host2.write("y\n");
  const local = Number((await guest.waitFor(/forwarding 127\.0\.0\.1:(\d+)/))[1]);
  const marker = Buffer.from("TESSERA-PLAINTEXT-MARKER-7f3a9c-".repeat(64));
  expect((await roundTrip(local, marker)).equals(marker)).toBe(true);
  // The target really got the marker, and the tap really carried the stream...
  expect(echo.received().includes(marker)).toBe(true);
  expect(wire.bytes().length).toBeGreaterThan(marker.length * 2);
  // ...yet no piece of it crossed the coordinator in the clear.
  expect(wire.bytes().includes(Buffer.from("PLAINTEXT-MARKER"))).toBe(false);
  guest.kill("SIGINT");
  host2.kill("SIGINT");
  await Promise.all([guest.exit(), host2.exit()]);
});

function rawControl(port: number, caPem: string): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: "127.0.0.1", servername: "localhost", ca: caPem }, () => resolve(s));
    s.on("error", reject);
  });
}

/** Reads frames until the server closes; returns them decoded. */
function collect(s: tls.TLSSocket): Promise<{ t: string; code?: string; message?: string }[]> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0);
    s.on("data", (d: Buffer) => (buf = Buffer.concat([buf, d])));
    s.on("close", () => {
      const out = [];
      while (buf.length >= 4) {
        const n = buf.readUInt32BE(0);
        out.push(JSON.parse(buf.subarray(4, 4 + n).toString()));
        buf = buf.subarray(4 + n);
      }
      resolve(out);
    });
  });
}

test("malformed and oversized control frames get an error frame and a closed connection; others are still served", async () => {
  const d = await deploy();
  const caPem = fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8");
  const cases: [string, Buffer, string][] = [
    ["oversized", Buffer.from([0x7f, 0xff, 0xff, 0xff, 1, 2, 3]), "frame_too_large"],
    ["not json", Buffer.concat([Buffer.from([0, 0, 0, 5]), Buffer.from("{nope")]), "bad_frame"],
    ["unknown type", encodeFrame({ t: "launch-missiles" }), "bad_frame"],
    ["extra field", encodeFrame({ t: "hello", v: 1, client: "x", admin: true }), "bad_frame"],
    ["frame before hello", encodeFrame({ t: "ping" }), "protocol"],
    ["wrong version", encodeFrame({ t: "hello", v: 99, client: "x" }), "version"],
  ];
  for (const [name, bytes, code] of cases) {
    const s = await rawControl(d.port, caPem);
    const frames = collect(s);
    s.write(bytes);
    const got = await frames;
    const err = got.find((f) => f.t === "error");
    expect({ name, code: err?.code }).toEqual({ name, code });
    expect(err!.message!.length).toBeGreaterThan(5);
  }
  // Garbage that is neither TLS nor a data preamble is dropped without a word.
  const junk = net.connect({ port: d.port, host: "127.0.0.1" });
  junk.write("GET / HTTP/1.1\r\n\r\n");
  await new Promise((r) => junk.once("close", r));
  // The coordinator is still up and serving a well-behaved client.
  const ok = await ControlClient.dial({ address: d.address, caPem, version: "test" });
  ok.send({ t: "ping" });
  await ok.next("pong");
  ok.close();
  expect(d.coordinator.proc.exitCode).toBeNull();
  expect(await (await fetch(`http://127.0.0.1:${d.httpPort}/healthz`)).text()).toContain("ok v");
});

test("tessera ca refuses to overwrite without --force, keeps keys 0600, and version prints vX.Y.Z", async () => {
  const d = await deploy();
  const { run } = await import("./harness.ts");
  const again = await run(["ca", "--coordinator-name", "localhost", "--dir", "pki"], {}, d.dir);
  expect(again.code).toBe(1);
  expect(again.err).toContain("refusing to overwrite");
  for (const f of ["ca.key", "coordinator.key", "operator-token", "enroll-token"]) {
    expect(fs.statSync(path.join(d.dir, "pki", f)).mode & 0o777).toBe(0o600);
  }
  expect(fs.statSync(path.join(d.dir, "host/host.key")).mode & 0o777).toBe(0o600);
  // An enrolment token works once.
  const token = fs.readFileSync(path.join(d.dir, "pki/enroll-token"), "utf8").trim();
  const reuse = await run(["link", d.address, "--token", token], { TESSERA_HOME: path.join(d.dir, "host2") });
  expect(reuse.code).toBe(1);
  expect(reuse.err).toContain("already used");
  expect((await run(["version"])).out.trim()).toMatch(/^v\d+\.\d+\.\d+/);
  // IP names become IP SANs: a coordinator named 127.0.0.1 is reachable by that IP.
  const ipDir = path.join(d.dir, "ip");
  expect((await run(["ca", "--coordinator-name", "127.0.0.1", "--dir", ipDir])).code).toBe(0);
  const { certInfo } = await import("../../src/pki/index.ts");
  const info = certInfo(fs.readFileSync(path.join(ipDir, "coordinator.crt"), "utf8"));
  expect(info.ipAddresses).toEqual(["127.0.0.1"]);
  expect(info.dnsNames).toEqual([]);
});

test("guest trust by --ca-pin: the right pin links, a wrong pin is refused, no pin without a terminal asks for one", async () => {
  const d = await deploy();
  const { run } = await import("./harness.ts");
  const pin = fs.readFileSync(path.join(d.dir, "pki/ca.sha256"), "utf8").trim();
  const home = (n: string) => ({ TESSERA_HOME: path.join(d.dir, n) });
  const good = await run(["link", d.address, "--ca-pin", pin], home("g1"));
  expect(good.code).toBe(0);
  expect(fs.readFileSync(path.join(d.dir, "g1/ca.crt"), "utf8")).toBe(
    fs.readFileSync(path.join(d.dir, "pki/ca.crt"), "utf8"),
  );
  const wrong = await run(["link", d.address, "--ca-pin", `sha256:${"ab".repeat(32)}`], home("g2"));
  expect(wrong.code).toBe(1);
  expect(wrong.err).toContain("not the expected sha256:");
  expect(fs.existsSync(path.join(d.dir, "g2/ca.crt"))).toBe(false);
  const tofu = await run(["link", d.address], home("g3"));
  expect(tofu.code).toBe(1);
  expect(tofu.err).toContain(`--ca-pin ${pin}`);
});
