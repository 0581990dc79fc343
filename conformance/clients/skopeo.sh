#!/usr/bin/env bash
# skopeo interop: push OCI images and a multi-arch index into a fresh registry,
# copy them back out (oci:, dir:, docker-archive:), and check that manifests are
# byte-identical and layers match by sha256; list-tags, delete, sync.
# Usage: REGISTRY_BIN=build/registry conformance/clients/skopeo.sh
. "$(dirname "$0")/lib.sh"

require_tool skopeo
require_tool jq

# --- skopeo isolated from system/user configuration ------------------------------
mkdir -p "$WORK/registries.d" "$WORK/skopeo-tmp"
jq -n '{default: [{type: "insecureAcceptAnything"}]}' >"$WORK/policy.json"
printf 'unqualified-search-registries = []\n' >"$WORK/registries.conf"
jq -n '{auths: {}}' >"$WORK/auth.json"
export CONTAINERS_REGISTRIES_CONF=$WORK/registries.conf
export REGISTRIES_CONFIG_PATH=$WORK/registries.conf
export REGISTRY_AUTH_FILE=$WORK/auth.json
export TMPDIR=$WORK/skopeo-tmp

sk() {
    run skopeo --policy "$WORK/policy.json" --registries.d "$WORK/registries.d" \
        --tmpdir "$WORK/skopeo-tmp" "$@"
}
NOTLS=(--tls-verify=false)
COPY=(copy --quiet --src-tls-verify=false --dest-tls-verify=false --preserve-digests)

# same_file DESC A B: pass if A and B are byte-identical.
same_file() {
    if cmp -s "$2" "$3"; then
        pass "$1"
    else
        fail "$1: bytes differ"
        note "expected sha256 $(sha256_of "$3") ($(size_of "$3") bytes)"
        note "got      sha256 $(sha256_of "$2" 2>/dev/null) ($(size_of "$2" 2>/dev/null) bytes)"
    fi
}

# raw_is DESC REF FILE: `skopeo inspect --raw REF` must equal FILE.
raw_is() {
    local out=$WORK/raw.out
    if sk inspect --raw "${NOTLS[@]}" "$REF_BASE/$2" >"$out" 2>"$WORK/raw.err"; then
        same_file "$1" "$out" "$3"
    else
        fail "$1: inspect --raw $2 failed"
        show_tail "$WORK/raw.err"
    fi
}

# blobs_match DESC MANIFEST DIR NAMING: every config/layer digest of MANIFEST is a
# file in DIR whose sha256 is that digest. NAMING is "oci" (DIR/blobs/sha256/HEX)
# or "dir" (DIR/HEX).
blobs_match() {
    local desc=$1 man=$2 dir=$3 naming=$4 d f bad=0 n=0
    for d in $(jq -r '.config.digest, .layers[].digest' "$man"); do
        n=$((n + 1))
        case $naming in
            oci) f=$dir/blobs/sha256/${d#sha256:} ;;
            *) f=$dir/${d#sha256:} ;;
        esac
        if [ ! -f "$f" ]; then
            note "missing blob $d"; bad=1
        elif [ "sha256:$(sha256_of "$f")" != "$d" ]; then
            note "blob $d has sha256:$(sha256_of "$f")"; bad=1
        fi
    done
    if [ $bad -eq 0 ] && [ $n -gt 1 ]; then pass "$desc ($n blobs)"; else fail "$desc"; fi
}

# tags_are DESC REPO TAG...: `skopeo list-tags` of REPO is exactly TAG...
tags_are() {
    local desc=$1 repo=$2 want got; shift 2
    want=$(printf '%s\n' "$@" | sort | paste -sd' ')
    if got=$(sk list-tags "${NOTLS[@]}" "docker://$REG_ADDR/$repo" 2>"$WORK/tags.err" |
        jq -r '.Tags[]' | sort | paste -sd' ') && [ "$got" = "$want" ]; then
        pass "$desc"
    else
        fail "$desc: want [$want], got [$got]"
        show_tail "$WORK/tags.err"
    fi
}

# --- build the source images (no network) -----------------------------------------
SRC=$WORK/src
IMG_DIGEST=$(build_oci_image "$SRC" v1 3)
IMG_MAN=$(oci_blob_path "$SRC" "$IMG_DIGEST")
IDX=$WORK/src-index
IDX_DIGEST=$(build_oci_index "$IDX" multi 2)
IDX_BLOB=$(oci_blob_path "$IDX" "$IDX_DIGEST")
DEL_GONE=$(build_oci_image "$SRC" gone 1)
DEL_KEEP=$(build_oci_image "$SRC" keep 1)
for t in a b c; do build_oci_image "$SRC" "sync-$t" 2 >/dev/null; done
if [ -n "$IMG_DIGEST" ] && [ -n "$IDX_DIGEST" ] && oci_layout_verify "$SRC" >/dev/null &&
    oci_layout_verify "$IDX" >/dev/null; then
    pass "built OCI layouts (3-layer image, amd64+arm64 index, sync images)"
else
    fail "could not build the source OCI layouts"
    finish
fi

# --- server with delete enabled -----------------------------------------------------
registry_start '[storage]\ndelete = true' || finish
REF_BASE=docker://$REG_ADDR

# push: one image under three tags
check "copy oci:SRC:v1 -> docker://test/image:v1" \
    sk "${COPY[@]}" "oci:$SRC:v1" "$REF_BASE/test/image:v1"
check "copy oci:SRC:v1 -> docker://test/image:v2 (blobs already present)" \
    sk "${COPY[@]}" "oci:$SRC:v1" "$REF_BASE/test/image:v2"
check "copy oci:SRC:v1 -> docker://test/image:latest" \
    sk "${COPY[@]}" "oci:$SRC:v1" "$REF_BASE/test/image:latest"

raw_is "inspect --raw test/image:v1 is byte-identical to the source manifest" test/image:v1 "$IMG_MAN"
raw_is "inspect --raw test/image@digest is byte-identical" "test/image@$IMG_DIGEST" "$IMG_MAN"
if sk inspect "${NOTLS[@]}" "$REF_BASE/test/image:v1" >"$WORK/inspect.json" 2>"$WORK/inspect.err" &&
    [ "$(jq -r .Digest "$WORK/inspect.json")" = "$IMG_DIGEST" ] &&
    [ "$(jq -c .Layers "$WORK/inspect.json")" = "$(jq -c '[.layers[].digest]' "$IMG_MAN")" ] &&
    [ "$(jq -r .Architecture "$WORK/inspect.json")" = amd64 ]; then
    pass "inspect test/image:v1 reports the source digest, layers and architecture"
else
    fail "inspect test/image:v1 (digest/layers/architecture)"
    show_tail "$WORK/inspect.err"; show_tail "$WORK/inspect.json"
fi
if sk inspect --config --raw "${NOTLS[@]}" "$REF_BASE/test/image:v1" >"$WORK/config.out" 2>/dev/null; then
    same_file "inspect --config --raw returns the source config blob" "$WORK/config.out" \
        "$(oci_blob_path "$SRC" "$(jq -r .config.digest "$IMG_MAN")")"
else
    fail "inspect --config --raw test/image:v1 failed"
fi

# copy back out: OCI layout
OUT_OCI=$WORK/out-oci
if check "copy docker://test/image:v1 -> oci:OUT:v1" \
    sk "${COPY[@]}" "$REF_BASE/test/image:v1" "oci:$OUT_OCI:v1"; then
    d=$(oci_ref_digest "$OUT_OCI" v1)
    if [ "$d" = "$IMG_DIGEST" ]; then
        pass "copied-out OCI layout names the source manifest digest"
    else
        fail "copied-out OCI layout: index.json digest $d, want $IMG_DIGEST"
    fi
    same_file "copied-out OCI manifest is byte-identical" "$(oci_blob_path "$OUT_OCI" "$d")" "$IMG_MAN"
    blobs_match "copied-out OCI layout: config and layers match the source by sha256" \
        "$IMG_MAN" "$OUT_OCI" oci
    check "copied-out OCI layout: every blob hashes to its name" oci_layout_verify "$OUT_OCI"
fi

# copy back out: dir:
OUT_DIR=$WORK/out-dir
if check "copy docker://test/image:v1 -> dir:OUT" \
    sk "${COPY[@]}" "$REF_BASE/test/image:v1" "dir:$OUT_DIR"; then
    same_file "dir: manifest.json is byte-identical" "$OUT_DIR/manifest.json" "$IMG_MAN"
    blobs_match "dir: config and layers match the source by sha256" "$IMG_MAN" "$OUT_DIR" dir
fi

# copy back out: docker-archive: (converted to Docker schema2, layers uncompressed)
ARCHIVE=$WORK/out-archive.tar
if check "copy docker://test/image:v1 -> docker-archive:OUT.tar" \
    sk copy --quiet --src-tls-verify=false "$REF_BASE/test/image:v1" "docker-archive:$ARCHIVE:test/image:v1"; then
    mkdir -p "$WORK/archive" && tar -C "$WORK/archive" -xf "$ARCHIVE"
    cfg_digest=$(jq -r .config.digest "$IMG_MAN")
    want_diffs=$(jq -c .rootfs.diff_ids "$(oci_blob_path "$SRC" "$cfg_digest")")
    got_diffs='[]'
    for l in $(jq -r '.[0].Layers[]' "$WORK/archive/manifest.json" 2>/dev/null); do
        got_diffs=$(jq -c --arg d "sha256:$(sha256_of "$WORK/archive/$l")" '. + [$d]' <<<"$got_diffs")
    done
    if [ "$got_diffs" = "$want_diffs" ]; then
        pass "docker-archive: layer tars hash to the source diff_ids"
    else
        fail "docker-archive: layer tars $got_diffs, want diff_ids $want_diffs"
    fi
    acfg=$WORK/archive/$(jq -r '.[0].Config' "$WORK/archive/manifest.json" 2>/dev/null)
    if [ -f "$acfg" ] && [ "$(jq -c .rootfs.diff_ids "$acfg")" = "$want_diffs" ] &&
        [ "$(jq -r .architecture "$acfg")" = amd64 ]; then
        pass "docker-archive: image config carries the source rootfs and architecture"
    else
        fail "docker-archive: image config missing or different"
    fi
    # and push the archive back: exercises Docker schema2 manifests
    if check "copy docker-archive:OUT.tar -> docker://test/fromarchive:v1 (Docker schema2)" \
        sk copy --quiet --dest-tls-verify=false "docker-archive:$ARCHIVE" \
        "$REF_BASE/test/fromarchive:v1"; then
        mt=$(sk inspect --raw "${NOTLS[@]}" "$REF_BASE/test/fromarchive:v1" 2>/dev/null | jq -r .mediaType)
        if [ "$mt" = application/vnd.docker.distribution.manifest.v2+json ]; then
            pass "test/fromarchive:v1 is served as a Docker schema2 manifest"
        else
            fail "test/fromarchive:v1 mediaType '$mt', want Docker schema2"
        fi
    fi
fi

# registry -> registry in the same registry: blobs can be cross-repo mounted
if check "copy docker://test/image:v1 -> docker://test/mounted:v1" \
    sk "${COPY[@]}" "$REF_BASE/test/image:v1" "$REF_BASE/test/mounted:v1"; then
    raw_is "test/mounted:v1 manifest is byte-identical" test/mounted:v1 "$IMG_MAN"
fi

# multi-arch index with --all
if check "copy --all oci:IDX:multi -> docker://test/multi:v1" \
    sk "${COPY[@]}" --all "oci:$IDX:multi" "$REF_BASE/test/multi:v1"; then
    raw_is "inspect --raw test/multi:v1 is byte-identical to the source index" test/multi:v1 "$IDX_BLOB"
    for d in $(jq -r '.manifests[].digest' "$IDX_BLOB"); do
        arch=$(jq -r --arg d "$d" '.manifests[] | select(.digest == $d) | .platform.architecture' "$IDX_BLOB")
        raw_is "platform manifest ($arch) retrievable by digest, byte-identical" \
            "test/multi@$d" "$(oci_blob_path "$IDX" "$d")"
    done
    for arch in amd64 arm64; do
        got=$(sk --override-arch "$arch" --override-os linux inspect "${NOTLS[@]}" \
            "$REF_BASE/test/multi:v1" 2>/dev/null | jq -r .Architecture)
        if [ "$got" = "$arch" ]; then
            pass "inspect --override-arch $arch resolves the index to the $arch image"
        else
            fail "inspect --override-arch $arch on test/multi:v1 gave architecture '$got'"
        fi
    done
    OUT_IDX=$WORK/out-index
    if check "copy --all docker://test/multi:v1 -> oci:OUT:multi" \
        sk "${COPY[@]}" --all "$REF_BASE/test/multi:v1" "oci:$OUT_IDX:multi"; then
        d=$(oci_ref_digest "$OUT_IDX" multi)
        if [ "$d" = "$IDX_DIGEST" ] && cmp -s "$(oci_blob_path "$OUT_IDX" "$d")" "$IDX_BLOB" &&
            oci_layout_verify "$OUT_IDX" >/dev/null; then
            pass "copied-out index layout has the source index and verified blobs"
        else
            fail "copied-out index layout: digest $d, want $IDX_DIGEST, or blobs corrupt"
        fi
        for pd in $(jq -r '.manifests[].digest' "$IDX_BLOB"); do
            blobs_match "copied-out index layout: blobs of $pd match by sha256" \
                "$(oci_blob_path "$IDX" "$pd")" "$OUT_IDX" oci
        done
    fi
fi

tags_are "list-tags test/image shows the pushed tags" test/image latest v1 v2
tags_are "list-tags test/multi shows its tag" test/multi v1

# delete: two different images in one repository, delete one
check "copy oci:SRC:gone -> docker://test/del:gone" sk "${COPY[@]}" "oci:$SRC:gone" "$REF_BASE/test/del:gone"
check "copy oci:SRC:keep -> docker://test/del:keep" sk "${COPY[@]}" "oci:$SRC:keep" "$REF_BASE/test/del:keep"
if check "skopeo delete docker://test/del:gone" sk delete "${NOTLS[@]}" "$REF_BASE/test/del:gone"; then
    if sk inspect --raw "${NOTLS[@]}" "$REF_BASE/test/del:gone" >/dev/null 2>&1; then
        fail "inspect test/del:gone still succeeds after delete"
    else
        pass "inspect test/del:gone fails after delete"
    fi
    if sk inspect --raw "${NOTLS[@]}" "$REF_BASE/test/del@$DEL_GONE" >/dev/null 2>&1; then
        fail "inspect test/del@digest still succeeds after delete"
    else
        pass "inspect test/del@digest fails after delete"
    fi
    raw_is "the other image in the repository survives" test/del:keep "$(oci_blob_path "$SRC" "$DEL_KEEP")"
    tags_are "list-tags test/del shows only the surviving tag" test/del keep
fi

# sync a whole repository with several tags
for t in a b c; do
    check "copy oci:SRC:sync-$t -> docker://test/sync:$t" \
        sk "${COPY[@]}" "oci:$SRC:sync-$t" "$REF_BASE/test/sync:$t"
done
if check "skopeo sync --src docker --dest docker test/sync -> mirror/" \
    sk sync --src docker --dest docker --src-tls-verify=false --dest-tls-verify=false \
    --preserve-digests "$REG_ADDR/test/sync" "$REG_ADDR/mirror"; then
    tags_are "list-tags mirror/sync shows all synced tags" mirror/sync a b c
    for t in a b c; do
        raw_is "mirror/sync:$t is byte-identical to the source" "mirror/sync:$t" \
            "$(oci_blob_path "$SRC" "$(oci_ref_digest "$SRC" "sync-$t")")"
    done
fi
SYNC_DIR=$WORK/sync-dir
if check "skopeo sync --src docker --dest dir test/sync -> DIR" \
    sk sync --src docker --dest dir --src-tls-verify=false --preserve-digests \
    "$REG_ADDR/test/sync" "$SYNC_DIR"; then
    for t in a b c; do
        m=$(oci_blob_path "$SRC" "$(oci_ref_digest "$SRC" "sync-$t")")
        if [ -f "$SYNC_DIR/sync:$t/manifest.json" ]; then
            same_file "sync dir: sync:$t/manifest.json is byte-identical" "$SYNC_DIR/sync:$t/manifest.json" "$m"
            blobs_match "sync dir: sync:$t blobs match by sha256" "$m" "$SYNC_DIR/sync:$t" dir
        else
            fail "sync dir: $SYNC_DIR/sync:$t/manifest.json missing"
            note "$(cd "$SYNC_DIR" 2>/dev/null && find . -maxdepth 2 | head -20 | paste -sd' ')"
        fi
    done
fi

registry_log_check
registry_stop "$REG_PID"

# --- server with delete disabled (default): skopeo delete must be refused ----------
if registry_start; then
    REF_BASE=docker://$REG_ADDR
    check "copy oci:SRC:keep -> docker://test/nodel:v1 (delete disabled)" \
        sk "${COPY[@]}" "oci:$SRC:keep" "$REF_BASE/test/nodel:v1"
    if sk delete "${NOTLS[@]}" "$REF_BASE/test/nodel:v1" >"$WORK/nodel.out" 2>&1; then
        fail "skopeo delete succeeded on a registry with delete disabled"
    else
        pass "skopeo delete refused when delete is disabled"
    fi
    raw_is "image still there after the refused delete" test/nodel:v1 "$(oci_blob_path "$SRC" "$DEL_KEEP")"
    registry_log_check
    registry_stop "$REG_PID"
fi

finish
