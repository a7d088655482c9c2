// One-line descriptions for the root `tessera --help`, kept here so that listing them loads no
// subcommand module (citty would otherwise import every command just to read its description).
// test/help.test.ts checks they match each command's own meta.description.
export const SUMMARIES: Record<string, string> = {
  ca: "Create the CA, the coordinator certificate, the operator token and a first host enrolment token",
  coordinator: "Run the coordinator (brokers requests and approvals, relays ciphertext, keeps the audit log)",
  link: "Trust a coordinator (guests), or enrol this machine as a host with --token",
  share: "Share a local port: print a code, ask you about each guest, forward once you say y",
  agent: "Serve a share in the background: approved guests reach only the --allow targets",
  join: "Ask the host for access with their code; once they approve, forward a local port to their target",
  connect: "Ask a running share for access by id and target; forward a local port once approved",
  token: "Save the operator token (from the coordinator's operator-token file) for revoke",
  revoke: "End a session at once (needs the operator token: `tessera token HEX`)",
  version: "Print the version",
};
