#!/usr/bin/env bash
# Checks the Nix side of keyfleet where no Nix store can be built: every .nix file parses,
# is formatted with nixfmt (RFC 166) and has no dead code (deadnix); the alert rules pass
# promtool; and, with NIXPKGS_LIB set to a checkout of nixpkgs' lib, the NixOS modules
# evaluate through the real lib.evalModules (nix/eval-modules.nix): the example hosts and
# the VM test nodes raise no assertion, each bad configuration raises its own, and each
# host's generated daemon TOML equals examples/hosts/<host>.toml.
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

if [ -z "${NIXPKGS_LIB:-}" ]; then
  echo "module evaluation: skipped (set NIXPKGS_LIB to a checkout of nixpkgs' lib)"
elif ! have nix-instantiate; then
  echo "module evaluation: skipped (nix-instantiate not installed)"
else
  out=$(mktemp)
  trap 'rm -f "$out"' EXIT
  if nix-instantiate --eval --strict --json nix/eval-modules.nix \
    --argstr nixpkgsLib "$NIXPKGS_LIB" > "$out"; then
    python3 - "$out" << 'EOF' || fail "module evaluation"
import json, sys, tomllib

result = json.load(open(sys.argv[1]))
problems = []

for name, host in sorted(result["hosts"].items()):
    if host["failedAssertions"]:
        problems.append(f"host {name}: assertions failed: {host['failedAssertions']}")
    with open(f"examples/hosts/{name}.toml", "rb") as f:
        expected = tomllib.load(f)
    if host["settings"] != expected:
        problems.append(
            f"host {name}: generated TOML differs from examples/hosts/{name}.toml:\n"
            f"  module:  {json.dumps(host['settings'], sort_keys=True)}\n"
            f"  example: {json.dumps(expected, sort_keys=True)}"
        )
    else:
        print(f"host {name}: settings equal examples/hosts/{name}.toml")

for name, node in sorted(result["testNodes"].items()):
    if node["failedAssertions"]:
        problems.append(f"VM test node {name}: assertions failed: {node['failedAssertions']}")

for case, messages in sorted(result["bad"].items()):
    if len(messages) != 1:
        problems.append(f"bad configuration {case}: expected one failed assertion, got {messages}")
    else:
        print(f"bad configuration {case}: refused ({messages[0]})")

for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
EOF
  else
    fail "nix-instantiate --eval nix/eval-modules.nix"
  fi
fi

if [ "$failures" -ne 0 ]; then
  echo "check-nix: $failures check(s) failed"
  exit 1
fi
echo "check-nix: all checks passed"
