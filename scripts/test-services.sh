#!/usr/bin/env bash
# Sourced by setup-and-test.sh: makes sure the real servers some tests talk to exist, and starts a private
# PostgreSQL on loopback. Tests read TESSERA_TEST_PG_URL and skip (saying so) only when it is absent.
# Never touches the system's own PostgreSQL cluster or sshd: everything lives under a temporary directory.

have_sudo() { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null 2>&1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo -n "$@"; fi; }

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

need=()
[ -n "$(pg_bin)" ] || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null 2>&1 || need+=(openssh-client)
# Linters and interpreters for the shipping files: install.sh (shellcheck), the Homebrew formula (ruby).
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v ruby >/dev/null 2>&1 || need+=(ruby)
# The console's browser tests drive Debian's Chromium (playwright-core never downloads a browser).
[ -x /usr/bin/chromium ] || need+=(chromium)
# The scale-out e2e test runs three nodes behind a private HAProxy on loopback (never the system service).
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need+=(haproxy)
# The benchmark drives a real C client (redis-benchmark) against a private redis-server through each path.
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
if [ ${#need[@]} -gt 0 ]; then
  if have_sudo && command -v apt-get >/dev/null 2>&1; then
    echo "test-services: installing ${need[*]} from Debian's packages"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null 2>&1 \
      || { as_root apt-get update -q >/dev/null 2>&1 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null 2>&1; } \
      || echo "test-services: could not install ${need[*]}; the tests that need them will say they are skipped"
  else
    echo "test-services: ${need[*]} missing and no way to install; the tests that need them will say they are skipped"
  fi
fi

free_port() {
  bun -e 'const s = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }); console.log(s.port); s.stop(true);'
}

start_postgres() {
  local bin port dir user
  bin="$(pg_bin)"; [ -n "$bin" ] || return 0
  port="${TESSERA_TEST_PG_PORT:-55432}"
  dir="$(mktemp -d /tmp/tessera-pg.XXXXXX)"
  user="$(id -un)"
  # PostgreSQL refuses to run as root: run it as the cluster's own 'postgres' user.
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd -r -M postgres
    chown postgres "$dir"; user=postgres
    local run=(runuser -u postgres --)
  else
    local run=()
  fi
  "${run[@]}" "$bin/initdb" -D "$dir/data" -U "$user" --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 || { echo "test-services: initdb failed (see $dir/initdb.log)"; return 0; }
  # A fixed port can be taken (any process's ephemeral port may land on it): without an explicit
  # TESSERA_TEST_PG_PORT, a port that fails is replaced by one the kernel says is free, a few times.
  local attempt
  for attempt in 1 2 3 4; do
    if "${run[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=off" start >/dev/null; then
      break
    fi
    if [ -n "${TESSERA_TEST_PG_PORT:-}" ] || [ "$attempt" = 4 ]; then
      echo "test-services: PostgreSQL did not start (see $dir/server.log)"; return 0
    fi
    port="$(free_port)" || { echo "test-services: PostgreSQL did not start (see $dir/server.log)"; return 0; }
    echo "test-services: port taken, retrying PostgreSQL on $port"
  done
  export TESSERA_TEST_PG_URL="postgres://$user@127.0.0.1:$port/postgres"
  export TESSERA_TEST_PG_DIR="$dir"
  TESSERA_TEST_PG_STOP="${run[*]} $bin/pg_ctl -D $dir/data -m immediate stop"
  trap '$TESSERA_TEST_PG_STOP >/dev/null 2>&1 || true' EXIT
  echo "test-services: PostgreSQL on 127.0.0.1:$port"
}

if [ -z "${TESSERA_TEST_PG_URL:-}" ]; then start_postgres; fi
