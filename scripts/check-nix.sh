#!/usr/bin/env bash
# Checks the Nix side of keyfleet where no Nix store can be built: every .nix file parses,
# is formatted with nixfmt (RFC 166) and has no dead code (deadnix); the alert rules pass
# promtool; the engine's secrets script refuses bad credentials (nix/tests/); and, with
# NIXPKGS_LIB set to a checkout of nixpkgs' lib, the NixOS modules evaluate through the
# real lib.evalModules (nix/eval-modules.nix) and nix/tests/check-eval.py checks what
# they give: the example hosts and the VM test nodes raise no assertion, each bad
# configuration raises its own, each refused value (a store-path secret,
# nixpkgs.overlays) fails, each host's daemon TOML equals examples/hosts/<host>.toml,
# the engine config rendered in Nix equals `keyfleet render keydb-conf` of the same TOML
# for every host and VM test node (with log shipping on and off), log shipping writes its
# [logs] table, credentials and log directory (and nothing without it), backups write
# their [backups] table and credentials and open the engine's data directory to its
# group (and nothing without them), each bad log or backup setting is refused by the
# module and by `keyfleet render` alike, the firewall rules follow the backend, the
# engine's command line ignores daemon-only changes, and its unit ignores backup settings.
#
# The Rust renderer is built with cargo, or taken from KEYFLEET_BIN when that names a
# keyfleet binary already built.
#
# A tool that is not installed is skipped with one line; a check that runs and fails
# makes the script fail.
set -uo pipefail

cd "$(dirname "$0")/.."

failures=0
fail() {
  echo "FAIL: $*"
  failures=$((failures + 1))
}
have() { command -v "$1" > /dev/null 2>&1; }
# A missing tool is a skip, or a failure where KEYFLEET_REQUIRE_TOOLS=1 (CI).
missing() {
  if [ "${KEYFLEET_REQUIRE_TOOLS:-0}" = 1 ]; then
    fail "$1 is not installed (KEYFLEET_REQUIRE_TOOLS=1)"
  else
    echo "$1: skipped (not installed)"
  fi
}

mapfile -t nix_files < <(
  find . -name '*.nix' -not -path './target/*' -not -path './.git/*' -not -path './.keyfleet-dev/*' | sort
)
echo "Nix files: ${#nix_files[@]}"

if have nix-instantiate; then
  for f in "${nix_files[@]}"; do
    nix-instantiate --parse "$f" > /dev/null || fail "nix-instantiate --parse $f"
  done
  echo "parse: done"
else
  missing nix-instantiate
fi

if have nixfmt; then
  nixfmt --check "${nix_files[@]}" || fail "nixfmt --check (run: nixfmt ${nix_files[*]})"
  echo "nixfmt --check: done"
else
  missing nixfmt
fi

if have deadnix; then
  deadnix --fail "${nix_files[@]}" || fail "deadnix --fail"
  echo "deadnix: done"
else
  missing deadnix
fi

if have promtool; then
  promtool check rules monitoring/alerts.yml || fail "promtool check rules"
  (cd monitoring && promtool test rules alerts_test.yml) || fail "promtool test rules"
else
  missing promtool
fi

# The keydb service's ExecStartPre, run as systemd would, against good and bad credentials.
bash nix/tests/write-secrets.sh || fail "nix/tests/write-secrets.sh"

if [ -z "${NIXPKGS_LIB:-}" ]; then
  echo "module evaluation: skipped (set NIXPKGS_LIB to a checkout of nixpkgs' lib)"
elif ! have nix-instantiate; then
  echo "module evaluation: skipped (nix-instantiate not installed)"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  evaluate() {
    nix-instantiate --eval --strict --json nix/eval-modules.nix --argstr nixpkgsLib "$NIXPKGS_LIB" "$@"
  }
  # Values a type or a read-only option must refuse, each in an evaluation of its own.
  for case in "storePathSecret:not of type \`null or absolute path not in the Nix store'" \
    "pathLiteralSecret:not of type \`null or absolute path not in the Nix store'" \
    "setsOverlays:nixpkgs.overlays is set to read-only" \
    "logsStorePathKey:not of type \`absolute path not in the Nix store'" \
    "logsBadSize:not of type \`unsigned integer, meaning >=0, or size (" \
    "logsBadDuration:not of type \`unsigned integer, meaning >=0, or duration (" \
    "backupsStorePathKey:not of type \`absolute path not in the Nix store'" \
    "backupsBadDuration:not of type \`null or unsigned integer, meaning >=0, or duration (" \
    "apiFewConnections:not of type \`integer between 8 and 65536" \
    "upgradesBadWindow:is not of type \`maintenance window (" \
    "upgradesBadPolicy:not of type \`one of \"auto\", \"approve\", \"deny\"'"; do
    name=${case%%:*}
    expected=${case#*:}
    if evaluate -A "refused.$name" > /dev/null 2> "$work/err"; then
      fail "refused.$name evaluated: the value was accepted"
    elif ! grep -qF "$expected" "$work/err"; then
      fail "refused.$name failed, but not with \"$expected\": $(grep -v nixbld "$work/err")"
    else
      echo "refused $name: $(grep -m1 '^error' "$work/err")"
    fi
  done
  # The Rust renderer, for the comparison with the Nix one.
  keyfleet=${KEYFLEET_BIN:-}
  if [ -z "$keyfleet" ]; then
    cargo build --quiet --locked || fail "cargo build"
    keyfleet=target/debug/keyfleet
  fi
  if evaluate -A checks > "$work/eval.json"; then
    KEYFLEET=$keyfleet WORK=$work python3 nix/tests/check-eval.py "$work/eval.json" ||
      fail "module evaluation"
  else
    fail "nix-instantiate --eval nix/eval-modules.nix -A checks"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "check-nix: $failures check(s) failed"
  exit 1
fi
echo "check-nix: all checks passed"
