#!/bin/sh
# Make docker/compose/secrets/ for docker/compose.yaml: a self-signed TLS
# certificate for NAME (default localhost), the token service's EC key, and an
# htpasswd with one line per USER (passwords read from the terminal, or one per
# line on stdin). Files are readable by the container's user (uid 10001).
#   docker/compose/setup.sh [-n NAME] USER...
# SECRETS_DIR replaces docker/compose/secrets. Needs openssl, and a registry
# binary (REGISTRY, default: registry on PATH,
# else the image through docker) for the bcrypt hashes.
set -eu
name=localhost
if [ "${1:-}" = "-n" ]; then name=$2; shift 2; fi
[ $# -ge 1 ] || { echo "usage: $0 [-n NAME] USER..." >&2; exit 2; }
dir=${SECRETS_DIR:-$(cd "$(dirname "$0")" && pwd)/secrets}
mkdir -p "$dir"
if [ -n "${REGISTRY:-}" ]; then
    passwd() { "$REGISTRY" passwd "$1"; }
elif command -v registry >/dev/null 2>&1; then
    passwd() { registry passwd "$1"; }
else
    passwd() { docker run --rm -i "${REGISTRY_IMAGE:-registry:latest}" passwd "$1"; }
fi
[ -f "$dir/tls.key" ] || openssl req -x509 -newkey rsa:2048 -nodes -days 825 \
    -keyout "$dir/tls.key" -out "$dir/tls.crt" -subj "/CN=$name" \
    -addext "subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1" 2>/dev/null
[ -f "$dir/token.key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 \
    -out "$dir/token.key" 2>/dev/null
: >"$dir/htpasswd.new"
for user in "$@"; do
    if [ -t 0 ]; then
        printf 'password for %s: ' "$user" >&2
        stty -echo; IFS= read -r pw; stty echo; echo >&2
    else
        IFS= read -r pw
    fi
    printf '%s\n' "$pw" | passwd "$user" >>"$dir/htpasswd.new"
done
mv "$dir/htpasswd.new" "$dir/htpasswd"
# The container runs as uid 10001: it must read the keys. Nobody else may.
chmod 0640 "$dir/tls.key" "$dir/token.key" "$dir/htpasswd"
chmod 0644 "$dir/tls.crt"
chgrp 10001 "$dir/tls.key" "$dir/token.key" "$dir/htpasswd" 2>/dev/null ||
    chmod 0644 "$dir/tls.key" "$dir/token.key" "$dir/htpasswd"
echo "secrets in $dir; clients trust $dir/tls.crt (e.g. /etc/docker/certs.d/$name:5000/ca.crt)"
