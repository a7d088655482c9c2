// One-line descriptions for the root `tessera --help`, kept here so that listing them loads no
// subcommand module (citty would otherwise import every command just to read its description).
// test/help.test.ts checks they match each command's own meta.description.
export const SUMMARIES: Record<string, string> = {
  ca: "Create the CA, the coordinator certificate, the operator token and a first host enrolment token",
  coordinator: "Run the coordinator (brokers requests and approvals, relays ciphertext, keeps the audit log)",
  link: "Trust a coordinator (guests), or enrol this machine as a host with --token",
  share: "Share a local port or your shell: print a code, ask you about each guest, open access once you say y",
  agent: "Serve a share in the background: approved guests reach only the --allow targets",
  join: "Ask the host for access with their code; once they approve, forward a local port (or run `-- CMD {host} {port}` through it, or carry stdin/stdout with --stdio)",
  connect:
    "Ask a running share for access by id and target; forward a local port once approved (`-- CMD` and `--stdio` as for join)",
  token: "Save the operator token (from the coordinator's operator-token file) for revoke and admin",
  revoke: "End a session at once (needs the operator token: `tessera token HEX`)",
  admin: "Operator's view and controls: live sessions, enrolled hosts, host removal, enrolment tokens, revoke",
  receipt: "Read or check a host's signed consent receipt offline",
  approve:
    "Answer a host's requests from this device, with the key the host delegated to it (pair first: --pair HOST:PORT/CODE)",
  approvers: "Devices this host delegated its yes to: pair one, list them, or remove one",
  replay: "Play back a recorded shell session (asciicast v2) with its original timing",
  version: "Print the version",
  mcp: "Serve AI agents over MCP (stdio): they ask for access with a reason or mint invites; only the human host approves",
  audit: "Check and read the coordinator's append-only audit log",
  "ssh-config":
    "Print an ssh config Host block that reaches a shared ssh port through `tessera join --stdio` (append it to ~/.ssh/config)",
};
