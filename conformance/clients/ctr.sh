#!/usr/bin/env bash
# containerd interop: start a private containerd (own root, state and socket in
# a temp dir), import locally built OCI archives, `ctr images push` them
# (containerd uploads monolithically: POST then PUT, never PATCH; cross-repo
# mounts with POST ?mount=&from=), then `ctr images pull` them back into other
# namespaces (isolated content sharing, so every blob crosses the wire) and
# check digests and blob contents; multi-arch index pushed and pulled with
# --all-platforms and --platform; a pull through a hosts.toml (--hosts-dir).
# CTR_SNAPSHOTTER=native forces the snapshotter (default: overlayfs if it works).
# Usage: REGISTRY_BIN=build/registry conformance/clients/ctr.sh
. "$(dirname "$0")/lib.sh"

require_tool containerd
require_tool ctr
require_tool jq
require_tool curl

# --- source images (no network) ----------------------------------------------------
SRC=$WORK/src
SRC_DIGEST=$(build_oci_image "$SRC" v1 3)
SRC_MAN=$(oci_blob_path "$SRC" "$SRC_DIGEST")
IDX=$WORK/idx
IDX_DIGEST=$(build_oci_index "$IDX" v1 2)
IDX_BLOB=$(oci_blob_path "$IDX" "$IDX_DIGEST")
if [ -n "$SRC_DIGEST" ] && [ -n "$IDX_DIGEST" ] && oci_layout_verify "$SRC" >/dev/null &&
    oci_layout_verify "$IDX" >/dev/null && oci_archive "$SRC" "$WORK/src.tar" &&
    oci_archive "$IDX" "$WORK/idx.tar"; then
    pass "built OCI archives (3-layer image; amd64+arm64 index, 2 layers each)"
else
    fail "could not build the source OCI archives"
    finish
fi

containerd_start || finish

registry_start "" || finish
R=$REG_ADDR

# image_digest NS REF: the target digest `ctr images ls` shows for REF.
image_digest() { ct -n "$1" images ls 2>/dev/null | awk -v r="$2" '$1 == r { print $3 }'; }

# content_ok NS DESC DIGEST...: every DIGEST is in NS's content store and hashes to itself.
content_ok() {
    local ns=$1 desc=$2 d bad=0 n=0; shift 2
    for d in "$@"; do
        n=$((n + 1))
        if ! ct -n "$ns" content get "$d" >"$WORK/blob" 2>/dev/null; then
            note "missing $d"; bad=1
        elif [ "sha256:$(sha256_of "$WORK/blob")" != "$d" ]; then
            note "$d hashes to sha256:$(sha256_of "$WORK/blob")"; bad=1
        fi
    done
    if [ $bad -eq 0 ]; then pass "$desc ($n blobs)"; else fail "$desc"; fi
}

# blobs_of MANIFEST: config and layer digests.
blobs_of() { jq -r '.config.digest, .layers[].digest' "$1"; }

# no_patch DESC REPO: the server log shows blob uploads to REPO and no PATCH.
no_patch() {
    local posts puts patches
    posts=$(grep -c "POST /v2/$2/blobs/uploads/" "$REG_LOG")
    puts=$(grep -c "PUT /v2/$2/blobs/uploads/" "$REG_LOG")
    patches=$(grep -c "PATCH /v2/$2/blobs/uploads/" "$REG_LOG")
    if [ "$posts" -gt 0 ] && [ "$puts" -eq "$posts" ] && [ "$patches" -eq 0 ]; then
        pass "$1 ($posts POST + $puts PUT, no PATCH)"
    else
        fail "$1: $posts POST, $puts PUT, $patches PATCH"
        grep "/v2/$2/" "$REG_LOG" | tail -n 20 | sed 's/^/      | /'
    fi
}

# --- import and push --------------------------------------------------------------
check "ctr images import (3-layer oci-archive) as $R/test/ctr:v1" \
    ct -n push images import --no-unpack --base-name "$R/test/ctr" "$WORK/src.tar"
d=$(image_digest push "$R/test/ctr:v1")
expect_eq "imported image has the source digest" "$d" "$SRC_DIGEST"
if check "ctr images push --plain-http test/ctr:v1" ct -n push images push --plain-http "$R/test/ctr:v1"; then
    no_patch "containerd uploaded test/ctr blobs monolithically" test/ctr
    if got=$(reg_manifest test/ctr v1 "$WORK/ctr-v1.json" 2>"$WORK/curl.err") && [ "$got" = "$SRC_DIGEST" ] &&
        cmp -s "$WORK/ctr-v1.json" "$SRC_MAN"; then
        pass "curl GET test/ctr:v1: the source manifest, byte-identical"
    else
        fail "curl GET test/ctr:v1: digest '$got', want $SRC_DIGEST (or bytes differ)"
        show_tail "$WORK/curl.err"
    fi
    bad=0
    for b in $(blobs_of "$SRC_MAN"); do
        if ! run curl -sSf -o "$WORK/blob" "http://$R/v2/test/ctr/blobs/$b" 2>/dev/null ||
            [ "sha256:$(sha256_of "$WORK/blob")" != "$b" ]; then
            note "blob $b missing or corrupt"; bad=1
        fi
    done
    expect_eq "curl GET every test/ctr blob: content matches its digest" "$bad" 0
    # shellcheck disable=SC2046 # digests, one per word
    registry_blobs_stored "test/ctr's config and layers are in the registry's blob store" \
        $(blobs_of "$SRC_MAN")
fi

check "ctr images import --all-platforms (index oci-archive) as $R/test/ctr-multi:v1" \
    ct -n push images import --no-unpack --all-platforms --base-name "$R/test/ctr-multi" "$WORK/idx.tar"
if check "ctr images push --plain-http test/ctr-multi:v1 (index + 2 manifests)" \
    ct -n push images push --plain-http "$R/test/ctr-multi:v1"; then
    no_patch "containerd uploaded test/ctr-multi blobs monolithically" test/ctr-multi
    if got=$(reg_manifest test/ctr-multi v1 "$WORK/multi.json" 2>"$WORK/curl.err") && [ "$got" = "$IDX_DIGEST" ] &&
        cmp -s "$WORK/multi.json" "$IDX_BLOB"; then
        pass "curl GET test/ctr-multi:v1: the source index, byte-identical"
    else
        fail "curl GET test/ctr-multi:v1: digest '$got', want $IDX_DIGEST (or bytes differ)"
        show_tail "$WORK/curl.err"
    fi
    for pd in $(jq -r '.manifests[].digest' "$IDX_BLOB"); do
        if got=$(reg_manifest test/ctr-multi "$pd" "$WORK/plat.json" 2>/dev/null) && [ "$got" = "$pd" ] &&
            cmp -s "$WORK/plat.json" "$(oci_blob_path "$IDX" "$pd")"; then
            pass "platform manifest ${pd:0:19}... pushed byte-identical"
        else
            fail "platform manifest $pd missing or different"
        fi
    done
    # shellcheck disable=SC2046 # digests, one per word
    registry_blobs_stored "test/ctr-multi's configs and layers are in the registry's blob store" \
        $(for pd in $(jq -r '.manifests[].digest' "$IDX_BLOB"); do blobs_of "$(oci_blob_path "$IDX" "$pd")"; done)
fi

# --- pull back into a fresh namespace ---------------------------------------------------
gets_before=$(grep -c "GET /v2/test/ctr/blobs/" "$REG_LOG")
if check "ctr images pull --plain-http test/ctr:v1 (namespace pull, $SNAP snapshotter)" \
    ct -n pull images pull --plain-http "$R/test/ctr:v1"; then
    d=$(image_digest pull "$R/test/ctr:v1")
    expect_eq "ctr images ls: test/ctr:v1 has the source digest" "$d" "$SRC_DIGEST"
    gets=$(($(grep -c "GET /v2/test/ctr/blobs/" "$REG_LOG") - gets_before))
    expect_eq "containerd downloaded config + 3 layers (blob GETs in the server log)" "$gets" 4
    if ct -n pull images check >"$WORK/check.out" 2>&1 &&
        awk -v r="$R/test/ctr:v1" '$1 == r' "$WORK/check.out" | grep -q 'complete (4/4).* true *$'; then
        pass "ctr images check: complete (4/4), unpacked"
    else
        fail "ctr images check for test/ctr:v1"
        show_tail "$WORK/check.out"
    fi
    if ct -n pull content get "$SRC_DIGEST" >"$WORK/pulled.json" 2>/dev/null && cmp -s "$WORK/pulled.json" "$SRC_MAN"; then
        pass "ctr content get: the manifest is byte-identical to the source"
    else
        fail "ctr content get $SRC_DIGEST differs from the source manifest"
    fi
    # shellcheck disable=SC2046
    content_ok pull "ctr content: config and layers present and verified" $(blobs_of "$SRC_MAN")
fi
# shellcheck disable=SC2317 # called through check
pull_by_digest() {
    ct -n pulldigest images pull --plain-http "$R/test/ctr@$SRC_DIGEST" &&
        [ "$(image_digest pulldigest "$R/test/ctr@$SRC_DIGEST")" = "$SRC_DIGEST" ]
}
check "ctr images pull test/ctr@digest" pull_by_digest

# the multi-arch index: every platform, then just one
if check "ctr images pull --all-platforms test/ctr-multi:v1" \
    ct -n pullall images pull --plain-http --all-platforms "$R/test/ctr-multi:v1"; then
    d=$(image_digest pullall "$R/test/ctr-multi:v1")
    expect_eq "ctr images ls: test/ctr-multi:v1 has the source index digest" "$d" "$IDX_DIGEST"
    all=()
    for pd in $(jq -r '.manifests[].digest' "$IDX_BLOB"); do
        all+=("$pd")
        mapfile -t -O "${#all[@]}" all < <(blobs_of "$(oci_blob_path "$IDX" "$pd")")
    done
    content_ok pullall "ctr content: both platforms' manifests, configs and layers present and verified" \
        "$IDX_DIGEST" "${all[@]}"
fi
ARM_MAN=$(jq -r '.manifests[] | select(.platform.architecture == "arm64") | .digest' "$IDX_BLOB")
AMD_MAN=$(jq -r '.manifests[] | select(.platform.architecture == "amd64") | .digest' "$IDX_BLOB")
if check "ctr images pull --platform linux/arm64 test/ctr-multi:v1" \
    ct -n pullarm images pull --plain-http --platform linux/arm64 "$R/test/ctr-multi:v1"; then
    # shellcheck disable=SC2046
    content_ok pullarm "ctr content: the arm64 manifest, config and layers" \
        "$ARM_MAN" $(blobs_of "$(oci_blob_path "$IDX" "$ARM_MAN")")
    amd_layer=$(jq -r '.layers[0].digest' "$(oci_blob_path "$IDX" "$AMD_MAN")")
    if ct -n pullarm content get "$amd_layer" >/dev/null 2>&1; then
        fail "--platform linux/arm64 also fetched an amd64 layer"
    else
        pass "--platform linux/arm64 fetched no amd64 layer"
    fi
fi

# --- cross-repository mount on push ------------------------------------------------------
# The pulled content carries a distribution-source label for test/ctr, so
# containerd asks the registry to mount the blobs (POST ?mount=...&from=test/ctr).
check "ctr images tag test/ctr:v1 test/ctr-mounted:v1" \
    ct -n pull images tag "$R/test/ctr:v1" "$R/test/ctr-mounted:v1"
if check "ctr images push --plain-http test/ctr-mounted:v1" \
    ct -n pull images push --plain-http "$R/test/ctr-mounted:v1"; then
    mounts=$(grep -c "POST /v2/test/ctr-mounted/blobs/uploads/[^ ]* 201 " "$REG_LOG")
    if [ "$mounts" -ge 4 ] && ! grep -q "PUT /v2/test/ctr-mounted/blobs/uploads/" "$REG_LOG"; then
        pass "all 4 blobs cross-repo mounted (POST ?mount=&from= -> 201, no upload)"
    else
        fail "cross-repo mount: $mounts POST ... 201 in the log, want 4 and no PUT uploads"
        grep "/v2/test/ctr-mounted/" "$REG_LOG" | tail -n 12 | sed 's/^/      | /'
    fi
    if got=$(reg_manifest test/ctr-mounted v1 "$WORK/mounted.json" 2>/dev/null) && [ "$got" = "$SRC_DIGEST" ]; then
        pass "curl GET test/ctr-mounted:v1: the source manifest"
    else
        fail "curl GET test/ctr-mounted:v1: digest '$got', want $SRC_DIGEST"
    fi
fi

# --- pull through a hosts.toml (how containerd/CRI is configured) -------------------
HOSTS=$WORK/certs.d
mkdir -p "$HOSTS/$R"
cat >"$HOSTS/$R/hosts.toml" <<CONF
server = "http://$R"

[host."http://$R"]
  capabilities = ["pull", "resolve", "push"]
CONF
if check "ctr images pull --hosts-dir (hosts.toml server = \"http://...\")" \
    ct -n hosts images pull --hosts-dir "$HOSTS" "$R/test/ctr:v1"; then
    d=$(image_digest hosts "$R/test/ctr:v1")
    expect_eq "hosts.toml pull has the source digest" "$d" "$SRC_DIGEST"
fi

if ct -n pull images pull --plain-http "$R/test/ctr:nosuchtag" >"$WORK/missing.out" 2>&1; then
    fail "ctr images pull of a missing tag succeeded"
elif grep -q 'not found' "$WORK/missing.out"; then
    pass "ctr images pull of a missing tag fails with 'not found'"
else
    fail "ctr images pull of a missing tag failed without 'not found'"
    show_tail "$WORK/missing.out"
fi

# --- stop ----------------------------------------------------------------------------
ctrd_stop
rc=$?
expect_eq "containerd stopped (exit status)" "$rc" 0
registry_log_check
registry_stop "$REG_PID"
finish
