#!/usr/bin/env bash
# The container image (docker/Dockerfile) built and run by a private dockerd
# (lib.sh dockerd_start). With no image hub, the Debian 12 base image is made
# here: mmdebstrap --variant=minbase from this host's apt sources (and its
# Acquire options: proxies, Valid-Until), imported as debian:bookworm-slim.
# Then: docker build --network host; the image's user, volume, port,
# healthcheck, no compiler; docker run with a mounted config on a free loopback
# port (host network); health reported by the image's HEALTHCHECK; docker push
# into it, rmi, pull back, bytes compared; a clean stop (exit 0) and the data
# surviving in the volume for a new container; docker/compose.yaml validated by
# `docker-compose config`, and the image run with its mounts and its own
# registry.conf (HTTPS + token auth), then docker login, push and pull through it.
#
# The image builds the server from the sources, whatever REGISTRY_BIN is: the
# ASan pass of make test skips this script (CLIENTS_SKIP=container).
# CONTAINER_BASE_TAR=FILE uses FILE (a Debian 12 root tarball) instead of
# running mmdebstrap (for development; make test always builds it).
# Usage: REGISTRY_BIN=build/registry conformance/clients/container.sh
# client-script-timeout: 900
. "$(dirname "$0")/lib.sh"

require_tool "$DOCKER_CLI"
require_tool "$DOCKERD"
require_tool unshare
require_tool mmdebstrap
require_tool jq
require_tool curl
require_tool openssl
# The image build alone takes minutes: one command may take this long.
BUILD_TIMEOUT=${BUILD_TIMEOUT:-600}
IMG=registry-test:latest

# free_port: a TCP port nothing listens on (v4 or v6), from a random start.
free_port() {
    local p i used
    used=$(awk 'NR > 1 && $4 == "0A" { split($2, a, ":"); print a[2] }' /proc/net/tcp /proc/net/tcp6 2>/dev/null)
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        grep -qix "$(printf '%04X' "$p")" <<<"$used" || { echo "$p"; return 0; }
    done
    return 1
}

# wait_health NAME: until the container's HEALTHCHECK status is healthy (or
# unhealthy, or it stopped). Prints the last status.
wait_health() {
    local s i
    for ((i = 0; i < 120; i++)); do
        s=$(dk inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{end}} {{.State.Status}}' "$1" 2>/dev/null)
        case $s in healthy* | unhealthy* | *exited | *dead | "") break ;; esac
        sleep 0.5
    done
    echo "${s%% *}"
}

# rm_container NAME: stop and remove it, quietly.
rm_container() { dk rm -f "$1" >/dev/null 2>&1; }

# overlay2 when this filesystem can take an overlay mount (vfs copies the whole
# root filesystem for every layer and every container: several times slower).
mkdir -p "$WORK/ovl/l" "$WORK/ovl/u" "$WORK/ovl/w" "$WORK/ovl/m"
if unshare --mount --propagation private mount -t overlay overlay \
    -o "lowerdir=$WORK/ovl/l,upperdir=$WORK/ovl/u,workdir=$WORK/ovl/w" "$WORK/ovl/m" 2>/dev/null; then
    DK_STORAGE_DRIVER=overlay2
else
    DK_STORAGE_DRIVER=vfs
    note "no overlay mounts here: the vfs storage driver (slow)"
fi
rm -rf "$WORK/ovl"
DK_STORAGE_DRIVER=$DK_STORAGE_DRIVER dockerd_start || finish
SECS=$SECONDS

# --- the Debian base image ---------------------------------------------------------------
BASE_TAR=${CONTAINER_BASE_TAR:-}
if [ -z "$BASE_TAR" ]; then
    BASE_TAR=$WORK/debian.tar
    # The host's sources and its Acquire options (proxy, expired snapshot
    # Release files); mmdebstrap writes the options into the image's apt.conf.d,
    # so the Dockerfile's apt-get uses them too.
    apt-config dump | grep -iE '^Acquire::(Check-Valid-Until|Check-Date|https?::Proxy|Retries) ' \
        >"$WORK/apt-acquire.conf" || true
    mirrors=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] && grep -qE '^[[:space:]]*(deb[[:space:]]|Types:)' "$f" && mirrors+=("$f")
    done
    [ ${#mirrors[@]} -gt 0 ] || mirrors=(http://deb.debian.org/debian)
    t0=$SECONDS
    # Without documentation, as debian:bookworm-slim is.
    if timeout --kill-after=10 "$BUILD_TIMEOUT" mmdebstrap --variant=minbase --quiet \
        --aptopt="$WORK/apt-acquire.conf" --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' bookworm "$BASE_TAR" "${mirrors[@]}" \
        >"$WORK/mmdebstrap.log" 2>&1; then
        pass "mmdebstrap --variant=minbase bookworm ($((SECONDS - t0)) s, $(($(size_of "$BASE_TAR") / 1048576)) MiB)"
    else
        fail "mmdebstrap bookworm"
        show_tail "$WORK/mmdebstrap.log" 20
        finish
    fi
fi
check "docker import the root tarball as debian:bookworm-slim" dk import "$BASE_TAR" debian:bookworm-slim

# --- the image -----------------------------------------------------------------------------
t0=$SECONDS
if timeout --kill-after=10 "$BUILD_TIMEOUT" "$DOCKER_CLI" -H "unix://$DK_DIR/s" build --network host \
    -f "$REPO_ROOT/docker/Dockerfile" --build-arg VERSION=container-test -t "$IMG" "$REPO_ROOT" \
    >"$WORK/build.log" 2>&1; then
    BUILD_SECS=$((SECONDS - t0))
    SIZE=$(dk image inspect --format '{{.Size}}' "$IMG")
    pass "docker build --network host -f docker/Dockerfile ($BUILD_SECS s; image $((SIZE / 1048576)) MiB, base $(($(dk image inspect --format '{{.Size}}' debian:bookworm-slim) / 1048576)) MiB)"
else
    fail "docker build -f docker/Dockerfile"
    show_tail "$WORK/build.log" 30
    finish
fi
dk image inspect "$IMG" >"$WORK/image.json" 2>/dev/null
expect_eq "image runs as uid 10001" "$(jq -r '.[0].Config.User' "$WORK/image.json")" 10001:10001
expect_eq "image declares VOLUME /var/lib/registry" "$(jq -c '.[0].Config.Volumes | keys' "$WORK/image.json")" '["/var/lib/registry"]'
expect_eq "image exposes 5000/tcp" "$(jq -c '.[0].Config.ExposedPorts | keys' "$WORK/image.json")" '["5000/tcp"]'
expect_eq "image HEALTHCHECK is registry healthcheck" "$(jq -c '.[0].Config.Healthcheck.Test' "$WORK/image.json")" \
    '["CMD","/usr/local/bin/registry","healthcheck","--config","/etc/registry/registry.conf"]'
expect_eq "registry version in the image" \
    "$(dk run --rm --network none "$IMG" version 2>/dev/null)" "registry container-test"
if dk run --rm --network none --entrypoint /bin/sh "$IMG" -c \
    'command -v cc || command -v gcc || command -v make || ls /usr/include/microhttpd.h' >"$WORK/cc.out" 2>&1; then
    fail "the runtime image has a compiler or headers: $(head -n1 "$WORK/cc.out")"
else
    pass "the runtime image has no compiler, make or -dev headers"
fi

# --- run it: mounted config, host network, a free loopback port ----------------------------
# Every run below gives the server a 60 s start period: a start slowed by a
# loaded machine is "starting", not "unhealthy" after three 1 s checks.
PORT=$(free_port) || { fail "no free port"; finish; }
A=127.0.0.1:$PORT
mkdir -p "$WORK/conf"
printf '[server]\nlisten = %s\n\n[storage]\nroot = /var/lib/registry\ndelete = true\n' "$A" >"$WORK/conf/registry.conf"
chmod 644 "$WORK/conf/registry.conf"
on_cleanup rm_container regtest
check "docker run -d the image (host network, config mounted, volume regtest-data)" \
    dk run -d --name regtest --network host --health-interval 1s --health-timeout 5s --health-start-period 60s \
    -v "$WORK/conf/registry.conf:/etc/registry/registry.conf:ro" -v regtest-data:/var/lib/registry "$IMG"
expect_eq "HEALTHCHECK (registry healthcheck) says healthy" "$(wait_health regtest)" healthy
check "GET /healthz from the host" run curl -fsS "http://$A/healthz"
if dk logs regtest 2>&1 | grep -q "serving http on $A"; then
    pass "docker logs shows the server's start line"
else
    fail "docker logs lacks 'serving http on $A'"
    dk logs regtest 2>&1 | show_tail /dev/stdin
fi
head -c $((40000 + RANDOM)) /dev/urandom >"$WORK/payload.bin"
mkdir -p "$WORK/ctx"
cp "$WORK/payload.bin" "$WORK/ctx/"
printf 'FROM scratch\nCOPY payload.bin /payload.bin\n' >"$WORK/ctx/Dockerfile"
check "docker build a FROM scratch test image" dk build -q -t "$A/test/payload:v1" "$WORK/ctx"
check "docker push into the containerized registry" dk push "$A/test/payload:v1"
check "docker rmi" dk rmi "$A/test/payload:v1"
check "docker pull from the containerized registry" dk pull -q "$A/test/payload:v1"
c=$(dk create "$A/test/payload:v1" /none 2>/dev/null)
if dk cp "$c:/payload.bin" "$WORK/payload.out" >/dev/null 2>&1 && cmp -s "$WORK/payload.bin" "$WORK/payload.out"; then
    pass "pulled file has the pushed bytes"
else
    fail "pulled file differs from the pushed one"
fi
dk rm "$c" >/dev/null 2>&1
check "docker stop (SIGTERM)" dk stop -t 30 regtest
expect_eq "the server exited 0 on SIGTERM" "$(dk inspect --format '{{.State.ExitCode}}' regtest 2>/dev/null)" 0
rm_container regtest
# The image's own file, the address from the environment: the server and its
# health check both take it.
if dk run --rm --network none -e REGISTRY_SERVER_LISTEN="$A" -e REGISTRY_STORAGE_DELETE=true "$IMG" \
    check-config /etc/registry/registry.conf >"$WORK/check-config.out" 2>&1 &&
    grep -qx "listen = $A" "$WORK/check-config.out" && grep -qx 'delete = true' "$WORK/check-config.out"; then
    pass "registry check-config in the image takes REGISTRY_SERVER_LISTEN and REGISTRY_STORAGE_DELETE"
else
    fail "check-config with REGISTRY_* variables"
    show_tail "$WORK/check-config.out"
fi
check "docker run a new container on the same volume, configured by environment variables" \
    dk run -d --name regtest --network host --health-interval 1s --health-timeout 5s --health-start-period 60s \
    -e REGISTRY_SERVER_LISTEN="$A" -v regtest-data:/var/lib/registry "$IMG"
expect_eq "healthy (the health check takes the variables too)" "$(wait_health regtest)" healthy
expect_eq "the pushed tag survived in the volume" \
    "$(run curl -fsS "http://$A/v2/test/payload/tags/list" 2>/dev/null | jq -c .tags)" '["v1"]'
rm_container regtest
dk volume rm regtest-data >/dev/null 2>&1

# --- docker/compose.yaml: validated, then up with HTTPS and token auth -----------------------
COMPOSE=/usr/bin/docker-compose
if [ -x "$COMPOSE" ]; then
    check "docker-compose config accepts docker/compose.yaml" \
        run env DOCKER_HOST="unix://$DK_DIR/s" "$COMPOSE" -f "$REPO_ROOT/docker/compose.yaml" config -q
    # Its own config but for the address (a free port; ::1 under the name the
    # daemon resolves there, so docker verifies the certificate), secrets from
    # setup.sh in the temp dir, host network.
    if grep -q '^0\{31\}1 ' /proc/net/if_inet6 2>/dev/null; then
        HOST=$DOCKER_TLS_NAME LISTEN="[::1]"
    else
        HOST=127.0.0.1 LISTEN=127.0.0.1
        note "no ::1: HTTPS on 127.0.0.1, which docker does not verify"
    fi
    PORT=$(free_port)
    sed "s/^listen = .*/listen = $LISTEN:$PORT/" "$REPO_ROOT/docker/compose/registry.conf" >"$WORK/conf/compose.conf"
    chmod 644 "$WORK/conf/compose.conf"
    printf 'secret\nadminpw\n' | SECRETS_DIR=$WORK/secrets REGISTRY=$REGISTRY_BIN \
        sh "$REPO_ROOT/docker/compose/setup.sh" -n "$HOST" alice admin >"$WORK/setup.out" 2>&1 ||
        { fail "docker/compose/setup.sh"; show_tail "$WORK/setup.out"; }
    # docker-compose up would run the same: its host network cannot go with
    # the file's published port, so docker run with the file's mounts.
    on_cleanup rm_container regcompose
    if check "compose config: docker run with the compose mounts (HTTPS, token auth)" \
        dk run -d --name regcompose --network host --health-interval 1s --health-timeout 5s --health-start-period 60s \
        -v "$WORK/conf/compose.conf:/etc/registry/registry.conf:ro" \
        -v "$WORK/secrets:/etc/registry/secrets:ro" -v regcompose-data:/var/lib/registry "$IMG"; then
        expect_eq "compose config: healthy (registry healthcheck over TLS)" "$(wait_health regcompose)" healthy
        T=$HOST:$PORT
        mkdir -p "$DK_CERTS/$T"
        cp "$WORK/secrets/tls.crt" "$DK_CERTS/$T/ca.crt"
        check "compose config: docker login alice over HTTPS" dk login -u alice --password-stdin "$T" <<<"secret"
        check "compose config: docker tag alice/payload:v1" dk tag "$A/test/payload:v1" "$T/alice/payload:v1"
        check "compose config: docker push alice/payload:v1" dk push "$T/alice/payload:v1"
        check "compose config: docker tag library/payload:v1" dk tag "$A/test/payload:v1" "$T/library/payload:v1"
        if dk push "$T/library/payload:v1" >"$WORK/neg.out" 2>&1; then
            fail "compose config: alice may not push library/* (rules), but did"
        else
            pass "compose config: alice's push to library/ is refused (the config's rules)"
        fi
        check "compose config: docker rmi" dk rmi "$T/alice/payload:v1"
        check "compose config: docker pull alice/payload:v1" dk pull -q "$T/alice/payload:v1"
        dk logout "$T" >/dev/null 2>&1
    else
        dk logs regcompose 2>&1 | tail -n 5 | sed 's/^/      | /'
    fi
    rm_container regcompose
    dk volume rm regcompose-data >/dev/null 2>&1
else
    skip "docker-compose not installed: docker/compose.yaml not checked"
fi

note "container.sh: $((SECONDS - SECS)) s after dockerd started"
dk rmi -f "$IMG" debian:bookworm-slim >/dev/null 2>&1
dockerd_stop
finish
