import "reflect-metadata";
import net from "node:net";
import { Live, eventually } from "./test/coordinator/live.ts";
const l = await Live.start({ maxConnections: 4 });
for (let i = 0; i < 12; i++) {
  const c = await eventually(() => l.dial(), `c${i}`);
  c.close();
}
console.log("open after dials", l.coordinator.admission.open);
await Bun.sleep(500);
console.log("open after 500ms", l.coordinator.admission.open);
const s = net.connect({ port: l.port, host: "127.0.0.1" });
s.on("error", (e) => console.log("client err", e.message));
s.on("data", (d) => console.log("client got", d.toString("hex")));
s.on("connect", () => console.log("connected"));
s.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00]));
await Promise.race([new Promise((r) => s.on("close", r)), Bun.sleep(2000)]);
console.log("client closed?", s.destroyed, l.coordinator.admission.open);
s.destroy();
await l.close();
