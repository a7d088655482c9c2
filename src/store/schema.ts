// Schema migrations, applied in order on start; the same SQL runs on SQLite and PostgreSQL.
export const MIGRATIONS: string[][] = [
  [
    `CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS hosts (spki TEXT PRIMARY KEY, name TEXT NOT NULL, enrolled_at BIGINT NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS enroll_used (token_id TEXT PRIMARY KEY, host_spki TEXT NOT NULL, used_at BIGINT NOT NULL)`,
    `CREATE TABLE IF NOT EXISTS shares (id TEXT PRIMARY KEY, host_spki TEXT NOT NULL, targets TEXT NOT NULL, created_at BIGINT NOT NULL, closed_at BIGINT)`,
    `CREATE TABLE IF NOT EXISTS codes (hash TEXT PRIMARY KEY, share_id TEXT NOT NULL, target TEXT NOT NULL, expires_at BIGINT NOT NULL, used_at BIGINT)`,
    `CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, share_id TEXT NOT NULL, guest_spki TEXT NOT NULL, guest_name TEXT NOT NULL, target TEXT NOT NULL, opened_at BIGINT NOT NULL, closed_at BIGINT, close_reason TEXT)`,
  ],
  // 2: what a restart needs to carry live shares, sessions and pending requests over.
  [
    `ALTER TABLE shares ADD COLUMN host_name TEXT NOT NULL DEFAULT ''`,
    `ALTER TABLE sessions ADD COLUMN host_name TEXT NOT NULL DEFAULT ''`,
    `ALTER TABLE sessions ADD COLUMN guest_addr TEXT NOT NULL DEFAULT ''`,
    `ALTER TABLE sessions ADD COLUMN streams BIGINT NOT NULL DEFAULT 0`,
    `ALTER TABLE sessions ADD COLUMN bytes_up BIGINT NOT NULL DEFAULT 0`,
    `ALTER TABLE sessions ADD COLUMN bytes_down BIGINT NOT NULL DEFAULT 0`,
    `CREATE TABLE IF NOT EXISTS requests (id TEXT PRIMARY KEY, share_id TEXT NOT NULL, code_hash TEXT, guest_name TEXT NOT NULL, guest_spki TEXT NOT NULL, target TEXT NOT NULL, created_at BIGINT NOT NULL)`,
    `CREATE INDEX IF NOT EXISTS sessions_open ON sessions (closed_at)`,
  ],
  // 3: the operator's view: a host can be removed (its certificate is refused from then on) and has a
  // last-seen time; enrolment tokens minted over the admin API live here, as hashes only.
  [
    `ALTER TABLE hosts ADD COLUMN last_seen BIGINT`,
    `ALTER TABLE hosts ADD COLUMN removed_at BIGINT`,
    `ALTER TABLE hosts ADD COLUMN removed_by TEXT`,
    `CREATE INDEX IF NOT EXISTS hosts_removed ON hosts (removed_at)`,
    `CREATE TABLE IF NOT EXISTS enroll_tokens (id TEXT PRIMARY KEY, hash TEXT NOT NULL, expires_at BIGINT NOT NULL, created_at BIGINT NOT NULL, created_by TEXT NOT NULL DEFAULT '')`,
  ],
  // 4: a scoped yes (`y 15m`, `y 1`, `ro`) outlives a restart with its session.
  [`ALTER TABLE sessions ADD COLUMN scope TEXT`],
  // 5: scale-out: nodes of one deployment (with a heartbeat), which node holds each share, mail between
  // nodes (the rows are the message; NOTIFY only wakes the addressee), and rate-limit counts the whole
  // deployment shares.
  [
    `CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, advertise TEXT NOT NULL, started_at BIGINT NOT NULL, heartbeat_at BIGINT NOT NULL)`,
    `ALTER TABLE shares ADD COLUMN node TEXT NOT NULL DEFAULT ''`,
    `CREATE TABLE IF NOT EXISTS node_mail (id TEXT PRIMARY KEY, to_node TEXT NOT NULL, from_node TEXT NOT NULL, seq BIGINT NOT NULL, body TEXT NOT NULL, created_at BIGINT NOT NULL)`,
    `CREATE INDEX IF NOT EXISTS node_mail_to ON node_mail (to_node, from_node, seq)`,
    `CREATE TABLE IF NOT EXISTS rate_hits (k TEXT NOT NULL, win BIGINT NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (k, win))`,
  ],
  // 6: the host's signed consent receipt travels with its session, so the agent still gets it after a restart.
  [`ALTER TABLE sessions ADD COLUMN receipt TEXT`],
  // 7: streams open now, with their last known bytes, so a restart or an adopting node closes each in the
  // audit log (streams.ts); written in one batch a second with the sessions' totals.
  [
    `CREATE TABLE IF NOT EXISTS open_streams (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, node TEXT NOT NULL DEFAULT '', opened_at BIGINT NOT NULL, bytes_up BIGINT NOT NULL DEFAULT 0, bytes_down BIGINT NOT NULL DEFAULT 0)`,
    `CREATE INDEX IF NOT EXISTS open_streams_session ON open_streams (session_id)`,
    `CREATE INDEX IF NOT EXISTS open_streams_node ON open_streams (node)`,
  ],
  // 8: leases with fencing: a node holds a share (shares.node) for an epoch, bumped by every claim, until
  // lease_until; writes about the share carry `node = me AND epoch = e`, so a stale holder's are refused.
  [
    `ALTER TABLE shares ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0`,
    `ALTER TABLE shares ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0`,
  ],
];
