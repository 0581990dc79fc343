#!/usr/bin/env bash
# The pull-through cache with real clients: Debian's docker-registry
# (Distribution 2.8) on loopback holds an image pushed with skopeo; our
# registry mirrors it under mirror/. skopeo and podman pull through the
# cache by tag and by digest and get the upstream's bytes (manifest
# byte-identical, blobs by sha256, podman's image ID the config digest);
# each blob is fetched from the upstream once for both clients (counted in
# its access log); with the upstream stopped the cached image still pulls.
# Usage: REGISTRY_BIN=build/registry conformance/clients/proxy.sh
. "$(dirname "$0")/lib.sh"

require_tool skopeo
require_tool podman
require_tool jq
require_tool curl
require_dist

containers_env
sk() {
    run skopeo --policy "$CT_POLICY" --tmpdir "$TMPDIR" "$@"
}
pm() { run podman "${CT_STORAGE_OPTS[@]}" "$@"; }
NOTLS=(--tls-verify=false)
COPY=(copy --quiet --src-tls-verify=false --dest-tls-verify=false --preserve-digests)

# --- the image, pushed to the upstream -----------------------------------------------
SRC=$WORK/src
DIGEST=$(build_oci_image "$SRC" v1 3)
MAN=$(oci_blob_path "$SRC" "$DIGEST")
CFG=$(jq -r .config.digest "$MAN")
BLOBS=$(jq -r '.config.digest, .layers[].digest' "$MAN")
dist_start || finish
check "skopeo copy oci:SRC:v1 -> the upstream's library/app:v1" \
    sk "${COPY[@]}" "oci:$SRC:v1" "docker://$DIST_ADDR/library/app:v1" || finish

registry_start "[proxy.dist]\nurl = http://$DIST_ADDR\nprefix = mirror\ntag_ttl = 5m" || finish
M=$REG_ADDR/mirror/library/app

# --- skopeo through the cache ---------------------------------------------------------
if sk inspect --raw "${NOTLS[@]}" "docker://$M:v1" >"$WORK/raw.json" 2>"$WORK/raw.err" &&
    cmp -s "$WORK/raw.json" "$MAN"; then
    pass "skopeo inspect --raw mirror/library/app:v1 is byte-identical to the pushed manifest"
else
    fail "skopeo inspect --raw mirror/library/app:v1 differs from the pushed manifest"
    show_tail "$WORK/raw.err"
fi
OUT=$WORK/out
if check "skopeo copy docker://mirror/library/app:v1 -> oci:OUT:v1" \
    sk "${COPY[@]}" "docker://$M:v1" "oci:$OUT:v1"; then
    expect_eq "the copied-out image names the upstream's manifest digest" \
        "$(oci_ref_digest "$OUT" v1)" "$DIGEST"
    bad=0
    for d in $BLOBS; do
        cmp -s "$(oci_blob_path "$OUT" "$d")" "$(oci_blob_path "$SRC" "$d")" || bad=1
    done
    if [ $bad -eq 0 ] && oci_layout_verify "$OUT" >/dev/null; then
        pass "config and 3 layers pulled through the cache are the upstream's bytes"
    else
        fail "blobs pulled through the cache differ from the upstream's"
    fi
fi

# --- podman through the cache ---------------------------------------------------------
if pm pull -q "${NOTLS[@]}" "$M:v1" >"$WORK/pull.out" 2>&1 &&
    [ "sha256:$(tail -n1 "$WORK/pull.out")" = "$CFG" ]; then
    pass "podman pull mirror/library/app:v1: the image ID is the config digest"
else
    fail "podman pull mirror/library/app:v1 (want image ID $CFG)"
    show_tail "$WORK/pull.out"
fi
check "podman rmi" pm rmi -f "$M:v1"
if pm pull -q "${NOTLS[@]}" "$M@$DIGEST" >"$WORK/pull.out" 2>&1 &&
    [ "sha256:$(tail -n1 "$WORK/pull.out")" = "$CFG" ]; then
    pass "podman pull mirror/library/app@digest: the image ID is the config digest"
else
    fail "podman pull mirror/library/app@$DIGEST"
    show_tail "$WORK/pull.out"
fi

# Each blob was asked of the upstream once, for both clients and all pulls.
for d in $BLOBS; do
    n=$(grep -c "GET /v2/library/app/blobs/$d" "$DIST_DIR/log")
    expect_eq "the upstream was asked for blob ${d:7:12} once" "$n" 1
done

# --- the upstream stopped: the cached image still pulls ------------------------------
dist_stop
check "podman rmi" pm rmi -f "$M@$DIGEST"
if pm pull -q "${NOTLS[@]}" "$M:v1" >"$WORK/pull.out" 2>&1 &&
    [ "sha256:$(tail -n1 "$WORK/pull.out")" = "$CFG" ]; then
    pass "with the upstream stopped, podman pull mirror/library/app:v1 works from the cache"
else
    fail "podman pull mirror/library/app:v1 with the upstream stopped"
    show_tail "$WORK/pull.out"
fi
if sk inspect --raw "${NOTLS[@]}" "docker://$REG_ADDR/mirror/library/other:v1" >/dev/null 2>&1; then
    fail "an image never cached pulled with the upstream stopped"
else
    pass "an image never cached fails cleanly with the upstream stopped"
fi

registry_log_check
registry_stop "$REG_PID"
finish
