#!/usr/bin/env bash
# podman interop (no daemon, vfs storage, everything in a temp dir): load images
# built locally as OCI layouts, push them (OCI and Docker schema2), list tags,
# remove them locally, pull them back and check image IDs, digests and layer
# diff_ids; a multi-arch manifest list with `podman manifest create/add/push --all`
# and per-architecture pulls from it.
# Usage: REGISTRY_BIN=build/registry conformance/clients/podman.sh
. "$(dirname "$0")/lib.sh"

require_tool podman
require_tool jq
require_tool curl

containers_env
pm() { run podman "${CT_STORAGE_OPTS[@]}" "$@"; }
NOTLS=(--tls-verify=false)
SIGPOL=(--signature-policy "$CT_POLICY")

# local_id REF: the local image ID of REF (full hex, no sha256: prefix).
local_id() { pm image inspect --format '{{.Id}}' "$1" 2>/dev/null; }

# pull_is DESC WANT_ID PULL_ARGS...: `podman pull -q PULL_ARGS` must succeed and
# print image ID WANT_ID (sha256:HEX, the config digest).
pull_is() {
    local desc=$1 want=$2 got; shift 2
    if pm pull -q "$@" >"$WORK/pull.out" 2>&1; then
        got=sha256:$(tail -n1 "$WORK/pull.out")
        if [ "$got" = "$want" ]; then
            pass "$desc: image ID is the config digest"
        else
            fail "$desc: image ID $got, want $want"
        fi
    else
        fail "$desc"
        show_tail "$WORK/pull.out"
        return 1
    fi
}

# tags_are DESC REPO TAG...: `podman search --list-tags` of REPO is exactly TAG...
tags_are() {
    local desc=$1 repo=$2 want got; shift 2
    want=$(printf '%s\n' "$@" | sort | paste -sd' ')
    if got=$(pm search --list-tags --limit 100 --format json "${NOTLS[@]}" "$REG_ADDR/$repo" \
        2>"$WORK/tags.err" | jq -r '.[0].Tags[]' | sort | paste -sd' ') && [ "$got" = "$want" ]; then
        pass "$desc"
    else
        fail "$desc: want [$want], got [$got]"
        show_tail "$WORK/tags.err"
    fi
}

# --- source images (no network) ----------------------------------------------------
# The layouts tag their images with full names and go in as oci-archives:
# podman names an image pulled from oci:DIR after DIR's path, which is not a
# valid (lowercase) image name when mktemp put capitals in it.
SRC=$WORK/src
AMD=$WORK/src-amd64
ARM=$WORK/src-arm64
build_oci_image "$SRC" localhost/podman-src:v1 3 >/dev/null
build_oci_image "$AMD" localhost/podman-amd64:v1 2 amd64 >/dev/null
build_oci_image "$ARM" localhost/podman-arm64:v1 2 arm64 >/dev/null
cfg_of() { jq -r .config.digest "$(oci_blob_path "$1" "$(jq -r '.manifests[0].digest' "$1/index.json")")"; }
diffs_of() { jq -c .rootfs.diff_ids "$(oci_blob_path "$1" "$(cfg_of "$1")")"; }
SRC_CFG=$(cfg_of "$SRC")
AMD_CFG=$(cfg_of "$AMD")
ARM_CFG=$(cfg_of "$ARM")
if oci_layout_verify "$SRC" >/dev/null && oci_layout_verify "$AMD" >/dev/null &&
    oci_layout_verify "$ARM" >/dev/null && oci_archive "$SRC" "$WORK/src.tar" &&
    oci_archive "$AMD" "$WORK/amd64.tar" && oci_archive "$ARM" "$WORK/arm64.tar"; then
    pass "built OCI layouts and archives (3-layer amd64 image; 2-layer amd64 and arm64 images)"
else
    fail "could not build the source OCI layouts"
    finish
fi

# --- into local storage without a registry -------------------------------------------
if pm load -i "$WORK/src.tar" >"$WORK/load.out" 2>&1 && grep -q 'localhost/podman-src:v1' "$WORK/load.out"; then
    pass "podman load -i oci-archive (3-layer image)"
else
    fail "podman load -i oci-archive"
    show_tail "$WORK/load.out"
fi
if [ "sha256:$(local_id localhost/podman-src:v1)" = "$SRC_CFG" ]; then
    pass "loaded image ID is the source config digest"
else
    fail "loaded image ID '$(local_id localhost/podman-src:v1)', want $SRC_CFG"
fi
pull_is "podman pull oci-archive:AMD.tar" "$AMD_CFG" "${SIGPOL[@]}" "oci-archive:$WORK/amd64.tar"
pull_is "podman pull --arch arm64 oci-archive:ARM.tar" "$ARM_CFG" --arch arm64 "${SIGPOL[@]}" \
    "oci-archive:$WORK/arm64.tar"

registry_start '[storage]\ndelete = true' || finish
R=$REG_ADDR

# --- push ---------------------------------------------------------------------------
check "podman tag SRC image as $R/test/podman:v1" pm tag "${SRC_CFG#sha256:}" "$R/test/podman:v1"
if check "podman push --tls-verify=false test/podman:v1" \
    pm push -q "${NOTLS[@]}" "${SIGPOL[@]}" --digestfile "$WORK/push-v1.digest" "$R/test/podman:v1"; then
    PUSHED=$(cat "$WORK/push-v1.digest")
    if got=$(reg_manifest test/podman v1 "$WORK/v1.json" 2>"$WORK/curl.err") && [ "$got" = "$PUSHED" ]; then
        pass "registry serves test/podman:v1 with the digest podman reported ($PUSHED)"
    else
        fail "GET test/podman:v1: digest '$got', podman pushed '$PUSHED'"
        show_tail "$WORK/curl.err"
    fi
    if [ "$(jq -r .config.digest "$WORK/v1.json" 2>/dev/null)" = "$SRC_CFG" ] &&
        [ "$(jq '.layers | length' "$WORK/v1.json" 2>/dev/null)" = 3 ]; then
        pass "pushed manifest references the source config and 3 layers"
    else
        fail "pushed manifest: config $(jq -r .config.digest "$WORK/v1.json" 2>/dev/null), want $SRC_CFG with 3 layers"
    fi
fi
check "podman tag test/podman:v2" pm tag "${SRC_CFG#sha256:}" "$R/test/podman:v2"
check "podman push test/podman:v2 (blobs already there)" \
    pm push -q "${NOTLS[@]}" "${SIGPOL[@]}" "$R/test/podman:v2"
if [ -n "${PUSHED:-}" ] && [ "$(reg_manifest test/podman v2 "$WORK/v2.json" 2>/dev/null)" = "$PUSHED" ]; then
    pass "test/podman:v2 has the same manifest digest as v1"
else
    fail "test/podman:v2 manifest digest differs from v1 ($PUSHED)"
fi
if check "podman push --format v2s2 test/podman:docker (Docker schema2)" \
    pm push -q "${NOTLS[@]}" "${SIGPOL[@]}" --format v2s2 --digestfile "$WORK/push-docker.digest" \
    "$R/test/podman:v1" "docker://$R/test/podman:docker"; then
    if got=$(reg_manifest test/podman docker "$WORK/docker.json" 2>"$WORK/curl.err") &&
        [ "$got" = "$(cat "$WORK/push-docker.digest")" ] &&
        [ "$(reg_header "$WORK/docker.json.headers" Content-Type)" = application/vnd.docker.distribution.manifest.v2+json ]; then
        pass "test/podman:docker served as Docker schema2 with the pushed digest"
    else
        fail "test/podman:docker: digest '$got' / Content-Type '$(reg_header "$WORK/docker.json.headers" Content-Type)'"
        show_tail "$WORK/curl.err"
    fi
fi

tags_are "podman search --list-tags test/podman" test/podman docker v1 v2
if pm search --format '{{.Name}}' "${NOTLS[@]}" "$R/test" >"$WORK/search.out" 2>&1 &&
    grep -qx "$R/test/podman" "$WORK/search.out"; then
    pass "podman search (catalog) lists test/podman"
else
    fail "podman search $R/test does not list test/podman"
    show_tail "$WORK/search.out"
fi

# --- remove locally, pull back ------------------------------------------------------
check "podman rmi -f the image (every tag)" pm rmi -f "${SRC_CFG#sha256:}"
if local_id "${SRC_CFG#sha256:}" >/dev/null; then
    fail "image $SRC_CFG still present after rmi"
else
    pass "image gone from local storage"
fi
if pull_is "podman pull --tls-verify=false test/podman:v1" "$SRC_CFG" \
    "${NOTLS[@]}" "${SIGPOL[@]}" "$R/test/podman:v1"; then
    if pm image inspect --format '{{json .RepoDigests}}' "$R/test/podman:v1" 2>/dev/null |
        jq -e --arg d "$R/test/podman@${PUSHED:-none}" 'index($d) != null' >/dev/null; then
        pass "pulled image's RepoDigests has test/podman@pushed digest"
    else
        fail "RepoDigests $(pm image inspect --format '{{json .RepoDigests}}' "$R/test/podman:v1" 2>/dev/null) lacks $R/test/podman@${PUSHED:-?}"
    fi
    if [ "$(pm image inspect --format '{{json .RootFS.Layers}}' "$R/test/podman:v1" 2>/dev/null | jq -c .)" = \
        "$(diffs_of "$SRC")" ]; then
        pass "pulled layers unpack to the source diff_ids"
    else
        fail "pulled RootFS.Layers differ from the source diff_ids"
    fi
fi
check "podman rmi test/podman:v1" pm rmi "$R/test/podman:v1"
pull_is "podman pull test/podman@digest" "$SRC_CFG" "${NOTLS[@]}" "${SIGPOL[@]}" "$R/test/podman@${PUSHED:-none}"
if pm pull -q "${NOTLS[@]}" "${SIGPOL[@]}" "$R/test/podman:nosuchtag" >"$WORK/missing.out" 2>&1; then
    fail "podman pull of a missing tag succeeded"
else
    if grep -qi 'manifest unknown' "$WORK/missing.out"; then
        pass "podman pull of a missing tag fails with 'manifest unknown'"
    else
        fail "podman pull of a missing tag failed without 'manifest unknown'"
        show_tail "$WORK/missing.out"
    fi
fi

# --- multi-arch manifest list ----------------------------------------------------
LIST=localhost/podman-list:v1
check "podman manifest create" pm manifest create "$LIST"
check "podman tag the amd64 image" pm tag "${AMD_CFG#sha256:}" localhost/podman-amd64:v1
check "podman tag the arm64 image" pm tag "${ARM_CFG#sha256:}" localhost/podman-arm64:v1
check "podman manifest add (amd64 image)" pm manifest add "$LIST" containers-storage:localhost/podman-amd64:v1
check "podman manifest add (arm64 image)" pm manifest add "$LIST" containers-storage:localhost/podman-arm64:v1
if check "podman manifest push --all test/podman-multi:v1" \
    pm manifest push -q --all "${NOTLS[@]}" --digestfile "$WORK/list.digest" "$LIST" \
    "docker://$R/test/podman-multi:v1"; then
    if got=$(reg_manifest test/podman-multi v1 "$WORK/list.json" 2>"$WORK/curl.err") &&
        [ "$got" = "$(cat "$WORK/list.digest")" ]; then
        pass "registry serves the list with the digest podman reported"
    else
        fail "GET test/podman-multi:v1: digest '$got', podman pushed '$(cat "$WORK/list.digest")'"
        show_tail "$WORK/curl.err"
    fi
    plats=$(jq -r '[.manifests[].platform | .os + "/" + .architecture] | sort | join(" ")' "$WORK/list.json" 2>/dev/null)
    if [ "$plats" = "linux/amd64 linux/arm64" ]; then
        pass "the list has linux/amd64 and linux/arm64 entries"
    else
        fail "the list's platforms are '$plats'"
    fi
    for d in $(jq -r '.manifests[].digest' "$WORK/list.json" 2>/dev/null); do
        if got=$(reg_manifest test/podman-multi "$d" "$WORK/plat.json" 2>"$WORK/curl.err") && [ "$got" = "$d" ]; then
            pass "platform manifest ${d:0:19}... retrievable by digest"
        else
            fail "platform manifest $d not retrievable"
            show_tail "$WORK/curl.err"
        fi
    done
    containers_insecure "$R"
    if pm manifest inspect "$R/test/podman-multi:v1" >"$WORK/minspect.json" 2>"$WORK/minspect.err" &&
        [ "$(jq -c '[.manifests[].digest]' "$WORK/minspect.json")" = "$(jq -c '[.manifests[].digest]' "$WORK/list.json")" ]; then
        pass "podman manifest inspect (registries.conf insecure=true) shows the pushed entries"
    else
        fail "podman manifest inspect of the remote list"
        show_tail "$WORK/minspect.err"
    fi
    pull_is "podman pull --arch arm64 from the list" "$ARM_CFG" \
        --arch arm64 "${NOTLS[@]}" "${SIGPOL[@]}" "$R/test/podman-multi:v1"
    pull_is "podman pull --arch amd64 from the list" "$AMD_CFG" \
        --arch amd64 "${NOTLS[@]}" "${SIGPOL[@]}" "$R/test/podman-multi:v1"
fi

registry_log_check
registry_stop "$REG_PID"
finish
