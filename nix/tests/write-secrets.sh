#!/usr/bin/env bash
# Runs modules/keydb-write-secrets.sh, the keydb service's ExecStartPre, as systemd would
# (credentials in $CREDENTIALS_DIRECTORY): an empty credential, one with a line break in
# the middle, a missing one and a bad user name each stop it with a message naming the
# file and leave no secrets file; good ones give a file a real engine loads, where the
# password authenticates, an empty one does not, and the default user is off.
#
#   nix/tests/write-secrets.sh [SCRIPT]     (default: modules/keydb-write-secrets.sh)
#
# scripts/check-nix.sh runs it on the script as the module writes it too. The engine
# part needs redis-server and redis-cli, and is skipped with a line without them.
set -uo pipefail
cd "$(dirname "$0")/../.."
script=${1:-modules/keydb-write-secrets.sh}

failures=0
fail() {
  echo "FAIL: write-secrets: $*"
  failures=$((failures + 1))
}

work=$(mktemp -d)
engine_pid=
cleanup() {
  [ -n "$engine_pid" ] && kill "$engine_pid" 2> /dev/null
  rm -rf "$work"
}
trap cleanup EXIT
creds=$work/credentials
mkdir -p "$creds" "$work/run"
out=$work/run/secrets.conf

good() {
  printf 'daemon-pw\n' > "$creds/engine-password"
  printf 'app-pw_0.9~+/=\n' > "$creds/user-app"
  printf 'repl-pw' > "$creds/replication-password"
}

# Runs the script with the arguments the module gives it; output in $work/stderr.
run() {
  rm -f "$out"
  CREDENTIALS_DIRECTORY=$creds bash "$script" "$out" \
    --user keyfleet engine-password /run/secrets/engine-password "+info -@scripting" \
    --user "${app_name:-app}" user-app /run/secrets/app-password "~* &* +@all -@dangerous" \
    --masterauth replication replication-password /run/secrets/replication-password \
    2> "$work/stderr"
}

refused() {
  local what=$1 expected=$2
  if run; then
    fail "$what: accepted; wrote: $(cat "$out" 2> /dev/null)"
  elif ! grep -qF -- "$expected" "$work/stderr"; then
    fail "$what: the message does not say \"$expected\": $(cat "$work/stderr")"
  elif [ -e "$out" ]; then
    fail "$what: refused, but a secrets file was written"
  else
    echo "write-secrets: $what: refused ($(cat "$work/stderr"))"
  fi
}

good
: > "$creds/user-app"
refused "an empty credential" "user-app (/run/secrets/app-password) is empty"
good
printf '\n\n' > "$creds/replication-password"
refused "a credential of newlines only" "replication-password (/run/secrets/replication-password) is empty"
good
printf 'first\nsecond\n' > "$creds/engine-password"
refused "a line break in the middle" "engine-password (/run/secrets/engine-password) has characters other than"
good
printf 'has space\n' > "$creds/user-app"
refused "a space" "user-app (/run/secrets/app-password) has characters other than"
good
rm "$creds/user-app"
refused "a missing credential" "user-app (/run/secrets/app-password) is missing or unreadable"
good
app_name="app user" refused "a user name with a space" "ACL user name 'app user'"

good
if ! run; then
  fail "good credentials refused: $(cat "$work/stderr")"
else
  app_hash=$(printf '%s' 'app-pw_0.9~+/=' | sha256sum | cut -d' ' -f1)
  expected="user default reset
user keyfleet reset on #$(printf '%s' daemon-pw | sha256sum | cut -d' ' -f1) +info -@scripting
user app reset on #$app_hash ~* &* +@all -@dangerous
masteruser replication
masterauth repl-pw"
  [ "$(cat "$out")" = "$expected" ] || fail "good credentials: wrote$(printf '\n%s' "$(cat "$out")")"
  [ "$(stat -c %a "$out")" = 600 ] || fail "the secrets file is mode $(stat -c %a "$out"), not 600"
  echo "write-secrets: good credentials: written, mode 600"

  if command -v redis-server > /dev/null && command -v redis-cli > /dev/null; then
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    printf 'port %s\nbind 127.0.0.1\nsave ""\nappendonly no\ninclude %s\n' "$port" "$out" > "$work/engine.conf"
    redis-server "$work/engine.conf" > "$work/engine.log" 2>&1 &
    engine_pid=$!
    cli() { timeout 5 redis-cli --no-auth-warning -h 127.0.0.1 -p "$port" "$@" 2>&1; }
    for _ in $(seq 100); do
      case $(cli PING) in *NOAUTH* | *PONG*) break ;; esac
      sleep 0.05
    done
    reply=$(cli --user app --pass 'app-pw_0.9~+/=' SET k v)
    [ "$reply" = OK ] || fail "app cannot write with its password: $reply"
    reply=$(cli --user app --pass '' PING)
    case $reply in *WRONGPASS* | *NOAUTH* | *"invalid username-password"*) ;; *) fail "an empty password authenticates app: $reply" ;; esac
    reply=$(cli PING)
    case $reply in *NOAUTH*) ;; *) fail "an unauthenticated client is served: $reply" ;; esac
    reply=$(cli --user keyfleet --pass daemon-pw GET k)
    case $reply in *NOPERM*) ;; *) fail "the daemon's user reads keys: $reply" ;; esac
    echo "write-secrets: redis-server loads the file: app authenticates, an empty password and no password do not"
  else
    echo "write-secrets: engine check skipped (redis-server or redis-cli not installed)"
  fi
fi

if [ "$failures" -ne 0 ]; then
  exit 1
fi
echo "write-secrets: all checks passed ($script)"
