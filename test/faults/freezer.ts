// A TCP forwarder that can freeze: bytes stop moving both ways and new connections wait, but nothing is
// closed and no RST is sent, which is what a silent network partition looks like to both ends. heal()
// lets everything through again. Put one between a node and PostgreSQL to cut that node alone.
import net from "node:net";

export class Freezer {
  private frozen = false;
  private readonly pairs = new Set<{ a: net.Socket; b: net.Socket }>();
  private readonly held: net.Socket[] = [];
  private server!: net.Server;
  port = 0;

  constructor(
    private readonly upHost: string,
    private readonly upPort: number,
  ) {}

  async listen(): Promise<number> {
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (a) => {
      a.on("error", () => {});
      if (this.frozen) this.held.push(a);
      else this.connect(a);
    });
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  private connect(a: net.Socket): void {
    const b = net.connect({ host: this.upHost, port: this.upPort, allowHalfOpen: true });
    b.on("error", () => a.destroy());
    a.on("error", () => b.destroy());
    const pair = { a, b };
    this.pairs.add(pair);
    const gone = () => this.pairs.delete(pair);
    a.on("close", () => {
      gone();
      b.destroy();
    });
    b.on("close", () => {
      gone();
      a.destroy();
    });
    a.pipe(b);
    b.pipe(a);
    if (this.frozen) {
      a.pause();
      b.pause();
    } else a.resume();
  }

  /** Holds every byte where it is (the kernel buffers fill; nothing is closed) and new connections unanswered. */
  freeze(): void {
    this.frozen = true;
    for (const { a, b } of this.pairs) {
      a.pause();
      b.pause();
      // pipe() resumes a paused source when the destination drains; unpipe so it cannot.
      a.unpipe(b);
      b.unpipe(a);
    }
  }

  heal(): void {
    this.frozen = false;
    for (const { a, b } of this.pairs) {
      a.pipe(b);
      b.pipe(a);
      a.resume();
      b.resume();
    }
    for (const a of this.held.splice(0)) this.connect(a);
  }

  close(): void {
    this.server.close();
    for (const { a, b } of this.pairs) {
      a.destroy();
      b.destroy();
    }
    for (const a of this.held.splice(0)) a.destroy();
  }
}
