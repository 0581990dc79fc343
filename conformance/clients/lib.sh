# shellcheck shell=bash
# Shared helpers for the real-client interop scripts (skopeo.sh, ...).
# Source it from bash:  . "$(dirname "$0")/lib.sh"
#
# Needs: bash, coreutils, tar, gzip, jq. Nothing here touches the network
# beyond 127.0.0.1.
#
# Environment:
#   REGISTRY_BIN      server binary (default build/registry, relative to the repo)
#   CLIENT_TIMEOUT    seconds any one client command may take (default 60)
#   CLIENT_RESULTS    if set, finish() appends "name passed failed skipped" to it
#   CLIENTS_REQUIRE   space-separated tools that must be present: a missing one
#                     fails instead of being skipped
#   CLIENT_LOG_DIR    if set, each server's log is copied there when it stops
#   CLIENT_STORAGE    s3: every server keeps its blobs on the RADOS Gateway of
#                     REGISTRY_S3_ENV (scripts/with-ceph.sh), each under its own prefix

set -u

CLIENTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$CLIENTS_DIR/../.." && pwd)
REGISTRY_BIN=${REGISTRY_BIN:-build/registry}
case $REGISTRY_BIN in /*) ;; *) REGISTRY_BIN=$REPO_ROOT/$REGISTRY_BIN ;; esac
CLIENT_TIMEOUT=${CLIENT_TIMEOUT:-60}
CLIENT_NAME=${CLIENT_NAME:-$(basename "$0" .sh)}

PASS_COUNT=0
FAIL_COUNT=0
SKIP_COUNT=0

# --- reporting -----------------------------------------------------------------
pass() { PASS_COUNT=$((PASS_COUNT + 1)); printf 'PASS  %s: %s\n' "$CLIENT_NAME" "$*"; }
fail() { FAIL_COUNT=$((FAIL_COUNT + 1)); printf 'FAIL  %s: %s\n' "$CLIENT_NAME" "$*"; }
skip() { SKIP_COUNT=$((SKIP_COUNT + 1)); printf 'SKIP  %s: %s\n' "$CLIENT_NAME" "$*"; }
note() { printf '      %s\n' "$*"; }

# expect_eq DESCRIPTION GOT WANT: pass if GOT = WANT, else fail showing both.
expect_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: got '$2', want '$3'"; fi
}

# check DESCRIPTION COMMAND...: run COMMAND, pass or fail on its status.
# Its output goes to $WORK/last.out and is shown (tail) on failure.
check() {
    local desc=$1; shift
    if "$@" >"$WORK/last.out" 2>&1; then
        pass "$desc"
    else
        fail "$desc (status $?)"
        show_tail "$WORK/last.out"
        return 1
    fi
}

show_tail() { [ -s "$1" ] && tail -n "${2:-15}" "$1" | sed 's/^/      | /'; return 0; }

# run COMMAND...: the command under the per-command timeout.
run() { timeout --kill-after=5 "$CLIENT_TIMEOUT" "$@"; }

# finish: print this client's totals, record them, exit (non-zero on failure).
finish() {
    printf '%s: %d passed, %d failed, %d skipped\n' \
        "$CLIENT_NAME" "$PASS_COUNT" "$FAIL_COUNT" "$SKIP_COUNT"
    if [ -n "${CLIENT_RESULTS:-}" ]; then
        printf '%s %d %d %d\n' "$CLIENT_NAME" "$PASS_COUNT" "$FAIL_COUNT" "$SKIP_COUNT" \
            >>"$CLIENT_RESULTS"
    fi
    [ "$FAIL_COUNT" -eq 0 ] && exit 0
    exit 1
}

# require_tool TOOL: skip the whole client (and exit) when TOOL is missing,
# unless it is listed in CLIENTS_REQUIRE, then it is a failure.
require_tool() {
    command -v "$1" >/dev/null 2>&1 && return 0
    case " ${CLIENTS_REQUIRE:-} " in
        *" $1 "*) fail "$1 is not installed (required by CLIENTS_REQUIRE)" ;;
        *) skip "$1 is not installed; $CLIENT_NAME interop not run" ;;
    esac
    finish
}

# --- temp space and cleanup ------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/regclients.XXXXXX") || exit 1
SERVER_PIDS=()
CLEANUP_HOOKS=()

# on_cleanup COMMAND...: run COMMAND (a simple command, words split on spaces)
# at exit, before the servers are stopped and WORK is removed. Hooks run in
# reverse order of registration; their output is discarded.
on_cleanup() { CLEANUP_HOOKS+=("$*"); }

# unmount_under DIR: lazily unmount anything still mounted below DIR (deepest
# first), so that removing DIR never reaches into a mounted filesystem.
unmount_under() {
    local m
    [ -r /proc/self/mountinfo ] || return 0
    awk -v d="$1/" 'index($5 "/", d) == 1 { print $5 }' /proc/self/mountinfo |
        sort -r | while read -r m; do umount -l "$m" 2>/dev/null; done
    return 0
}

cleanup() {
    local pid i
    for ((i = ${#CLEANUP_HOOKS[@]} - 1; i >= 0; i--)); do
        # shellcheck disable=SC2086 # hooks are simple commands, split on purpose
        ${CLEANUP_HOOKS[$i]} >/dev/null 2>&1
    done
    CLEANUP_HOOKS=()
    for pid in "${SERVER_PIDS[@]}"; do
        [ -n "$pid" ] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null
            wait "$pid" 2>/dev/null
        fi
    done
    SERVER_PIDS=()
    if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
        unmount_under "$WORK"
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM HUP

# --- the registry under test -----------------------------------------------------
# registry_start [CONFIG_TEXT]: start a server on a free 127.0.0.1 port with a fresh
# root. Sets REG_PID, REG_ADDR (host:port), REG_ROOT, REG_LOG, REG_DIR, and
# REG_S3_PREFIX (its key prefix in the bucket with CLIENT_STORAGE=s3, else empty).
# REG_LISTEN, if set, replaces 127.0.0.1:0 (e.g. [::1]:0).
# Returns non-zero (after reporting a failure) if it does not become ready.
REG_N=0
registry_start() {
    local config_text=${1:-} args ready
    REG_N=$((REG_N + 1))
    REG_DIR=$WORK/registry$REG_N
    REG_ROOT=$REG_DIR/root
    REG_LOG=$REG_DIR/server.log
    ready=$REG_DIR/ready
    mkdir -p "$REG_ROOT"
    args=(serve --listen "${REG_LISTEN:-127.0.0.1:0}" --root "$REG_ROOT" --ready-file "$ready")
    if [ -n "$config_text" ]; then
        printf '%b\n' "$config_text" >"$REG_DIR/registry.conf"
        args+=(--config "$REG_DIR/registry.conf")
    fi
    REG_S3_PREFIX=
    if [ "${CLIENT_STORAGE:-fs}" = s3 ]; then
        # Blobs on the RADOS Gateway, each server under its own key prefix.
        REG_S3_PREFIX=clients-$(basename "$WORK")-$REG_N/
        if ! "$REPO_ROOT/scripts/s3-conf.sh" "$REG_S3_PREFIX" >>"$REG_DIR/registry.conf"; then
            fail "no RADOS Gateway for CLIENT_STORAGE=s3 (REGISTRY_S3_ENV)"
            return 1
        fi
        [ -n "$config_text" ] || args+=(--config "$REG_DIR/registry.conf")
    fi
    if [ ! -x "$REGISTRY_BIN" ]; then
        fail "registry binary $REGISTRY_BIN not found (run make)"
        return 1
    fi
    "$REGISTRY_BIN" "${args[@]}" </dev/null >>"$REG_LOG" 2>&1 &
    REG_PID=$!
    SERVER_PIDS+=("$REG_PID")
    REG_ADDR=
    for _ in $(seq 200); do
        if [ -s "$ready" ]; then
            REG_ADDR=$(head -n1 "$ready")
            case $REG_ADDR in 127.0.0.1:[0-9]* | "[::1]:"[0-9]*) break ;; *) REG_ADDR= ;; esac
        fi
        kill -0 "$REG_PID" 2>/dev/null || break
        sleep 0.05
    done
    if [ -z "$REG_ADDR" ]; then
        fail "registry did not become ready ($REGISTRY_BIN)"
        show_tail "$REG_LOG" 30
        return 1
    fi
    note "registry $REG_ADDR (pid $REG_PID, root $REG_ROOT)"
}

# registry_blobs_stored DESC DIGEST...: pass when every DIGEST is a blob in the
# running server's store, where CLIENT_STORAGE says it is: a file under
# REG_ROOT/blobs/ on the file backend; on S3 an object under REG_S3_PREFIX in
# the bucket (a signed HEAD with the gateway's keys) and no file under
# REG_ROOT/blobs/, so a server that quietly kept its blobs on local disk fails.
registry_blobs_stored() {
    local desc=$1 d hex code bad=0 n=0 where="files under the root"
    shift
    [ -z "$REG_S3_PREFIX" ] || where="objects in the S3 bucket under $REG_S3_PREFIX"
    for d in "$@"; do
        n=$((n + 1))
        hex=${d#sha256:}
        if [ -n "$REG_S3_PREFIX" ]; then
            # shellcheck disable=SC1090
            code=$(. "$REGISTRY_S3_ENV" && run curl -sS -o /dev/null -w '%{http_code}' -I --noproxy '*' \
                -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --aws-sigv4 "aws:amz:$S3_REGION:s3" \
                --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
                "$S3_ENDPOINT/registry-tests/${REG_S3_PREFIX}blobs/sha256/$hex" 2>&1)
            [ "$code" = 200 ] || { note "no object ${REG_S3_PREFIX}blobs/sha256/$hex (HEAD: $code)"; bad=1; }
            [ ! -e "$REG_ROOT/blobs/sha256/${hex:0:2}/$hex" ] ||
                { note "$d is a local file under $REG_ROOT/blobs"; bad=1; }
        elif [ ! -f "$REG_ROOT/blobs/sha256/${hex:0:2}/$hex" ]; then
            note "no file $REG_ROOT/blobs/sha256/${hex:0:2}/$hex"
            bad=1
        fi
    done
    if [ "$bad" -eq 0 ] && [ "$n" -gt 0 ]; then
        pass "$desc ($n blobs, $where)"
    else
        fail "$desc"
    fi
}

# registry_stop [PID]: SIGTERM the server and require exit status 0 (under
# AddressSanitizer a leak or sanitizer error makes it non-zero).
registry_stop() {
    local pid=${1:-$REG_PID} rc watchdog i
    kill -TERM "$pid" 2>/dev/null
    # Watchdog: SIGKILL the server if it has not stopped in 40 s. Its sleep is
    # killed with it and it holds no stdout, so nothing outlives this function.
    (
        exec >/dev/null 2>&1
        sleep 40 &
        s=$!
        trap 'kill "$s"; exit 0' TERM
        wait "$s" && kill -KILL "$pid"
    ) &
    watchdog=$!
    wait "$pid"
    rc=$?
    kill "$watchdog" 2>/dev/null
    wait "$watchdog" 2>/dev/null
    for i in "${!SERVER_PIDS[@]}"; do
        [ "${SERVER_PIDS[$i]}" = "$pid" ] && unset 'SERVER_PIDS[i]'
    done
    if [ -n "${CLIENT_LOG_DIR:-}" ]; then
        mkdir -p "$CLIENT_LOG_DIR" && cp "$REG_LOG" "$CLIENT_LOG_DIR/$CLIENT_NAME-$(basename "$REG_DIR").log"
    fi
    if [ "$rc" -eq 0 ]; then
        pass "server stopped cleanly (exit 0)"
    else
        fail "server exit status $rc at stop (crash, leak or sanitizer error)"
        show_tail "$REG_LOG" 40
    fi
}

# registry_log_check: fail if the server log shows a sanitizer report.
registry_log_check() {
    if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$REG_LOG" 2>/dev/null; then
        fail "sanitizer report in server log"
        grep -E -A20 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$REG_LOG" |
            head -40 | sed 's/^/      | /'
    fi
}

# --- OCI image builders (no network) ---------------------------------------------
# All JSON goes through jq. Blobs are content-addressed under DIR/blobs/sha256/.

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# oci_layout_init DIR: an empty OCI image layout.
oci_layout_init() {
    mkdir -p "$1/blobs/sha256"
    jq -n '{imageLayoutVersion: "1.0.0"}' >"$1/oci-layout"
    jq -n '{schemaVersion: 2, manifests: []}' >"$1/index.json"
}

# oci_put_blob DIR FILE: move FILE into the layout, print its descriptor
# fields "sha256:HEX SIZE".
oci_put_blob() {
    local hex size
    hex=$(sha256_of "$2")
    size=$(size_of "$2")
    mv -f "$2" "$1/blobs/sha256/$hex"
    echo "sha256:$hex $size"
}

# oci_blob_path DIR DIGEST
oci_blob_path() { echo "$1/blobs/sha256/${2#sha256:}"; }

# make_layer DIR: a gzip'd tar holding one random file; print
# "DIGEST SIZE DIFFID" (DIFFID = sha256 of the uncompressed tar).
make_layer() {
    local dir=$1 tmp name diffid
    tmp=$(mktemp -d "$WORK/layer.XXXXXX")
    name=file-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
    mkdir -p "$tmp/content"
    head -c $((1024 + RANDOM % 4096)) /dev/urandom >"$tmp/content/$name"
    tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -C "$tmp/content" -cf "$tmp/layer.tar" "$name"
    diffid=sha256:$(sha256_of "$tmp/layer.tar")
    gzip -n -c "$tmp/layer.tar" >"$tmp/layer.tar.gz"
    echo "$(oci_put_blob "$dir" "$tmp/layer.tar.gz") $diffid"
    rm -rf "$tmp"
}

# make_image DIR ARCH NLAYERS: layers, config and OCI image manifest in DIR
# (index.json untouched); print the manifest descriptor as compact JSON.
make_image() {
    local dir=$1 arch=$2 n=$3 i d s diff layers='[]' diffs='[]' cfg man
    for ((i = 0; i < n; i++)); do
        read -r d s diff < <(make_layer "$dir")
        layers=$(jq -c --arg d "$d" --argjson s "$s" \
            '. + [{mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: $d, size: $s}]' \
            <<<"$layers")
        diffs=$(jq -c --arg d "$diff" '. + [$d]' <<<"$diffs")
    done
    cfg=$(mktemp "$WORK/config.XXXXXX")
    jq -n --arg arch "$arch" --argjson diffs "$diffs" '{
        created: "1970-01-01T00:00:00Z",
        architecture: $arch,
        os: "linux",
        config: {Env: ["PATH=/usr/bin:/bin"], Cmd: ["/bin/sh"]},
        rootfs: {type: "layers", diff_ids: $diffs},
        history: [$diffs[] | {created: "1970-01-01T00:00:00Z", created_by: "lib.sh make_layer"}]
    }' >"$cfg"
    read -r d s < <(oci_put_blob "$dir" "$cfg")
    man=$(mktemp "$WORK/manifest.XXXXXX")
    # Pretty-printed on purpose: byte-identity checks then also cover whitespace.
    jq -n --arg cd "$d" --argjson cs "$s" --argjson layers "$layers" '{
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
        layers: $layers
    }' >"$man"
    read -r d s < <(oci_put_blob "$dir" "$man")
    jq -nc --arg d "$d" --argjson s "$s" \
        '{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s}'
}

# oci_add_ref DIR DESCRIPTOR_JSON TAG: list DESCRIPTOR in DIR/index.json under TAG.
oci_add_ref() {
    local tmp
    tmp=$(mktemp "$WORK/index.XXXXXX")
    jq --argjson desc "$2" --arg tag "$3" \
        '.manifests += [$desc + {annotations: {"org.opencontainers.image.ref.name": $tag}}]' \
        "$1/index.json" >"$tmp" && mv -f "$tmp" "$1/index.json"
}

# build_oci_image DIR TAG NLAYERS [ARCH]: a layout (created if needed) holding one
# image under TAG. Prints the manifest digest.
build_oci_image() {
    local dir=$1 tag=$2 n=$3 arch=${4:-amd64} desc
    [ -f "$dir/oci-layout" ] || oci_layout_init "$dir"
    desc=$(make_image "$dir" "$arch" "$n")
    oci_add_ref "$dir" "$desc" "$tag"
    jq -r .digest <<<"$desc"
}

# build_oci_index DIR TAG [NLAYERS]: a layout (created if needed) holding a
# multi-arch OCI image index (linux/amd64 + linux/arm64) under TAG. Prints the
# index digest.
build_oci_index() {
    local dir=$1 tag=$2 n=${3:-2} amd arm idx d s
    [ -f "$dir/oci-layout" ] || oci_layout_init "$dir"
    amd=$(make_image "$dir" amd64 "$n")
    arm=$(make_image "$dir" arm64 "$n")
    idx=$(mktemp "$WORK/imageindex.XXXXXX")
    jq -n --argjson amd "$amd" --argjson arm "$arm" '{
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.index.v1+json",
        manifests: [
            $amd + {platform: {architecture: "amd64", os: "linux"}},
            $arm + {platform: {architecture: "arm64", os: "linux", variant: "v8"}}
        ]
    }' >"$idx"
    read -r d s < <(oci_put_blob "$dir" "$idx")
    oci_add_ref "$dir" "$(jq -nc --arg d "$d" --argjson s "$s" \
        '{mediaType: "application/vnd.oci.image.index.v1+json", digest: $d, size: $s}')" "$tag"
    echo "$d"
}

# oci_ref_digest DIR TAG: the digest TAG names in DIR/index.json.
oci_ref_digest() {
    jq -r --arg t "$2" \
        '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' \
        "$1/index.json" | head -n1
}

# oci_layout_verify DIR: every blob under DIR/blobs/sha256 hashes to its name.
oci_layout_verify() {
    local f bad=0
    for f in "$1"/blobs/sha256/*; do
        [ -f "$f" ] || continue
        [ "$(sha256_of "$f")" = "$(basename "$f")" ] || { echo "bad blob $f"; bad=1; }
    done
    return $bad
}

# --- plain HTTP checks with curl ---------------------------------------------------
MANIFEST_ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'

# reg_manifest REPO REFERENCE OUT: GET the manifest from the running registry
# (REG_ADDR) into OUT, the response headers into OUT.headers. Prints the
# Docker-Content-Digest header; fails unless the status is 200 and that header
# is the sha256 of the body.
reg_manifest() {
    local out=$3 code dcd
    code=$(run curl -sS -o "$out" -D "$out.headers" -w '%{http_code}' \
        -H "Accept: $MANIFEST_ACCEPT" "http://$REG_ADDR/v2/$1/manifests/$2") || return 1
    [ "$code" = 200 ] || { echo "GET /v2/$1/manifests/$2: HTTP $code" >&2; return 1; }
    dcd=$(reg_header "$out.headers" Docker-Content-Digest)
    [ "$dcd" = "sha256:$(sha256_of "$out")" ] ||
        { echo "Docker-Content-Digest '$dcd' is not the sha256 of the body" >&2; return 1; }
    echo "$dcd"
}

# reg_header FILE.headers NAME: a header's value from a curl -D dump.
reg_header() {
    awk -v n="$2" 'BEGIN { n = tolower(n) }
        { h = $0; sub(/:.*/, "", h) }
        tolower(h) == n { sub(/^[^:]*: */, ""); gsub(/\r/, ""); print; exit }' "$1"
}

# --- background daemons started by a client script --------------------------------
# stop_pid PID [SECONDS]: SIGTERM a child process, SIGKILL it after SECONDS
# (default 10); returns its exit status (143 = died of SIGTERM).
stop_pid() {
    local pid=$1 secs=${2:-10} rc i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return $?; }
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < secs * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    rc=$?
    return $rc
}

# --- containers/image + containers/storage tools (podman, buildah) -----------------
# containers_env: isolate podman/buildah from system and user configuration.
# Everything lives under $WORK/containers: HOME and the XDG dirs (so the
# per-user registries.conf and policy.json below are the ones read, and the
# system registries.conf.d drop-ins are not), storage.conf (vfs, graphroot and
# runroot in the temp dir), containers.conf (cgroupfs, file events, CNI network
# backend so nothing is created under /run/containers), auth.json, TMPDIR.
# Sets CT_DIR, CT_ROOT, CT_RUNROOT, CT_POLICY, CT_STORAGE_OPTS (the global
# --root/--runroot/--storage-driver flags).
containers_env() {
    CT_DIR=$WORK/containers
    CT_ROOT=$CT_DIR/root
    CT_RUNROOT=$CT_DIR/run
    CT_POLICY=$CT_DIR/home/.config/containers/policy.json
    mkdir -p "$CT_DIR/home/.config/containers" "$CT_DIR/home/.local/share" \
        "$CT_DIR/home/.cache" "$CT_DIR/xdg-runtime" "$CT_DIR/tmp" "$CT_ROOT" "$CT_RUNROOT"
    chmod 700 "$CT_DIR/xdg-runtime"
    cat >"$CT_DIR/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$CT_ROOT"
runroot = "$CT_RUNROOT"
CONF
    cat >"$CT_DIR/containers.conf" <<CONF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$CT_DIR/tmp"
static_dir = "$CT_ROOT/libpod"
volume_path = "$CT_ROOT/volumes"

[network]
network_backend = "cni"
network_config_dir = "$CT_DIR/networks"
CONF
    jq -n '{default: [{type: "insecureAcceptAnything"}]}' >"$CT_POLICY"
    printf 'unqualified-search-registries = []\n' >"$CT_DIR/home/.config/containers/registries.conf"
    jq -n '{auths: {}}' >"$CT_DIR/auth.json"
    export HOME=$CT_DIR/home
    export XDG_CONFIG_HOME=$HOME/.config XDG_DATA_HOME=$HOME/.local/share XDG_CACHE_HOME=$HOME/.cache
    export XDG_RUNTIME_DIR=$CT_DIR/xdg-runtime
    export CONTAINERS_STORAGE_CONF=$CT_DIR/storage.conf
    export CONTAINERS_CONF=$CT_DIR/containers.conf
    export REGISTRY_AUTH_FILE=$CT_DIR/auth.json
    export TMPDIR=$CT_DIR/tmp
    unset CONTAINERS_REGISTRIES_CONF REGISTRIES_CONFIG_PATH CONTAINER_HOST CONTAINER_CONNECTION
    # shellcheck disable=SC2034 # used by the scripts that source this file
    CT_STORAGE_OPTS=(--root "$CT_ROOT" --runroot "$CT_RUNROOT" --storage-driver vfs)
}

# containers_insecure HOST:PORT...: list each address in the per-user
# registries.conf as a plain-HTTP registry (for commands without --tls-verify).
containers_insecure() {
    local f=$HOME/.config/containers/registries.conf a
    printf 'unqualified-search-registries = []\n' >"$f"
    for a in "$@"; do
        printf '\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$a" >>"$f"
    done
}

# oci_archive DIR FILE: pack the layout DIR as an oci-archive tarball FILE.
oci_archive() {
    tar --sort=name --owner=0 --group=0 --numeric-owner -C "$1" -cf "$2" oci-layout index.json blobs
}

# --- a private Docker daemon (docker.sh, container.sh) ------------------------------
# The docker.io package's own binaries, by path: another `docker` earlier in PATH
# (a newer client, say) is not what the package installs.
DOCKER_CLI=/usr/bin/docker
DOCKERD=/usr/sbin/dockerd
# The name the private daemon resolves to ::1 (dockerd_start): Docker treats
# every 127.0.0.0/8 registry as insecure (HTTPS without verification, then plain
# HTTP), so a registry whose certificate must be verified has to be reached
# under a name that does not resolve into 127.0.0.0/8.
DOCKER_TLS_NAME=docker-tls.test

# dockerd_start: start dockerd in its own mount namespace with its data root,
# exec root, socket and pid file under $WORK/dk (short: unix socket paths are
# limited to 108 bytes), the storage driver DK_STORAGE_DRIVER (default vfs), no bridge, no iptables,
# 127.0.0.0/8 as insecure registries. In that namespace /etc/hosts (the host's,
# plus "::1 $DOCKER_TLS_NAME"), /etc/docker (certs.d, key.json), /run/docker and
# /run/containerd (shim sockets) are private directories: nothing the daemon writes there reaches the host,
# and its mounts vanish with it. Sets DK_DIR, DK_PID, DK_CERTS (the daemon's
# /etc/docker/certs.d), DOCKER_CONFIG (a private client config, for login);
# dk runs the client against it. DK_DAEMON_JSON, if set, is the daemon's
# /etc/docker/daemon.json (it may not repeat a setting given as a flag above:
# dockerd refuses to start). Returns non-zero after reporting a failure.
dockerd_start() {
    DK_DIR=$WORK/dk
    DK_CERTS=$DK_DIR/etc/certs.d
    mkdir -p "$DK_DIR/data" "$DK_DIR/x" "$DK_CERTS" "$DK_DIR/run" "$DK_DIR/rc" "$DK_DIR/cfg"
    if [ -n "${DK_DAEMON_JSON:-}" ]; then
        printf '%s\n' "$DK_DAEMON_JSON" >"$DK_DIR/etc/daemon.json"
    fi
    chmod 700 "$DK_DIR/cfg"
    export DOCKER_CONFIG=$DK_DIR/cfg
    { cat /etc/hosts; printf '::1 %s\n' "$DOCKER_TLS_NAME"; } >"$DK_DIR/hosts"
    # Executed by unshare's shell inside the new namespace, then replaced by dockerd.
    cat >"$DK_DIR/start.sh" <<SH
set -e
mount --bind "$DK_DIR/hosts" /etc/hosts
mkdir -p /etc/docker /run/docker /run/containerd
mount --bind "$DK_DIR/etc" /etc/docker
mount --bind "$DK_DIR/run" /run/docker
mount --bind "$DK_DIR/rc" /run/containerd
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
exec "$DOCKERD" --data-root "$DK_DIR/data" --exec-root "$DK_DIR/x" \\
    --host "unix://$DK_DIR/s" --pidfile "$DK_DIR/pid" --storage-driver "${DK_STORAGE_DRIVER:-vfs}" \\
    --iptables=false --ip6tables=false --bridge=none --insecure-registry 127.0.0.0/8
SH
    unshare --mount --propagation private sh "$DK_DIR/start.sh" </dev/null >"$DK_DIR/dockerd.log" 2>&1 &
    DK_PID=$!
    for _ in $(seq 120); do
        dk version >/dev/null 2>&1 && break
        kill -0 "$DK_PID" 2>/dev/null || break
        sleep 0.25
    done
    if ! dk version >"$WORK/dk-version.out" 2>&1; then
        fail "private dockerd did not start"
        show_tail "$DK_DIR/dockerd.log" 20
        dockerd_stop
        return 1
    fi
    on_cleanup dockerd_stop
    note "dockerd $(dk version --format '{{.Server.Version}}' 2>/dev/null) (pid $DK_PID, socket $DK_DIR/s)"
}

# dk ARGS...: the package's docker client against the private daemon, under the
# per-command timeout.
dk() { run "$DOCKER_CLI" -H "unix://$DK_DIR/s" "$@"; }

# dockerd_stop: stop the private dockerd (it stops its containerd) once.
dockerd_stop() {
    [ -n "${DK_PID:-}" ] || return 0
    stop_pid "$DK_PID" 30
    DK_PID=
}
# --- a private containerd (ctr.sh, mirror.sh) ---------------------------------------
# containerd_start: containerd on a private socket with its root, state and temp
# dir under $WORK/containerd. Only what pulling and pushing need: no CRI, no
# snapshotters that need btrfs, zfs, devmapper or aufs; content is not shared
# between namespaces, so a pull in a new namespace downloads every blob again.
# The snapshotter is overlayfs if this kernel and filesystem allow it (the plugin
# test-mounts at start), else native (plain copies); CTR_SNAPSHOTTER forces one.
# Sets CD, SOCK, CTRD_PID, SNAP and exports CONTAINERD_SNAPSHOTTER; ct runs ctr
# against it, ctrd_stop stops it. Returns non-zero after reporting a failure.
containerd_start() {
    local ready=
    CD=$WORK/containerd
    SOCK=$CD/containerd.sock
    mkdir -p "$CD/root" "$CD/state" "$CD/tmp" "$CD/opt"
    cat >"$CD/config.toml" <<CONF
version = 2
root = "$CD/root"
state = "$CD/state"
temp = "$CD/tmp"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.metadata.v1.bolt"]
    content_sharing_policy = "isolated"
  [plugins."io.containerd.internal.v1.opt"]
    path = "$CD/opt"
CONF
    containerd --config "$CD/config.toml" </dev/null >"$CD/containerd.log" 2>&1 &
    CTRD_PID=$!
    on_cleanup ctrd_stop
    for _ in $(seq 100); do
        kill -0 "$CTRD_PID" 2>/dev/null || break
        if [ -S "$SOCK" ] && timeout 5 ctr --address "$SOCK" version >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.1
    done
    if [ -z "$ready" ]; then
        fail "containerd did not start"
        show_tail "$CD/containerd.log" 30
        return 1
    fi
    pass "containerd $(containerd --version | awk '{print $3}') started on a private socket (pid $CTRD_PID)"
    SNAP=${CTR_SNAPSHOTTER:-native}
    if [ -z "${CTR_SNAPSHOTTER:-}" ] && ct plugins ls 2>/dev/null |
        awk '$1 == "io.containerd.snapshotter.v1" && $2 == "overlayfs" { print $NF }' | grep -qx ok; then
        SNAP=overlayfs
    fi
    note "snapshotter: $SNAP"
    export CONTAINERD_SNAPSHOTTER=$SNAP
}

# ct ARGS...: ctr against the private containerd, under the per-command timeout.
ct() { run ctr --address "$SOCK" "$@"; }

# ctrd_stop: stop the private containerd once (the PID is forgotten after the
# wait); returns its exit status.
ctrd_stop() {
    [ -n "${CTRD_PID:-}" ] || return 0
    stop_pid "$CTRD_PID" 20
    local rc=$?
    CTRD_PID=
    return $rc
}

# --- Distribution as an upstream (proxy.sh, mirror.sh) -----------------------------
DIST_BIN=/usr/bin/docker-registry
DIST_PID=

# require_dist: like require_tool, for Debian's docker-registry (Distribution 2.8).
require_dist() {
    [ -x "$DIST_BIN" ] && return 0
    case " ${CLIENTS_REQUIRE:-} " in
        *" docker-registry "*) fail "$DIST_BIN is not installed (required by CLIENTS_REQUIRE)" ;;
        *) skip "$DIST_BIN is not installed (Debian package docker-registry); $CLIENT_NAME interop not run" ;;
    esac
    finish
}

# dist_start: Distribution on a free loopback port, its storage, config and log
# (the access log: one line per request) under $WORK/dist. Sets DIST_DIR,
# DIST_ADDR, DIST_PID. A port that turns out to be taken is tried again.
dist_start() {
    local port
    DIST_DIR=$WORK/dist
    mkdir -p "$DIST_DIR"
    on_cleanup dist_stop
    for _ in 1 2 3 4 5; do
        port=$((20000 + RANDOM % 30000))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
        cat >"$DIST_DIR/config.yml" <<CONF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $DIST_DIR/data
http:
  addr: 127.0.0.1:$port
CONF
        # A clean environment: Distribution reads REGISTRY_* (REGISTRY_AUTH_FILE...)
        # as configuration.
        env -i PATH="$PATH" HOME="$HOME" TMPDIR="$TMPDIR" \
            "$DIST_BIN" serve "$DIST_DIR/config.yml" </dev/null >>"$DIST_DIR/log" 2>&1 &
        DIST_PID=$!
        for _ in $(seq 100); do
            kill -0 "$DIST_PID" 2>/dev/null || break
            if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
                DIST_ADDR=127.0.0.1:$port
                note "docker-registry $DIST_ADDR (pid $DIST_PID)"
                return 0
            fi
            sleep 0.05
        done
        stop_pid "$DIST_PID" >/dev/null
        DIST_PID=
    done
    fail "docker-registry did not start"
    show_tail "$DIST_DIR/log" 20
    return 1
}

# dist_stop: stop the Distribution upstream once.
dist_stop() { [ -n "$DIST_PID" ] && stop_pid "$DIST_PID" >/dev/null; DIST_PID=; }
