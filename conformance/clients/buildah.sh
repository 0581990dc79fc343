#!/usr/bin/env bash
# buildah interop (vfs storage, everything in a temp dir): build images from
# scratch with random files, commit them as OCI and as Docker schema2, push both,
# remove everything locally, pull them back (buildah pull, buildah from) and
# compare the files through `buildah mount`, the config through `buildah inspect`.
# Usage: REGISTRY_BIN=build/registry conformance/clients/buildah.sh
. "$(dirname "$0")/lib.sh"

require_tool buildah
require_tool jq
require_tool curl

containers_env
bd() { run buildah "${CT_STORAGE_OPTS[@]}" "$@"; }
NOTLS=(--tls-verify=false)
SIGPOL=(--signature-policy "$CT_POLICY")
IMG=localhost/buildah-src
DIGEST_oci='' DIGEST_docker='' CONFIG_oci='' CONFIG_docker=''

# --- build (no network) --------------------------------------------------------------
FILES=$WORK/files
mkdir -p "$FILES"
head -c $((65536 + RANDOM)) /dev/urandom >"$FILES/one.bin"
head -c $((4096 + RANDOM)) /dev/urandom >"$FILES/two.bin"

if C1=$(bd from --pull=never scratch 2>"$WORK/from.err") && [ -n "$C1" ]; then
    pass "buildah from scratch"
else
    fail "buildah from scratch"
    show_tail "$WORK/from.err"
    finish
fi
check "buildah copy one.bin into /data" bd copy "$C1" "$FILES/one.bin" /data/one.bin
check "buildah config (entrypoint, env, label, workingdir)" \
    bd config --entrypoint '["/data/one.bin"]' --env FOO=bar --label org.example.test=buildah \
    --workingdir /data "$C1"
check "buildah commit --format oci (1 layer)" bd commit -q --format oci "$C1" "$IMG:base"
if C2=$(bd from --pull=never "$IMG:base" 2>"$WORK/from.err") && [ -n "$C2" ]; then
    pass "buildah from the committed image"
else
    fail "buildah from $IMG:base"
    show_tail "$WORK/from.err"
fi
check "buildah copy two.bin into /data" bd copy "$C2" "$FILES/two.bin" /data/two.bin
check "buildah commit --format oci (2 layers)" bd commit -q --format oci "$C2" "$IMG:oci"
check "buildah commit --format docker (2 layers)" bd commit -q --format docker "$C2" "$IMG:docker"

registry_start "" || finish
R=$REG_ADDR

# push_checked FORMAT MEDIATYPE: push $IMG:FORMAT to test/buildah:FORMAT and check
# the manifest the registry serves. Sets DIGEST_<FORMAT>, CONFIG_<FORMAT>.
push_checked() {
    local fmt=$1 mt=$2 got ct cfg
    if ! check "buildah push --tls-verify=false test/buildah:$fmt" \
        bd push -q "${NOTLS[@]}" "${SIGPOL[@]}" --digestfile "$WORK/$fmt.digest" \
        "$IMG:$fmt" "docker://$R/test/buildah:$fmt"; then
        return
    fi
    printf -v "DIGEST_$fmt" '%s' "$(cat "$WORK/$fmt.digest")"
    if got=$(reg_manifest test/buildah "$fmt" "$WORK/$fmt.json" 2>"$WORK/curl.err") &&
        [ "$got" = "$(cat "$WORK/$fmt.digest")" ]; then
        pass "registry serves test/buildah:$fmt with the digest buildah reported"
    else
        fail "GET test/buildah:$fmt: digest '$got', buildah pushed '$(cat "$WORK/$fmt.digest")'"
        show_tail "$WORK/curl.err"
    fi
    ct=$(reg_header "$WORK/$fmt.json.headers" Content-Type)
    if [ "$ct" = "$mt" ] && [ "$(jq -r .mediaType "$WORK/$fmt.json")" = "$mt" ] &&
        [ "$(jq '.layers | length' "$WORK/$fmt.json")" = 2 ]; then
        pass "test/buildah:$fmt is $mt with 2 layers"
    else
        fail "test/buildah:$fmt: Content-Type '$ct', mediaType '$(jq -r .mediaType "$WORK/$fmt.json")', $(jq '.layers | length' "$WORK/$fmt.json") layers"
    fi
    cfg=$(jq -r .config.digest "$WORK/$fmt.json")
    printf -v "CONFIG_$fmt" '%s' "$cfg"
    if [ "sha256:$(bd inspect --type image --format '{{.FromImageID}}' "$IMG:$fmt" 2>/dev/null)" = "$cfg" ]; then
        pass "test/buildah:$fmt config digest is the local image ID"
    else
        fail "test/buildah:$fmt config $cfg is not the local image ID"
    fi
    # The config blob, fetched by plain GET, carries what buildah config set.
    if run curl -sSf -o "$WORK/$fmt.config" "http://$R/v2/test/buildah/blobs/$cfg" &&
        [ "sha256:$(sha256_of "$WORK/$fmt.config")" = "$cfg" ] &&
        jq -e '.config.Labels["org.example.test"] == "buildah" and (.config.Env | index("FOO=bar")) != null
            and .config.WorkingDir == "/data"' "$WORK/$fmt.config" >/dev/null; then
        pass "GET blob test/buildah config ($fmt) hashes to its digest and has the label, env, workdir"
    else
        fail "config blob $cfg of test/buildah:$fmt missing, corrupt or without the buildah config"
    fi
}
push_checked oci application/vnd.oci.image.manifest.v1+json
push_checked docker application/vnd.docker.distribution.manifest.v2+json
# shellcheck disable=SC2046 # digests, one per word
registry_blobs_stored "both formats' configs and layers are in the registry's blob store" \
    $(jq -r '.config.digest, .layers[].digest' "$WORK/oci.json" "$WORK/docker.json" 2>/dev/null | sort -u)

# --- remove everything locally ----------------------------------------------------------
check "buildah rm --all" bd rm --all
check "buildah rmi --all" bd rmi --all
n=$(bd images -q 2>/dev/null | wc -l)
expect_eq "local storage is empty (images left)" "$n" 0

# same_files DESC MOUNTPOINT: /data/one.bin and /data/two.bin are the originals.
same_files() {
    if cmp -s "$2/data/one.bin" "$FILES/one.bin" && cmp -s "$2/data/two.bin" "$FILES/two.bin"; then
        pass "$1"
    else
        fail "$1: files differ or missing"
        note "$(find "$2/data" -printf '%p %s\n' 2>&1 | paste -sd' ')"
    fi
}

# --- pull back: buildah pull + mount (OCI) -------------------------------------------
if bd pull -q "${NOTLS[@]}" "${SIGPOL[@]}" "$R/test/buildah:oci" >"$WORK/pull.out" 2>&1; then
    pass "buildah pull --tls-verify=false test/buildah:oci"
    if [ "sha256:$(tail -n1 "$WORK/pull.out")" = "${CONFIG_oci:-}" ]; then
        pass "pulled image ID is the pushed config digest"
    else
        fail "pulled image ID sha256:$(tail -n1 "$WORK/pull.out"), want ${CONFIG_oci:-?}"
    fi
    if [ "$(bd inspect --type image --format '{{.FromImageDigest}}' "$R/test/buildah:oci" 2>/dev/null)" = "${DIGEST_oci:-}" ]; then
        pass "buildah inspect: image digest is the pushed manifest digest"
    else
        fail "buildah inspect: digest $(bd inspect --type image --format '{{.FromImageDigest}}' "$R/test/buildah:oci" 2>/dev/null), want ${DIGEST_oci:-?}"
    fi
    if C3=$(bd from --pull=never "$R/test/buildah:oci" 2>"$WORK/from.err") && [ -n "$C3" ] &&
        M3=$(bd mount "$C3" 2>"$WORK/mount.err") && [ -d "$M3" ]; then
        pass "buildah from + mount the pulled image"
        same_files "files in the pulled OCI image are byte-identical to the originals" "$M3"
        check "buildah umount" bd umount "$C3"
    else
        fail "buildah from/mount of the pulled image"
        show_tail "$WORK/from.err"; show_tail "$WORK/mount.err"
    fi
else
    fail "buildah pull --tls-verify=false test/buildah:oci"
    show_tail "$WORK/pull.out"
fi

# --- pull back: buildah from docker:// (Docker schema2), by digest --------------------
if C4=$(bd from -q "${NOTLS[@]}" "${SIGPOL[@]}" "docker://$R/test/buildah@${DIGEST_docker:-none}" 2>"$WORK/from.err") &&
    [ -n "$C4" ]; then
    pass "buildah from docker://test/buildah@digest (pulls the Docker schema2 image)"
    bd inspect --type container "$C4" >"$WORK/c4.json" 2>/dev/null
    if [ "$(jq -r .FromImageID "$WORK/c4.json")" = "${CONFIG_docker#sha256:}" ] &&
        [ "$(jq -c .Docker.config.Entrypoint "$WORK/c4.json")" = '["/data/one.bin"]' ] &&
        [ "$(jq -r '.Docker.config.Labels["org.example.test"]' "$WORK/c4.json")" = buildah ]; then
        pass "buildah inspect: pulled Docker image has the config digest, entrypoint and label"
    else
        fail "buildah inspect of the Docker image: id $(jq -r .FromImageID "$WORK/c4.json"), entrypoint $(jq -c .Docker.config.Entrypoint "$WORK/c4.json")"
    fi
    if M4=$(bd mount "$C4" 2>"$WORK/mount.err") && [ -d "$M4" ]; then
        same_files "files in the pulled Docker image are byte-identical to the originals" "$M4"
        bd umount "$C4" >/dev/null 2>&1
    else
        fail "buildah mount of the Docker image"
        show_tail "$WORK/mount.err"
    fi
else
    fail "buildah from docker://test/buildah@digest"
    show_tail "$WORK/from.err"
fi

# the two formats are different manifests of the same layers
if [ -n "${DIGEST_oci:-}" ] && [ -n "${DIGEST_docker:-}" ] && [ "$DIGEST_oci" != "$DIGEST_docker" ] &&
    [ "$(jq -c '[.layers[].digest]' "$WORK/oci.json")" = "$(jq -c '[.layers[].digest]' "$WORK/docker.json")" ]; then
    pass "OCI and Docker manifests differ but share the layer blobs"
else
    fail "OCI/Docker manifests: expected different digests and the same layer blobs"
fi

bd rm --all >/dev/null 2>&1
registry_log_check
registry_stop "$REG_PID"
finish
