#!/usr/bin/env bash
# Real clients against a private registry: token mode with the built-in token
# service (skopeo --creds, podman login/push/pull, buildah push --creds), basic
# mode, and HTTPS with a self-signed certificate (curl --cacert, skopeo
# --cert-dir). Users: alice may do everything; bob may only pull; anonymous
# callers may pull public/*.
# Usage: REGISTRY_BIN=build/registry conformance/clients/auth.sh
. "$(dirname "$0")/lib.sh"

require_tool skopeo
require_tool jq
require_tool curl
require_tool openssl

containers_env
sk() { run skopeo --policy "$CT_POLICY" "$@"; }
COPY=(copy --quiet --src-tls-verify=false --dest-tls-verify=false --preserve-digests)

# expect_fail DESC CMD...: pass when CMD fails.
expect_fail() {
    local desc=$1; shift
    if "$@" >"$WORK/neg.out" 2>&1; then
        fail "$desc: it succeeded"
    else
        pass "$desc"
    fi
}

(echo secret | "$REGISTRY_BIN" passwd alice && echo pw2 | "$REGISTRY_BIN" passwd bob) \
    >"$WORK/htpasswd" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/token.key" 2>/dev/null
RULES='rule = user:alice * *\nrule = user:bob pull *\nrule = anonymous pull public/*'

SRC=$WORK/src
build_oci_image "$SRC" localhost/auth-src:v1 2 >/dev/null
oci_archive "$SRC" "$WORK/src.tar"

# --- token mode --------------------------------------------------------------------
registry_start "[auth]\nmode = token\nhtpasswd = $WORK/htpasswd\nkey = $WORK/token.key\n$RULES" ||
    finish
R=$REG_ADDR

check "token: skopeo copy --dest-creds alice pushes" \
    sk "${COPY[@]}" --dest-creds alice:secret "oci:$SRC:localhost/auth-src:v1" "docker://$R/team/app:v1"
check "token: skopeo copy --dest-creds alice pushes to public/" \
    sk "${COPY[@]}" --dest-creds alice:secret "oci:$SRC:localhost/auth-src:v1" "docker://$R/public/app:v1"
check "token: skopeo inspect --creds bob (pull only) reads" \
    sk inspect --tls-verify=false --creds bob:pw2 "docker://$R/team/app:v1"
expect_fail "token: skopeo copy --dest-creds bob is refused (pull only)" \
    sk "${COPY[@]}" --dest-creds bob:pw2 "oci:$SRC:localhost/auth-src:v1" "docker://$R/team/app:v2"
expect_fail "token: wrong password is refused" \
    sk inspect --tls-verify=false --creds alice:wrong "docker://$R/team/app:v1"
check "token: anonymous inspect of public/app works" \
    sk inspect --tls-verify=false "docker://$R/public/app:v1"
expect_fail "token: anonymous inspect of team/app is refused" \
    sk inspect --tls-verify=false "docker://$R/team/app:v1"

if command -v podman >/dev/null; then
    pm() { run podman "${CT_STORAGE_OPTS[@]}" "$@"; }
    check "token: podman load the source image" pm load -i "$WORK/src.tar"
    check "token: podman login" pm login --tls-verify=false -u alice -p secret "$R"
    check "token: podman push after login" \
        pm push --tls-verify=false localhost/auth-src:v1 "$R/alice/podman:v1"
    check "token: podman rmi" pm rmi -f localhost/auth-src:v1
    check "token: podman pull after login" pm pull -q --tls-verify=false "$R/alice/podman:v1"
    check "token: podman logout" pm logout "$R"
    expect_fail "token: podman pull of team/app after logout is refused" \
        pm pull -q --tls-verify=false "$R/team/app:v1"
    check "token: podman login as bob" pm login --tls-verify=false -u bob -p pw2 "$R"
    expect_fail "token: podman push as bob is refused" \
        pm push --tls-verify=false "$R/alice/podman:v1" "$R/bob/podman:v1"
    pm logout "$R" >/dev/null 2>&1
else
    skip "podman not installed"
fi

if command -v buildah >/dev/null; then
    bd() { run buildah "${CT_STORAGE_OPTS[@]}" "$@"; }
    head -c 4096 /dev/urandom >"$WORK/file.bin"
    if C=$(bd from scratch 2>"$WORK/bd.err") && bd copy "$C" "$WORK/file.bin" /file.bin >/dev/null &&
        bd commit -q --format oci "$C" localhost/auth-buildah:v1 >/dev/null; then
        pass "token: buildah from scratch, copy, commit"
        check "token: buildah push --creds alice" bd push --creds alice:secret --tls-verify=false \
            localhost/auth-buildah:v1 "docker://$R/alice/buildah:v1"
        expect_fail "token: buildah push --creds bob is refused" bd push --creds bob:pw2 \
            --tls-verify=false localhost/auth-buildah:v1 "docker://$R/bob/buildah:v1"
        check "token: the pushed image reads back" \
            sk inspect --tls-verify=false --creds bob:pw2 "docker://$R/alice/buildah:v1"
    else
        fail "token: buildah from scratch/copy/commit"
        show_tail "$WORK/bd.err"
    fi
else
    skip "buildah not installed"
fi
registry_log_check
if grep -qE 'secret|pw2|eyJ' "$REG_LOG"; then
    fail "token: a password or a token reached the server log"
else
    pass "token: no password or token in the server log"
fi
registry_stop

# --- basic mode ----------------------------------------------------------------------
registry_start "[auth]\nmode = basic\nhtpasswd = $WORK/htpasswd\n$RULES" || finish
R=$REG_ADDR
check "basic: skopeo copy --dest-creds alice pushes" \
    sk "${COPY[@]}" --dest-creds alice:secret "oci:$SRC:localhost/auth-src:v1" "docker://$R/team/app:v1"
expect_fail "basic: skopeo copy --dest-creds bob is refused" \
    sk "${COPY[@]}" --dest-creds bob:pw2 "oci:$SRC:localhost/auth-src:v1" "docker://$R/team/app:v2"
check "basic: skopeo list-tags --creds bob" sk list-tags --tls-verify=false --creds bob:pw2 \
    "docker://$R/team/app"
registry_log_check
registry_stop

# --- HTTPS with a self-signed certificate --------------------------------------------
CERTS=$WORK/certs
mkdir -p "$CERTS"
if openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/tls.key" -out "$CERTS/ca.crt" \
    -days 2 -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null; then
    registry_start "[server]\ntls_cert = $CERTS/ca.crt\ntls_key = $WORK/tls.key" || finish
    R=$REG_ADDR
    check "tls: curl --cacert GET /v2/" curl -fsS --cacert "$CERTS/ca.crt" "https://$R/v2/"
    expect_fail "tls: curl without the CA refuses the certificate" curl -fsS "https://$R/v2/"
    check "tls: skopeo copy --dest-cert-dir" sk copy --quiet --preserve-digests \
        --dest-cert-dir "$CERTS" "oci:$SRC:localhost/auth-src:v1" "docker://$R/secure/app:v1"
    check "tls: skopeo inspect --cert-dir" sk inspect --cert-dir "$CERTS" "docker://$R/secure/app:v1"
    expect_fail "tls: skopeo without the certificate refuses" \
        sk inspect "docker://$R/secure/app:v1"
    registry_log_check
    registry_stop
else
    fail "tls: could not make a self-signed certificate"
fi

finish
