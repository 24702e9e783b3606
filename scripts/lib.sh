# Shared by the scripts: make sure PostgreSQL and RabbitMQ answer on
# localhost, starting the machine's own servers if they are installed but
# stopped. Sourced, not run.

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  for _ in $(seq "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "error: $what did not come up within ${seconds}s" >&2
  return 1
}

ensure_postgres() {
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then return 0; fi
  echo "PostgreSQL is not answering on 127.0.0.1:5432; starting it"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  wait_for 60 PostgreSQL pg_isready -q -h 127.0.0.1 -p 5432
}

ensure_rabbitmq() {
  if rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1; then return 0; fi
  echo "RabbitMQ is not answering on 127.0.0.1:5672; starting it"
  if command -v rabbitmq-server >/dev/null; then
    rabbitmq-server -detached || true
  fi
  wait_for 120 RabbitMQ rabbitmq-diagnostics -q check_port_connectivity
}

# The ADMIN_TOKEN of the checkout the scripts talk to, from the first of:
# the environment; target/run-local/admin-token (scripts/run-local writes it
# while it runs); the root .env (the compose stack's demo value). Sets
# ADMIN_TOKEN and ADMIN_TOKEN_SOURCE; ADMIN_TOKEN stays empty if none is found.
find_admin_token() {
  ADMIN_TOKEN_SOURCE=
  if [ -n "${ADMIN_TOKEN:-}" ]; then
    ADMIN_TOKEN_SOURCE="ADMIN_TOKEN in the environment"
  elif [ -s target/run-local/admin-token ]; then
    ADMIN_TOKEN=$(cat target/run-local/admin-token)
    ADMIN_TOKEN_SOURCE="target/run-local/admin-token (scripts/run-local)"
  elif [ -f .env ] && grep -q '^ADMIN_TOKEN=.' .env; then
    ADMIN_TOKEN=$(sed -n 's/^ADMIN_TOKEN=//p' .env | tail -n1)
    ADMIN_TOKEN_SOURCE=".env (the compose stack's demo value)"
  else
    ADMIN_TOKEN=
  fi
  export ADMIN_TOKEN
}
