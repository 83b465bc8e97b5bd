#!/bin/sh
# Renders redis-users.acl into the ACL file Redis loads: comment lines dropped, each placeholder
# replaced by the SHA-256 of a password read from a file (never an argument, which `ps` shows).
#   k8s/base/redis-users.sh SIDECAR_PASSWORD_FILE ISSUER_PASSWORD_FILE INJECTOR_PASSWORD_FILE > users.acl
# A password is one line of visible characters (e.g. `openssl rand -hex 32`): hopguard trims the
# file it reads, so whitespace inside or around it would hash differently here.
set -eu
[ $# -eq 3 ] || { echo "usage: $0 SIDECAR_PASSWORD_FILE ISSUER_PASSWORD_FILE INJECTOR_PASSWORD_FILE" >&2; exit 2; }

sha256_of() {
  password=$(cat "$1")
  case $password in
    '' | *[![:graph:]]*) echo "$0: $1 must hold one password of visible characters, nothing else" >&2; exit 1 ;;
  esac
  printf %s "$password" | openssl dgst -sha256 -r | cut -c1-64
}

sidecar=$(sha256_of "$1")
issuer=$(sha256_of "$2")
injector=$(sha256_of "$3")
sed -e '/^#/d' -e "s/SIDECAR_PASSWORD_SHA256/$sidecar/" -e "s/ISSUER_PASSWORD_SHA256/$issuer/" -e "s/INJECTOR_PASSWORD_SHA256/$injector/" "$(dirname "$0")/redis-users.acl"
