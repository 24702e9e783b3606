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
