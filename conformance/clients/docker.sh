#!/usr/bin/env bash
# docker interop: a private dockerd from Debian's docker.io package (lib.sh
# dockerd_start: own data root, socket and mount namespace, vfs). Images are
# made locally (no hub): `docker import` of a tarball and `docker build` of a
# FROM scratch Dockerfile. Against a plain-HTTP registry: push, tag, push again,
# rmi, pull by tag and by digest, content read back with docker create + cp;
# pulls of images pushed by podman (OCI) and buildah (Docker schema2). With
# token auth: docker login/logout, refusals. Over HTTPS with a verified
# certificate (/etc/docker/certs.d/NAME:PORT/ca.crt, private to the daemon),
# with token auth: refused without the CA, push and pull with it (those two
# parts are skipped with CLIENT_STORAGE=s3).
# Usage: REGISTRY_BIN=build/registry conformance/clients/docker.sh
. "$(dirname "$0")/lib.sh"

require_tool "$DOCKER_CLI"
require_tool "$DOCKERD"
require_tool unshare
require_tool jq
require_tool curl
require_tool openssl

# expect_fail DESC PATTERN CMD...: pass when CMD fails and its output matches
# the extended regexp PATTERN.
expect_fail() {
    local desc=$1 pat=$2; shift 2
    if "$@" >"$WORK/neg.out" 2>&1; then
        fail "$desc: it succeeded"
    elif grep -qiE "$pat" "$WORK/neg.out"; then
        pass "$desc"
    else
        fail "$desc: failed, but without /$pat/"
        show_tail "$WORK/neg.out"
    fi
}

# push_digest REF: docker push REF; prints the manifest digest docker reports
# ("TAG: digest: sha256:... size: N").
push_digest() {
    dk push "$1" >"$WORK/push.out" 2>&1 || { show_tail "$WORK/push.out" >&2; return 1; }
    grep -oE 'digest: sha256:[0-9a-f]{64}' "$WORK/push.out" | tail -n1 | cut -d' ' -f2
}

# image_id REF: the local image ID (sha256:HEX, the config digest).
image_id() { dk image inspect --format '{{.Id}}' "$1" 2>/dev/null; }

# file_is DESC IMAGE PATH FILE: the file PATH in IMAGE has FILE's bytes
# (docker create, docker cp, docker rm; nothing runs).
file_is() {
    local desc=$1 c
    rm -f "$WORK/cp.out"
    if c=$(dk create "$2" /none 2>"$WORK/create.err") &&
        dk cp "$c:$3" "$WORK/cp.out" >/dev/null 2>&1 && cmp -s "$WORK/cp.out" "$4"; then
        pass "$desc"
    else
        fail "$desc"
        show_tail "$WORK/create.err"
    fi
    [ -n "$c" ] && dk rm "$c" >/dev/null 2>&1
}

dockerd_start || finish

# --- local images (no network) ---------------------------------------------------------
CTX=$WORK/ctx
mkdir -p "$CTX/import" "$CTX/build"
head -c $((20000 + RANDOM)) /dev/urandom >"$CTX/import/imported.bin"
tar -C "$CTX/import" -cf "$WORK/import.tar" imported.bin
head -c $((30000 + RANDOM)) /dev/urandom >"$CTX/build/built.bin"
printf 'FROM scratch\nCOPY built.bin /data/built.bin\nCMD ["/data/built.bin"]\n' >"$CTX/build/Dockerfile"
check "docker import of a tarball (local/import:v1)" \
    dk import -c 'CMD ["/imported.bin"]' "$WORK/import.tar" local/import:v1
check "docker build of a FROM scratch Dockerfile (local/build:v1)" \
    dk build -q -t local/build:v1 "$CTX/build"
IMP_ID=$(image_id local/import:v1)
BLD_ID=$(image_id local/build:v1)

# --- plain HTTP, no auth ---------------------------------------------------------------
registry_start '[storage]\ndelete = true' || finish
R=$REG_ADDR

check "docker tag local/import:v1 $R/docker/import:v1" dk tag local/import:v1 "$R/docker/import:v1"
if IMP_DIGEST=$(push_digest "$R/docker/import:v1") && [ -n "$IMP_DIGEST" ]; then
    pass "docker push docker/import:v1 (insecure-registry 127.0.0.0/8: plain HTTP)"
    if got=$(reg_manifest docker/import v1 "$WORK/imp.json" 2>"$WORK/curl.err") && [ "$got" = "$IMP_DIGEST" ]; then
        pass "registry serves docker/import:v1 with the digest docker reported"
    else
        fail "GET docker/import:v1: digest '$got', docker pushed '$IMP_DIGEST'"
        show_tail "$WORK/curl.err"
    fi
    expect_eq "pushed manifest is Docker schema2" \
        "$(reg_header "$WORK/imp.json.headers" Content-Type)" application/vnd.docker.distribution.manifest.v2+json
    expect_eq "pushed manifest's config is the image ID" "$(jq -r .config.digest "$WORK/imp.json" 2>/dev/null)" "$IMP_ID"
else
    fail "docker push docker/import:v1"
fi
check "docker tag the same image as docker/import:v2" dk tag local/import:v1 "$R/docker/import:v2"
if V2=$(push_digest "$R/docker/import:v2") && [ "$V2" = "${IMP_DIGEST:-}" ] &&
    grep -q 'Layer already exists' "$WORK/push.out"; then
    pass "docker push docker/import:v2: layer already exists, same manifest digest"
else
    fail "docker push docker/import:v2: digest '${V2:-}' (v1 '${IMP_DIGEST:-}')"
    show_tail "$WORK/push.out"
fi
check "docker tag local/build:v1 $R/docker/build:v1" dk tag local/build:v1 "$R/docker/build:v1"
if BLD_DIGEST=$(push_digest "$R/docker/build:v1") && [ -n "$BLD_DIGEST" ] &&
    [ "$(reg_manifest docker/build v1 "$WORK/bld.json" 2>/dev/null)" = "$BLD_DIGEST" ]; then
    pass "docker push docker/build:v1 (built image); served with the reported digest"
else
    fail "docker push docker/build:v1"
fi
# shellcheck disable=SC2046 # digests, one per word
registry_blobs_stored "both images' configs and layers are in the registry's blob store" \
    $(jq -r '.config.digest, .layers[].digest' "$WORK/imp.json" "$WORK/bld.json" 2>/dev/null | sort -u)
expect_eq "tags of docker/import" \
    "$(run curl -fsS "http://$R/v2/docker/import/tags/list" 2>/dev/null | jq -c '.tags | sort')" '["v1","v2"]'

check "docker rmi every tag of both images" dk rmi -f "$IMP_ID" "$BLD_ID"
if [ -z "$(image_id "$IMP_ID")" ] && [ -z "$(image_id "$BLD_ID")" ]; then
    pass "images gone from the daemon"
else
    fail "images still present after rmi"
fi
check "docker pull docker/import:v1" dk pull -q "$R/docker/import:v1"
expect_eq "pulled image ID is the pushed config" "$(image_id "$R/docker/import:v1")" "$IMP_ID"
file_is "docker/import:v1 pulled back: /imported.bin has the imported bytes" \
    "$R/docker/import:v1" /imported.bin "$CTX/import/imported.bin"
check "docker pull docker/build@digest" dk pull -q "$R/docker/build@${BLD_DIGEST:-none}"
expect_eq "pulled-by-digest image ID is the built image's" "$(image_id "$R/docker/build@${BLD_DIGEST:-none}")" "$BLD_ID"
file_is "docker/build pulled back: /data/built.bin has the COPYed bytes" \
    "$R/docker/build@${BLD_DIGEST:-none}" /data/built.bin "$CTX/build/built.bin"
if dk image inspect --format '{{json .RepoDigests}}' "$R/docker/import:v1" 2>/dev/null |
    jq -e --arg d "$R/docker/import@${IMP_DIGEST:-none}" 'index($d) != null' >/dev/null; then
    pass "RepoDigests of the pulled image name the pushed digest"
else
    fail "RepoDigests $(dk image inspect --format '{{json .RepoDigests}}' "$R/docker/import:v1" 2>/dev/null) lack ${IMP_DIGEST:-?}"
fi
expect_fail "docker pull of a missing tag fails with 'manifest unknown'" 'manifest unknown|not found' \
    dk pull -q "$R/docker/import:nosuchtag"

# --- images pushed by podman and buildah, pulled by docker -------------------------------
containers_env
if command -v podman >/dev/null; then
    pm() { run podman "${CT_STORAGE_OPTS[@]}" "$@"; }
    PSRC=$WORK/podman-src
    build_oci_image "$PSRC" localhost/docker-from-podman:v1 2 >/dev/null
    oci_archive "$PSRC" "$WORK/podman-src.tar"
    PCFG=$(jq -r .config.digest "$(oci_blob_path "$PSRC" "$(oci_ref_digest "$PSRC" localhost/docker-from-podman:v1)")")
    PDIFFS=$(jq -c .rootfs.diff_ids "$(oci_blob_path "$PSRC" "$PCFG")")
    if pm load -i "$WORK/podman-src.tar" >"$WORK/pm.out" 2>&1 &&
        pm push -q --tls-verify=false localhost/docker-from-podman:v1 "docker://$R/podman/img:v1" >>"$WORK/pm.out" 2>&1; then
        pass "podman load + push podman/img:v1 (OCI manifest)"
        check "docker pull podman/img:v1 (OCI image manifest)" dk pull -q "$R/podman/img:v1"
        expect_eq "docker's image ID is podman's config digest" "$(image_id "$R/podman/img:v1")" "$PCFG"
        expect_eq "docker's layers are the source diff_ids" \
            "$(dk image inspect --format '{{json .RootFS.Layers}}' "$R/podman/img:v1" 2>/dev/null | jq -c .)" "$PDIFFS"
    else
        fail "podman load + push"
        show_tail "$WORK/pm.out"
    fi
else
    skip "podman not installed: no docker pull of a podman-pushed image"
fi
if command -v buildah >/dev/null; then
    bd() { run buildah "${CT_STORAGE_OPTS[@]}" "$@"; }
    head -c $((10000 + RANDOM)) /dev/urandom >"$WORK/buildah.bin"
    if C=$(bd from --pull=never scratch 2>"$WORK/bd.err") && bd copy "$C" "$WORK/buildah.bin" /b/buildah.bin >/dev/null 2>&1 &&
        bd commit -q --format docker "$C" localhost/docker-from-buildah:v1 >/dev/null 2>>"$WORK/bd.err" &&
        bd push -q --tls-verify=false localhost/docker-from-buildah:v1 "docker://$R/buildah/img:v1" >/dev/null 2>>"$WORK/bd.err"; then
        pass "buildah from scratch, copy, commit --format docker, push buildah/img:v1"
        check "docker pull buildah/img:v1" dk pull -q "$R/buildah/img:v1"
        file_is "buildah's file reads back through docker" "$R/buildah/img:v1" /b/buildah.bin "$WORK/buildah.bin"
    else
        fail "buildah build and push"
        show_tail "$WORK/bd.err"
    fi
else
    skip "buildah not installed: no docker pull of a buildah-pushed image"
fi
registry_log_check
registry_stop

# On S3 (CLIENT_STORAGE=s3) the rest is not run: token auth and HTTPS test
# login, tokens and certificates, which no blob store changes; the pushes,
# pulls and byte checks above are what S3 has to pass (the rest would add
# about 7 s, a third of the script).
if [ "${CLIENT_STORAGE:-fs}" = s3 ]; then
    skip "token auth and HTTPS: the same on every blob store, run with CLIENT_STORAGE=fs only"
    dockerd_stop
    finish
fi

# --- token auth, plain HTTP --------------------------------------------------------------
(echo secret | "$REGISTRY_BIN" passwd alice && echo pw2 | "$REGISTRY_BIN" passwd bob) \
    >"$WORK/htpasswd" 2>/dev/null
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$WORK/token.key" 2>/dev/null
AUTH="[auth]\nmode = token\nhtpasswd = $WORK/htpasswd\nkey = $WORK/token.key\nrule = user:alice * *\nrule = user:bob pull *"
registry_start "$AUTH" || finish
R=$REG_ADDR
check "token: docker tag" dk tag "$IMP_ID" "$R/alice/import:v1"
expect_fail "token: docker push without login is refused" 'unauthorized|authentication required|denied' \
    dk push "$R/alice/import:v1"
expect_fail "token: docker login with a wrong password is refused" 'unauthorized|incorrect|denied' \
    dk login -u alice --password-stdin "$R" <<<"wrong"
if dk login -u alice --password-stdin "$R" <<<"secret" >"$WORK/login.out" 2>&1 &&
    grep -q 'Login Succeeded' "$WORK/login.out"; then
    pass "token: docker login alice (password on stdin)"
else
    fail "token: docker login alice"
    show_tail "$WORK/login.out"
fi
# docker asks the token service for an offline token at login and keeps that
# refresh token (identitytoken), not the password; later pushes and pulls
# trade it for access tokens (grant_type=refresh_token).
if [ "$(jq -r --arg r "$R" '.auths[$r].auth // empty' "$DOCKER_CONFIG/config.json" 2>/dev/null |
    base64 -d 2>/dev/null)" = "alice:" ] &&
    jq -e --arg r "$R" '.auths[$r].identitytoken | length > 0' "$DOCKER_CONFIG/config.json" >/dev/null 2>&1 &&
    ! grep -q secret "$DOCKER_CONFIG/config.json"; then
    pass "token: DOCKER_CONFIG/config.json keeps a refresh token for alice, not the password"
else
    fail "token: DOCKER_CONFIG/config.json after login: $(jq -c --arg r "$R" '.auths[$r] | keys' "$DOCKER_CONFIG/config.json" 2>&1)"
fi
if A_DIGEST=$(push_digest "$R/alice/import:v1") && [ "$A_DIGEST" = "${IMP_DIGEST:-}" ]; then
    pass "token: docker push after login (same digest as without auth)"
else
    fail "token: docker push after login: '${A_DIGEST:-}'"
fi
check "token: docker rmi" dk rmi "$R/alice/import:v1"
check "token: docker pull after login" dk pull -q "$R/alice/import:v1"
check "token: docker logout" dk logout "$R"
check "token: docker rmi" dk rmi "$R/alice/import:v1"
expect_fail "token: docker pull after logout is refused" 'unauthorized|authentication required|denied' \
    dk pull -q "$R/alice/import:v1"
check "token: docker login bob (pull only)" dk login -u bob --password-stdin "$R" <<<"pw2"
check "token: docker pull as bob" dk pull -q "$R/alice/import:v1"
check "token: docker tag as bob/import:v1" dk tag "$R/alice/import:v1" "$R/bob/import:v1"
expect_fail "token: docker push as bob is refused" 'denied|unauthorized|authentication required' \
    dk push "$R/bob/import:v1"
dk logout "$R" >/dev/null 2>&1
registry_log_check
if grep -qE 'secret|pw2|eyJ' "$REG_LOG"; then
    fail "token: a password or a token reached the server log"
else
    pass "token: no password or token in the server log"
fi
registry_stop

# --- HTTPS with a verified certificate and token auth --------------------------------------
# The registry listens on ::1, reached as $DOCKER_TLS_NAME (the daemon's private
# /etc/hosts): not in 127.0.0.0/8, so docker verifies the certificate.
if grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/tls.key" -out "$WORK/tls.crt" -days 2 \
        -subj "/CN=$DOCKER_TLS_NAME" -addext "subjectAltName=DNS:$DOCKER_TLS_NAME" 2>/dev/null
    REG_LISTEN='[::1]:0' registry_start "[server]\ntls_cert = $WORK/tls.crt\ntls_key = $WORK/tls.key\n$AUTH" ||
        finish
    T=$DOCKER_TLS_NAME:${REG_ADDR##*:}
    dk tag "$IMP_ID" "$T/alice/tls:v1" >/dev/null 2>&1
    expect_fail "tls: docker login without the CA fails certificate verification" 'x509|certificate' \
        dk login -u alice --password-stdin "$T" <<<"secret"
    mkdir -p "$DK_CERTS/$T"
    cp "$WORK/tls.crt" "$DK_CERTS/$T/ca.crt"
    check "tls: docker login with /etc/docker/certs.d/$T/ca.crt" dk login -u alice --password-stdin "$T" <<<"secret"
    if TLS_DIGEST=$(push_digest "$T/alice/tls:v1") && [ "$TLS_DIGEST" = "${IMP_DIGEST:-}" ]; then
        pass "tls: docker push over verified HTTPS"
    else
        fail "tls: docker push over HTTPS: '${TLS_DIGEST:-}'"
    fi
    check "tls: docker rmi" dk rmi "$T/alice/tls:v1"
    check "tls: docker pull over verified HTTPS" dk pull -q "$T/alice/tls:v1"
    file_is "tls: pulled image's file has the imported bytes" "$T/alice/tls:v1" /imported.bin \
        "$CTX/import/imported.bin"
    dk logout "$T" >/dev/null 2>&1
    registry_log_check
    registry_stop
else
    skip "tls: no ::1 on this host; docker verifies no certificate on 127.0.0.0/8"
fi

dockerd_stop
finish
