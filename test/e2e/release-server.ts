// A release download server for the installer tests, in a process of its own: a client that aborts a
// download (install.sh stops reading past its size cap) resets the server's socket, and that error must not
// land in the test runner's process, where it would fail whichever test happens to be running.
// Usage: bun release-server.ts RELEASES_DIR REQUEST_LOG; prints the port, appends each request's path to the log.
import fs from "node:fs";
import path from "node:path";

const [releases, logFile] = process.argv.slice(2) as [string, string];
const server = Bun.serve({
  hostname: "127.0.0.1",
  port: 0,
  fetch(req) {
    const p = new URL(req.url).pathname;
    fs.appendFileSync(logFile, `${p}\n`);
    const m = /^\/releases\/download\/(v[\d.]+)\/([\w.-]+)$/.exec(p);
    const file = m ? path.join(releases, m[1]!, m[2]!) : null;
    return file && fs.existsSync(file) ? new Response(Bun.file(file)) : new Response("not found", { status: 404 });
  },
  error: () => new Response("server error", { status: 500 }),
});
console.log(server.port);
