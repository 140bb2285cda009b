#!/usr/bin/env bash
# Prepares a fresh machine for the demo and the tests, idempotently:
#   1. a virtualenv in .venv with the package (editable) and its dev extras;
#   2. the Apache Kafka broker jars from Maven Central into .cache/kafka (via Maven);
#   3. the compiled core (mypyc, into streams/core/_compiled/; needs a C compiler and
#      the Python headers, else the core runs interpreted: same results, slower);
#   4. Debian's prometheus + promtool (and alertmanager's amtool) and chromium
#      (headless, for the report's screenshot test) when missing.
# Everything downloaded lands under .cache/ (git-ignored) and is reused.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
say() { printf '\033[1m[bootstrap]\033[0m %s\n' "$*"; }

# 1. virtualenv ---------------------------------------------------------------
stamp=.venv/.installed-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  say "creating .venv and installing crm-kpi-streams[dev] (first run only)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[dev]"
  rm -f .venv/.installed-*; touch "$stamp"
fi

# 2. Kafka jars -----------------------------------------------------------------
.venv/bin/python -m streams.localkafka fetch

# 3. the compiled core (scripts/compile_core.py; a no-op when current) -------------
mkdir -p .cache
if ! .venv/bin/python scripts/compile_core.py > .cache/compile-core.log 2>&1; then
  tail -5 .cache/compile-core.log >&2
  say "could not compile the core (log: .cache/compile-core.log): it runs interpreted, same results, slower" >&2
  [ -z "${CI:-}" ] || exit 1  # CI tests the compiled core: a failed build must not pass unnoticed
else
  grep '\[compile-core\]' .cache/compile-core.log | tail -1
fi

# 4. Prometheus and Chromium (Debian) --------------------------------------------
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian packages: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # The Debian package starts services on install where an init system runs; we
    # run our own instances, so stop any that started.
    (systemctl stop prometheus prometheus-alertmanager prometheus-node-exporter >/dev/null 2>&1 || true)
  else
    say "missing ${need[*]}: install them with: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
fi
say "ready"
