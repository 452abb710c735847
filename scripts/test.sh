#!/usr/bin/env bash
# Runs every test keyfleet has here: the Rust unit and integration tests (real engines
# on loopback), then the Nix and monitoring checks. Tools that are missing are skipped
# with a line saying so, unless KEYFLEET_REQUIRE_TOOLS=1 (CI sets it), which makes a
# missing tool a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null && [ -z "${KEYFLEET_KEYDB_SERVER:-}" ]; then
  if [ "${KEYFLEET_REQUIRE_TOOLS:-0}" = 1 ]; then
    echo "test.sh: no redis-server on PATH and KEYFLEET_KEYDB_SERVER unset" >&2
    exit 1
  fi
  echo "test.sh: no engine (redis-server or KEYFLEET_KEYDB_SERVER): engine tests will skip"
fi

if ! command -v s3s-fs >/dev/null; then
  if [ "${KEYFLEET_REQUIRE_TOOLS:-0}" = 1 ]; then
    echo "test.sh: no s3s-fs on PATH (cargo install --locked s3s-fs --version 0.14.1 --features binary)" >&2
    exit 1
  fi
  echo "test.sh: no s3s-fs on PATH: log shipping tests will skip (cargo install --locked s3s-fs --version 0.14.1 --features binary)"
fi

if ! command -v schemathesis >/dev/null && [ -z "${KEYFLEET_SCHEMATHESIS:-}" ]; then
  if [ "${KEYFLEET_REQUIRE_TOOLS:-0}" = 1 ]; then
    echo "test.sh: no schemathesis on PATH (pip install schemathesis==4.32.5)" >&2
    exit 1
  fi
  echo "test.sh: no schemathesis on PATH: the API fuzzing will skip (pip install schemathesis==4.32.5)"
fi

cargo test --locked --all-targets
# The API fuzzed from its OpenAPI document against live daemons, with and without the
# token (about a minute; KEYFLEET_FUZZ_EXAMPLES=200 for a longer run).
if command -v schemathesis >/dev/null || [ -n "${KEYFLEET_SCHEMATHESIS:-}" ]; then
  if command -v redis-server >/dev/null; then
    python3 scripts/fuzz-api.py
  else
    echo "test.sh: no redis-server on PATH: the API fuzzing skipped"
  fi
fi
bash scripts/check-nix.sh
