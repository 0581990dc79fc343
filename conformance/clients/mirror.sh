#!/usr/bin/env bash
# The pull-through cache as a transparent registry mirror (a proxy with an
# empty prefix), with the three clients that use one. Debian's docker-registry
# (Distribution 2.8) on loopback holds library/app:v1 and an amd64+arm64 index
# library/multi:v1, pushed with skopeo from locally built OCI layouts (random
# content: no other registry has them). A private dockerd whose daemon.json
# lists our registry in "registry-mirrors" pulls app:v1 (docker.io/library/
# app:v1), app@DIGEST and multi:v1; a private containerd runs `ctr images pull
# --hosts-dir` with a hosts.toml that sends docker.io to the mirror; podman,
# with a registries.conf naming our registry as docker.io's [[registry.mirror]]
# and docker.io itself unreachable, pulls docker.io/library/app:v1 and multi:v1,
# then app:v1 again through a mirror location with a namespace (a second proxy
# of the same upstream under the prefix mirror/docker.io) and docker.io
# blocked. Checked:
# docker's and podman's image ID is the config digest and the repo digest the
# upstream's manifest (or index) digest; ctr's image has that digest and every
# blob hashes to its name; podman's layers are the source diff_ids; all three
# fetched every blob from our registry; the upstream's access log shows only
# our registry's user agent and one GET per blob for all of them; an image the
# upstream lacks fails to pull; with the upstream stopped, all three pull again
# from the cache.
# Usage: REGISTRY_BIN=build/registry conformance/clients/mirror.sh
. "$(dirname "$0")/lib.sh"

require_tool "$DOCKER_CLI"
require_tool "$DOCKERD"
require_tool unshare
require_tool containerd
require_tool ctr
require_tool podman
require_tool skopeo
require_tool jq
require_tool curl
require_dist

containers_env
COPY=(copy --quiet --src-tls-verify=false --dest-tls-verify=false --preserve-digests)

# --- the image, only in the upstream ---------------------------------------------------
SRC=$WORK/src
DIGEST=$(build_oci_image "$SRC" v1 3)
MAN=$(oci_blob_path "$SRC" "$DIGEST")
CFG=$(jq -r .config.digest "$MAN")
BLOBS=$(jq -r '.config.digest, .layers[].digest' "$MAN")
dist_start || finish
check "skopeo copy oci:SRC:v1 -> the upstream's library/app:v1" \
    run skopeo --policy "$CT_POLICY" --tmpdir "$TMPDIR" "${COPY[@]}" \
    "oci:$SRC:v1" "docker://$DIST_ADDR/library/app:v1" || finish
# A multi-arch index as library/multi:v1 (what Docker Hub mostly serves):
# clients resolve the tag to the index, then pull this host's manifest by digest.
IDX=$WORK/idx
IDX_DIGEST=$(build_oci_index "$IDX" v1 2)
ARCH=$(dpkg --print-architecture 2>/dev/null)
ARCH_MAN=$(jq -r --arg a "$ARCH" '.manifests[] | select(.platform.architecture == $a) | .digest' \
    "$(oci_blob_path "$IDX" "$IDX_DIGEST")")
ARCH_BLOBS=
[ -n "$ARCH_MAN" ] && ARCH_BLOBS=$(jq -r '.config.digest, .layers[].digest' "$(oci_blob_path "$IDX" "$ARCH_MAN")")
check "skopeo copy --all oci:IDX:v1 -> the upstream's library/multi:v1" \
    run skopeo --policy "$CT_POLICY" --tmpdir "$TMPDIR" "${COPY[@]}" --all \
    "oci:$IDX:v1" "docker://$DIST_ADDR/library/multi:v1" || finish
# Everything the upstream logs from here on is the mirror's doing.
DIST_MARK=$(wc -l <"$DIST_DIR/log")

# The same upstream twice: as the mirror (empty prefix) and under a prefix,
# for podman's registries.conf mirror with a namespace.
registry_start "[proxy.hub]\nurl = http://$DIST_ADDR\nprefix =\ntag_ttl = 5m
[proxy.hubprefix]\nurl = http://$DIST_ADDR\nprefix = mirror/docker.io\ntag_ttl = 5m" || finish

# reg_gets PATH: how many GETs of PATH our registry answered 200.
reg_gets() { grep -c " GET $1 200 " "$REG_LOG"; }
# dist_gets PATH: how many GETs of PATH the upstream logged since DIST_MARK.
dist_gets() { tail -n +"$((DIST_MARK + 1))" "$DIST_DIR/log" | grep -c "\"GET $1 HTTP"; }

# every_blob DESC MIN COUNTER: pass when COUNTER /v2/library/app/blobs/D is at least
# MIN for every blob, else fail naming the counts.
every_blob() {
    local desc=$1 min=$2 counter=$3 d n got=
    for d in $BLOBS; do
        n=$("$counter" "/v2/library/app/blobs/$d")
        got="$got ${d:7:12}=$n"
        [ "$n" -ge "$min" ] || { fail "$desc:$got"; return 1; }
    done
    pass "$desc"
}

# --- docker, with the registry in daemon.json's registry-mirrors ------------------------
DK_DAEMON_JSON=$(jq -nc --arg m "http://$REG_ADDR" '{"registry-mirrors": [$m]}') \
    dockerd_start || finish
if check "docker pull app:v1 (docker.io/library/app:v1 through the mirror)" dk pull app:v1; then
    expect_eq "docker's image ID is the upstream's config digest" \
        "$(dk image inspect --format '{{.Id}}' app:v1 2>/dev/null)" "$CFG"
    expect_eq "docker's repo digest is the upstream's manifest digest" \
        "$(dk image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' app:v1 2>/dev/null | xargs)" \
        "app@$DIGEST"
fi
# docker 20.10 resolves the tag with a HEAD, then GETs the manifest by digest.
if grep -qE " (HEAD|GET) /v2/library/app/manifests/v1 200 " "$REG_LOG" &&
    grep -qE " GET /v2/library/app/manifests/(v1|$DIGEST) 200 " "$REG_LOG"; then
    pass "docker resolved library/app:v1 and fetched its manifest from the mirror"
else
    fail "docker did not resolve and fetch library/app:v1's manifest from the mirror"
    grep " /v2/" "$REG_LOG" | tail -n 10 | sed 's/^/      | /'
fi
every_blob "docker fetched the config and every layer from the mirror" 1 reg_gets
# By digest, with the image gone: the config and layers come from the mirror
# again. The manifest may not: dockerd 20.10 keeps the manifests it pulled in
# its containerd content store until that store's garbage collection runs, so
# whether it asks again for app@DIGEST's manifest is a matter of timing (it
# fetched it by digest above, after resolving the tag).
check "docker rmi app:v1" dk rmi app:v1
mark=$(wc -l <"$REG_LOG")
# dk_gets PATH: GETs of PATH our registry answered since the rmi.
dk_gets() { tail -n +"$((mark + 1))" "$REG_LOG" | grep -c " GET $1 200 "; }
if check "docker pull app@DIGEST" dk pull "app@$DIGEST"; then
    expect_eq "its image ID is the config digest" \
        "$(dk image inspect --format '{{.Id}}' "app@$DIGEST" 2>/dev/null)" "$CFG"
    every_blob "docker fetched the config and every layer again from the mirror" 1 dk_gets
fi
if [ -z "$ARCH_MAN" ]; then
    skip "no $ARCH image in the test index: docker pull multi:v1 not run"
elif check "docker pull multi:v1 (an amd64+arm64 index)" dk pull multi:v1; then
    expect_eq "docker's image ID is the $ARCH config digest" \
        "$(dk image inspect --format '{{.Id}}' multi:v1 2>/dev/null)" "$(head -n1 <<<"$ARCH_BLOBS")"
    expect_eq "docker's repo digest is the index digest" \
        "$(dk image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' multi:v1 2>/dev/null | xargs)" \
        "multi@$IDX_DIGEST"
fi
if dk pull nosuch:v1 >"$WORK/nosuch.out" 2>&1; then
    fail "docker pull of an image the upstream lacks succeeded"
else
    pass "docker pull of an image the upstream lacks fails (no source but the mirror)"
fi
if grep -qE " (HEAD|GET) /v2/library/nosuch/manifests/v1 404 " "$REG_LOG"; then
    pass "docker asked the mirror for it and got a 404"
else
    fail "no 404 for library/nosuch:v1 in the registry's log"
fi
REG_DOCKER_MARK=$(wc -l <"$REG_LOG")

# --- containerd, with docker.io mapped to the registry in hosts.toml ---------------------
containerd_start || finish
HOSTS=$WORK/hosts
mkdir -p "$HOSTS/docker.io"
cat >"$HOSTS/docker.io/hosts.toml" <<CONF
server = "https://registry-1.docker.io"

[host."http://$REG_ADDR"]
  capabilities = ["pull", "resolve"]
CONF
# image_digest NS REF: the target digest `ctr images ls` shows for REF.
image_digest() { ct -n "$1" images ls 2>/dev/null | awk -v r="$2" '$1 == r { print $3 }'; }
# ctr_blobs_ok DESC NS DIGEST...: every DIGEST is in NS's content store and
# hashes to its name.
ctr_blobs_ok() {
    local desc=$1 ns=$2 d bad=0
    shift 2
    for d in "$@"; do
        if ! ct -n "$ns" content get "$d" >"$WORK/blob" 2>/dev/null ||
            [ "sha256:$(sha256_of "$WORK/blob")" != "$d" ]; then
            note "$d missing or corrupt in namespace $ns"
            bad=1
        fi
    done
    if [ $bad -eq 0 ]; then pass "$desc"; else fail "$desc"; fi
}
IMG=docker.io/library/app:v1
if check "ctr images pull --hosts-dir (docker.io -> the mirror) $IMG" \
    ct -n mirror images pull --hosts-dir "$HOSTS" "$IMG"; then
    expect_eq "ctr's image has the upstream's manifest digest" "$(image_digest mirror "$IMG")" "$DIGEST"
    # shellcheck disable=SC2086 # digests, one per word
    ctr_blobs_ok "manifest, config and 3 layers in containerd's store hash to their digests" \
        mirror $DIGEST $BLOBS
fi
if [ -n "$ARCH_MAN" ] && check "ctr images pull --hosts-dir docker.io/library/multi:v1 (the index)" \
    ct -n mirror images pull --hosts-dir "$HOSTS" docker.io/library/multi:v1; then
    expect_eq "ctr's image has the index digest" \
        "$(image_digest mirror docker.io/library/multi:v1)" "$IDX_DIGEST"
    # shellcheck disable=SC2086
    ctr_blobs_ok "the index, the $ARCH manifest, its config and layers hash to their digests" \
        mirror $IDX_DIGEST $ARCH_MAN $ARCH_BLOBS
fi
# ctr_gets PATH: GETs of PATH our registry answered since docker was done.
ctr_gets() { tail -n +"$((REG_DOCKER_MARK + 1))" "$REG_LOG" | grep -c " GET $1 200 "; }
every_blob "containerd fetched the config and every layer from the mirror" 1 ctr_gets
REG_CTR_MARK=$(wc -l <"$REG_LOG")

# --- podman, with the registry as docker.io's mirror in registries.conf ------------------
# The per-user registries.conf in containers_env's temp HOME lists the registry
# as the mirror of docker.io (that file, unlike CONTAINERS_REGISTRIES_CONF,
# keeps the system's registries.conf.d drop-ins out). podman tries a mirror
# first and falls back to the registry itself, so every podman command here has
# HTTP(S)_PROXY set to a closed loopback port: Go never proxies a loopback
# address, so the mirror is reached, and docker.io's registry-1.docker.io
# cannot be (no proxy, no DNS), whatever network this host has. A pull that
# does not come from the mirror fails.
NOWHERE=http://127.0.0.1:1
# pmm CONF ARGS...: podman ARGS with CONF as the per-user registries.conf.
pmm() {
    cp "$1" "$HOME/.config/containers/registries.conf" || return 1
    HTTPS_PROXY=$NOWHERE HTTP_PROXY=$NOWHERE NO_PROXY='' https_proxy=$NOWHERE http_proxy=$NOWHERE \
        no_proxy='' run podman "${CT_STORAGE_OPTS[@]}" "${@:2}"
}
PM_CONF=$WORK/registries-mirror.conf
cat >"$PM_CONF" <<CONF
unqualified-search-registries = []

[[registry]]
location = "docker.io"

[[registry.mirror]]
location = "$REG_ADDR"
insecure = true
CONF
# The prefix form: the mirror's location carries a namespace, so podman asks for
# mirror/docker.io/library/app, the proxy under that prefix. Here docker.io is
# also blocked: podman 4 then still uses its mirrors, and never docker.io.
PM_PREFIX_CONF=$WORK/registries-prefix.conf
cat >"$PM_PREFIX_CONF" <<CONF
unqualified-search-registries = []

[[registry]]
prefix = "docker.io"
location = "docker.io"
blocked = true

[[registry.mirror]]
location = "$REG_ADDR/mirror/docker.io"
insecure = true
CONF
SRC_DIFFS=$(jq -c .rootfs.diff_ids "$(oci_blob_path "$SRC" "$CFG")")
# pm_pulled DESC CONF REF ID: podman pull REF with registries.conf CONF, at debug
# level into $WORK/pm-pull.out; pass when it succeeds with image ID ID and
# tried no source but a mirror (no "Trying to access \"docker.io/...").
pm_pulled() {
    if ! pmm "$2" --log-level=debug pull -q "$3" >"$WORK/pm-pull.out" 2>&1; then
        fail "$1"
        grep -E 'Trying to access|level=(error|warning)|^Error' "$WORK/pm-pull.out" | tail -n 8 | sed 's/^/      | /'
        return 1
    fi
    if grep -q 'Trying to access \\"docker.io/' "$WORK/pm-pull.out"; then
        fail "$1: podman fell back to docker.io"
    elif [ "sha256:$(pmm "$2" image inspect --format '{{.Id}}' "$3" 2>/dev/null)" != "$4" ]; then
        fail "$1: image ID sha256:$(pmm "$2" image inspect --format '{{.Id}}' "$3" 2>/dev/null), want $4"
    else
        pass "$1"
        return 0
    fi
    return 1
}
if pm_pulled "podman pull docker.io/library/app:v1 (registries.conf mirror, image ID the config digest)" \
    "$PM_CONF" "$IMG" "$CFG"; then
    expect_eq "podman's repo digest is the upstream's manifest digest" \
        "$(pmm "$PM_CONF" image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' "$IMG" 2>/dev/null | xargs)" \
        "docker.io/library/app@$DIGEST"
    expect_eq "podman's layers unpack to the source diff_ids" \
        "$(pmm "$PM_CONF" image inspect --format '{{json .RootFS.Layers}}' "$IMG" 2>/dev/null | jq -c .)" \
        "$SRC_DIFFS"
fi
# pm_gets PATH: GETs of PATH our registry answered since containerd was done.
pm_gets() { tail -n +"$((REG_CTR_MARK + 1))" "$REG_LOG" | grep -c " GET $1 200 "; }
expect_eq "podman fetched library/app:v1's manifest from the mirror" \
    "$(pm_gets /v2/library/app/manifests/v1)" 1
every_blob "podman fetched the config and every layer from the mirror" 1 pm_gets
if [ -n "$ARCH_MAN" ] && pm_pulled "podman pull docker.io/library/multi:v1 (the index; image ID the $ARCH config)" \
    "$PM_CONF" docker.io/library/multi:v1 "$(head -n1 <<<"$ARCH_BLOBS")"; then
    expect_eq "podman's repo digests name the index and the $ARCH manifest" \
        "$(pmm "$PM_CONF" image inspect --format '{{range .RepoDigests}}{{.}} {{end}}' docker.io/library/multi:v1 2>/dev/null |
            xargs -n1 | sort | xargs)" \
        "$(printf 'docker.io/library/multi@%s\n' "$IDX_DIGEST" "$ARCH_MAN" | sort | xargs)"
fi
# Our 404 is the mirror failing: podman then tries docker.io, which it cannot reach.
if pmm "$PM_CONF" --log-level=debug pull -q docker.io/library/nosuch:v1 >"$WORK/pm-nosuch.out" 2>&1; then
    fail "podman pull of an image the upstream lacks succeeded"
elif grep -q 'Mirrors also failed: \[[^]]*nosuch:v1: reading manifest v1 in [^]]*manifest unknown' "$WORK/pm-nosuch.out" &&
    grep -q 'registry-1\.docker\.io.*127\.0\.0\.1:1: ' "$WORK/pm-nosuch.out"; then
    pass "podman pull of an image the upstream lacks fails: mirror 'manifest unknown', docker.io unreachable"
else
    fail "podman pull of an image the upstream lacks failed, but not with the mirror's 404 and no docker.io"
    grep -E 'Error|Mirrors' "$WORK/pm-nosuch.out" | tail -n 4 | sed 's/^/      | /'
fi
check "podman rmi app:v1" pmm "$PM_CONF" rmi "$IMG"
mark=$(wc -l <"$REG_LOG")
pm_pulled "podman pull docker.io/library/app:v1 (mirror location with the prefix mirror/docker.io, docker.io blocked)" \
    "$PM_PREFIX_CONF" "$IMG" "$CFG"
n=$(tail -n +"$((mark + 1))" "$REG_LOG" | grep -cE " GET /v2/mirror/docker.io/library/app/(manifests/v1|blobs/sha256:[0-9a-f]{64}) 200 ")
expect_eq "podman fetched the manifest and 4 blobs under mirror/docker.io/ (GETs in our log)" "$n" 5

# --- what the upstream saw ---------------------------------------------------------------
others=$(tail -n +"$((DIST_MARK + 1))" "$DIST_DIR/log" | grep '"[A-Z]* /v2/' | grep -vc '"registry-proxy/1')
expect_eq "every request the upstream logged came from our registry (user agent registry-proxy/1)" \
    "$others" 0
if [ "$(dist_gets /v2/library/app/manifests/v1)" -ge 1 ]; then
    pass "the upstream served library/app:v1's manifest to the mirror"
else
    fail "the upstream never logged GET /v2/library/app/manifests/v1"
fi
for d in $BLOBS; do
    expect_eq "the upstream was asked for app's blob ${d:7:12} once for docker, ctr and podman" \
        "$(dist_gets "/v2/library/app/blobs/$d")" 1
done
for d in $ARCH_BLOBS; do
    expect_eq "the upstream was asked for multi's blob ${d:7:12} once for docker, ctr and podman" \
        "$(dist_gets "/v2/library/multi/blobs/$d")" 1
done

# --- the upstream stopped: both pull from the cache ------------------------------------
dist_stop
check "docker rmi the app image" dk rmi -f "$CFG"
if check "with the upstream stopped, docker pull app:v1" dk pull app:v1; then
    expect_eq "its image ID is the config digest" \
        "$(dk image inspect --format '{{.Id}}' app:v1 2>/dev/null)" "$CFG"
fi
if check "with the upstream stopped, ctr images pull --hosts-dir $IMG (new namespace)" \
    ct -n cached images pull --hosts-dir "$HOSTS" "$IMG"; then
    expect_eq "its manifest digest" "$(image_digest cached "$IMG")" "$DIGEST"
    # shellcheck disable=SC2086
    ctr_blobs_ok "its blobs hash to their digests" cached $DIGEST $BLOBS
fi

check "podman rmi app:v1" pmm "$PM_CONF" rmi "$IMG"
pm_pulled "with the upstream stopped, podman pull docker.io/library/app:v1 (registries.conf mirror)" \
    "$PM_CONF" "$IMG" "$CFG"

ctrd_stop
dockerd_stop
registry_log_check
registry_stop "$REG_PID"
finish
