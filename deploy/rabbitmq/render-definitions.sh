#!/bin/bash
# Runs in the rabbitmq container before the broker (compose's `command`):
# puts the broker passwords from the environment — the root .env, passed
# in by deploy/compose.yaml — into definitions.json, which the broker then
# imports at every boot (load_definitions, see 20-checkout.conf), before
# it opens its listeners: users, permissions, topic permissions, exchanges,
# queues and bindings all exist before any service can connect.
#
# RabbitMQ cannot read environment variables inside a definitions file,
# and a node that loads definitions creates no default user, so the users
# must be in the file: this fills each ${BROKER_<NAME>_PASSWORD} in
# (JSON-escaped), refuses an unset or empty one, then runs "$@".
#
#   DEFINITIONS_TEMPLATE (default /etc/checkout/definitions.json)
#   DEFINITIONS_OUT      (default /tmp/checkout-definitions.json)
# scripts/check-deploy runs it with the .env values and `true` as "$@".
set -euo pipefail
template=${DEFINITIONS_TEMPLATE:-/etc/checkout/definitions.json}
out=${DEFINITIONS_OUT:-/tmp/checkout-definitions.json}

# Bash 5.2 would read '&' in a replacement as the matched text.
shopt -u patsub_replacement 2>/dev/null || true
content=$(<"$template")
for placeholder in $(grep -o '\${BROKER_[A-Z0-9_]*_PASSWORD}' "$template" | sort -u); do
  name=${placeholder:2:-1}
  value=${!name:-}
  if [ -z "$value" ]; then
    echo "render-definitions: $name is not set (the root .env sets it for compose)" >&2
    exit 1
  fi
  if [[ $value == *[[:cntrl:]]* ]]; then
    echo "render-definitions: $name contains a control character" >&2
    exit 1
  fi
  value=${value//\\/\\\\}
  value=${value//\"/\\\"}
  content=${content//"$placeholder"/$value}
done

umask 077
printf '%s\n' "$content" >"$out"
# The broker runs as rabbitmq (the image's entrypoint steps down to it).
if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1; then
  chown rabbitmq:rabbitmq "$out"
fi
exec "$@"
