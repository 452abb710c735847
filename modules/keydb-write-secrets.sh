#!/usr/bin/env bash
# Writes the engine's run-time secrets file (ACL users, masteruser and masterauth) from
# systemd credentials. modules/keydb-acl.nix runs it as the keydb service's
# ExecStartPre, with its arguments set before this text; nix/tests/write-secrets.sh
# runs it as it is.
#
#   keydb-write-secrets OUT [--user NAME CREDENTIAL SOURCE RULES]...
#                           [--masterauth USER CREDENTIAL SOURCE]
#
# CREDENTIAL is a LoadCredential= name, read from $CREDENTIALS_DIRECTORY; SOURCE is the
# file it came from, named in messages. Every credential is read and checked before
# anything is written, each in an assignment of its own so that a failure stops the
# script (a failure inside $(...) in a command's argument would not): an empty,
# missing or malformed credential stops the engine from starting. Passwords are stored
# as their SHA-256, except masterauth, which the engine must send to its peers.
set -euo pipefail
umask 0077

die() {
  echo "keydb-write-secrets: $*" >&2
  exit 1
}

# Prints the credential's value, or exits naming the file it came from.
read_secret() {
  local credential=$1 source=$2 file value
  [[ -n ${CREDENTIALS_DIRECTORY:-} ]] ||
    die "CREDENTIALS_DIRECTORY is not set (the service must have LoadCredential=)"
  file=$CREDENTIALS_DIRECTORY/$credential
  [[ -f $file && -r $file ]] || die "credential $credential ($source) is missing or unreadable"
  value=$(< "$file") # drops the trailing newlines, keeps any other
  [[ -n $value ]] || die "credential $credential ($source) is empty"
  [[ $value =~ ^[A-Za-z0-9._~+/=-]+$ ]] ||
    die "credential $credential ($source) has characters other than A-Z a-z 0-9 ._~+/=- (a line break inside it?); one value per file, as \`openssl rand -base64 32\` makes"
  printf '%s' "$value"
}

(($# >= 1)) || die "usage: keydb-write-secrets OUT [--user NAME CREDENTIAL SOURCE RULES]... [--masterauth USER CREDENTIAL SOURCE]"
out=$1
shift

# No unauthenticated client: the default user can do nothing.
lines=("user default reset")
while (($#)); do
  case $1 in
    --user)
      (($# >= 5)) || die "--user needs NAME CREDENTIAL SOURCE RULES"
      name=$2
      [[ $name =~ ^[A-Za-z0-9._-]+$ ]] || die "ACL user name '$name' has characters other than A-Z a-z 0-9 ._-"
      password=$(read_secret "$3" "$4")
      hash=$(printf '%s' "$password" | sha256sum | cut -d' ' -f1)
      lines+=("user $name reset on #$hash $5")
      shift 5
      ;;
    --masterauth)
      (($# >= 4)) || die "--masterauth needs USER CREDENTIAL SOURCE"
      password=$(read_secret "$3" "$4")
      lines+=("masteruser $2" "masterauth $password")
      shift 4
      ;;
    *) die "unknown argument '$1'" ;;
  esac
done

tmp=$(mktemp "$(dirname "$out")/.secrets.XXXXXX")
printf '%s\n' "${lines[@]}" > "$tmp"
mv "$tmp" "$out"
