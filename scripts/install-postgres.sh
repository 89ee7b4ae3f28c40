#!/usr/bin/env bash
# Debian's PostgreSQL server binaries (initdb, pg_ctl, postgres) for the tests
# that start a throw-away cluster (tests/pg.py). Idempotent: exits 0 at once
# when they are there. Only the binaries: no cluster is created or started
# (Debian's package would start one; it is stopped so it holds no port).
set -euo pipefail
have_initdb() {
  command -v initdb >/dev/null 2>&1 && return 0
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
if have_initdb; then
  exit 0
fi
if [ "$(id -u)" != "0" ]; then
  echo "install-postgres: run as root (apt-get) or install Debian's postgresql yourself" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d 101: the package's post-install must not start the default
# cluster service (containers have no init; CI needs no running server).
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get install -y -qq postgresql >/dev/null
have_initdb
