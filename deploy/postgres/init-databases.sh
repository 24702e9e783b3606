#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised (the image's
# /docker-entrypoint-initdb.d): one database per service, each owned by its
# own role with its own password, and nobody else allowed to connect.
#
# Each `create` line is DATABASE ROLE PASSWORD-VARIABLE; the compose file
# passes the passwords in, and a test (e2e/tests/deploy/) checks these
# lines against the compose file and the services' code.
set -eu

create() { # create DATABASE ROLE PASSWORD
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v db="$1" -v role="$2" -v password="$3" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"db" OWNER :"role";
-- PUBLIC may connect to every new database by default; only the owner may
-- connect to this one, so no service can read another's data.
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
SQL
}

create orders order_service "$ORDERS_PASSWORD"
create payments payment_service "$PAYMENTS_PASSWORD"
create inventory inventory_service "$INVENTORY_PASSWORD"
create email email_service "$EMAIL_PASSWORD"

# The maintenance database stays reachable only for the superuser too.
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -c 'REVOKE CONNECT ON DATABASE postgres FROM PUBLIC'
