#!/bin/bash
# make bench-cache (also run by make bench, after run.sh): the pull-through
# cache. Debian's docker-registry (CNCF Distribution 2.8) is the upstream, on a
# free 127.0.0.1 port with filesystem storage and its access log on; the image
# of run.sh's concurrent pull (8 random layers) is pushed to it untimed. Then,
# in each of BENCH_REPS runs, every cache starting empty (a new temporary root):
#   direct   the image pulled straight from the upstream, by 1 client and by
#            BENCH_CACHE_CLIENTS clients at once;
#   ours     our registry with [proxy.up] url=<upstream> prefix=mirror: the
#            first (cold) and the second (warm) pull of mirror/<name> by 1
#            client; then on a new empty root the cold pull by
#            BENCH_CACHE_CLIENTS clients at once;
#   dist     Distribution 2.8 as a pull-through cache (proxy: remoteurl:), the
#            same three pulls of <name>.
# The upstream's access log gives the requests each pull made of it; ours must
# ask for each blob exactly once per cold pull, also with concurrent clients,
# and not at all in the warm pull. Prints a table (medians) and writes it to
# bench/results/cache.md. Figures only, never a pass/fail test on timing.
#
# Environment:
#   BENCH_SIZE_MB        the image has 8 layers of BENCH_SIZE_MB/8 MiB each,
#                        at most 25 and at least 1 (200 MiB by default), as in run.sh
#   BENCH_REPS           runs per figure, median reported (default 3)
#   BENCH_CACHE_CLIENTS  clients of the concurrent pulls (default 8)
#   BENCH_TIMEOUT        whole-run limit in seconds (default 3600)
#   REGISTRY_BIN         our server (default build/registry)
#   DISTRIBUTION_BIN     Distribution (default /usr/bin/docker-registry)
#   TMPDIR               where data and roots go (needs about 3x the image free)
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

SIZE_MB=${BENCH_SIZE_MB:-1024}
REPS=${BENCH_REPS:-3}
CLIENTS=${BENCH_CACHE_CLIENTS:-8}
LIMIT=${BENCH_TIMEOUT:-3600}
LAYERS=8   # layers of the pulled image, as in run.sh
NBLOBS=$((LAYERS + 1))  # with the config
UP_REPO=bench/image     # on the upstream and in Distribution's cache
MIRROR=mirror           # our proxy's prefix
ours_bin=${REGISTRY_BIN:-$top/build/registry}
dist_bin=${DISTRIBUTION_BIN:-/usr/bin/docker-registry}

prog=bench-cache
# shellcheck source=lib.sh
. "$here/lib.sh"

check_args SIZE_MB REPS CLIENTS LIMIT
[ "$CLIENTS" -le 64 ] || die "BENCH_CACHE_CLIENTS at most 64"
under_timeout "$@"
need_tools curl python3 awk
[ -x "$ours_bin" ] || die "$ours_bin not found (run make first)"
[ -x "$dist_bin" ] || die "$dist_bin missing; run: sudo apt-get install docker-registry (make bench does)"

image_sizes
PULL_MAXT=$((120 + CLIENTS * IMG_MB / 10))  # one pull (>= 10 MB/s in all)

work=$(mktemp -d "${TMPDIR:-/tmp}/regbench-cache.XXXXXX") || die "mktemp failed"
up_pid=
cache_pid=
child=

cleanup_pids="cache_pid up_pid"
set_traps

# Disk: the layers, the upstream's copy, one cache's copy, and room.
need_mb=$((IMG_MB * 3 + 200))
need_space "$need_mb"

# ---------------------------------------------------------------- servers
# Servers get a clean environment: both read REGISTRY_* as configuration.
clean_env=(env -i PATH="$PATH" HOME="${HOME:-/}" TMPDIR="$work/tmp")
mkdir -p "$work/src" "$work/tmp"

# dist_start DIR LEVEL [REMOTEURL]: Distribution on a free port with its root,
# config and log in DIR; the access log only at level info (the upstream).
# Sets DIST_PID and DIST_ADDR; a port that turns out to be taken is tried again.
dist_start() {
    local dir=$1 level=$2 remote=${3:-} port
    mkdir -p "$dir"
    DIST_PID=
    DIST_ADDR=
    for _ in 1 2 3 4 5; do
        port=$(free_port) || return 1
        {
            echo "version: 0.1"
            echo "log:"
            echo "  level: $level"
            [ "$level" = info ] || printf '  accesslog:\n    disabled: true\n'
            echo "storage:"
            echo "  cache:"
            echo "    blobdescriptor: inmemory"
            echo "  filesystem:"
            echo "    rootdirectory: $dir/root"
            echo "  delete:"
            echo "    enabled: true"
            echo "http:"
            echo "  addr: 127.0.0.1:$port"
            echo "  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
            [ -z "$remote" ] || printf 'proxy:\n  remoteurl: %s\n' "$remote"
        } >"$dir/config.yml"
        "${clean_env[@]}" "$dist_bin" serve "$dir/config.yml" </dev/null >>"$dir/log" 2>&1 &
        DIST_PID=$!
        for _ in $(seq 1 100); do
            kill -0 "$DIST_PID" 2>/dev/null || break
            if curl -fs -o /dev/null --max-time 2 "http://127.0.0.1:$port/v2/"; then
                DIST_ADDR=127.0.0.1:$port
                return 0
            fi
            sleep 0.1
        done
        stop_pid "$DIST_PID"
        DIST_PID=
    done
    tail -5 "$dir/log" >&2
    return 1
}

# ours_start DIR: our registry, a pull-through cache of the upstream under
# mirror/, on a free port with an empty root in DIR. Sets OURS_PID, OURS_ADDR.
ours_start() {
    local dir=$1
    mkdir -p "$dir"
    OURS_PID=
    OURS_ADDR=
    printf '[log]\nlevel = warn\n[proxy.up]\nurl = http://%s\nprefix = %s\n' \
        "$UP_ADDR" "$MIRROR" >"$dir/registry.conf"
    "${clean_env[@]}" "$ours_bin" serve --config "$dir/registry.conf" --listen 127.0.0.1:0 \
        --root "$dir/root" --ready-file "$dir/ready" </dev/null >>"$dir/log" 2>&1 &
    OURS_PID=$!
    for _ in $(seq 1 100); do
        kill -0 "$OURS_PID" 2>/dev/null || break
        if [ -s "$dir/ready" ]; then
            OURS_ADDR=$(cat "$dir/ready")
            curl -fs -o /dev/null --max-time 2 "http://$OURS_ADDR/v2/" && return 0
        fi
        sleep 0.1
    done
    tail -5 "$dir/log" >&2
    stop_pid "$OURS_PID"
    OURS_PID=
    return 1
}

# cache_start SRV: a cache (ours or dist) with a new empty root. Sets
# cache_pid, CACHE_ADDR, CACHE_REPO, CACHE_DIR.
cache_seq=0
cache_start() {
    cache_seq=$((cache_seq + 1))
    CACHE_DIR=$work/$1.$cache_seq
    if [ "$1" = ours ]; then
        ours_start "$CACHE_DIR" || return 1
        cache_pid=$OURS_PID CACHE_ADDR=$OURS_ADDR CACHE_REPO=$MIRROR/$UP_REPO
    else
        dist_start "$CACHE_DIR" warn "http://$UP_ADDR" || return 1
        cache_pid=$DIST_PID CACHE_ADDR=$DIST_ADDR CACHE_REPO=$UP_REPO
    fi
}
cache_stop() { # the log is kept for the report, the root removed
    stop_pid "$cache_pid"
    cache_pid=
    rm -rf "$CACHE_DIR/root"
}

up_log=$work/up/log
dist_start "$work/up" info || die "docker-registry (the upstream) did not start"
up_pid=$DIST_PID
UP_ADDR=$DIST_ADDR

versions
echo "bench-cache: ours $ours_ver; upstream and second cache: distribution $dist_ver (upstream pid $up_pid, $UP_ADDR)"

# ---------------------------------------------------------------- the image
echo "bench-cache: generating and pushing the image (${LAYERS} x ${LAYER_MB} MiB layers, untimed)"
LAYER_FILES=()
for i in $(seq 1 "$LAYERS"); do
    run head -c $((LAYER_MB * 1048576)) /dev/urandom >"$work/src/layer.$i" || die "generating data failed"
    LAYER_FILES+=("$work/src/layer.$i")
done
run timeout "$PULL_MAXT" python3 "$here/pull.py" push "$UP_ADDR" "$UP_REPO" v1 "${LAYER_FILES[@]}" \
    >"$work/tmp/out" 2>"$work/tmp/err" || die "pushing the image to the upstream: $(tail -1 "$work/tmp/err")"
read -r IMG_D _ <"$work/tmp/out"
rm -f "${LAYER_FILES[@]}"  # the upstream has them; the pulls check sizes and the manifest digest

# ---------------------------------------------------------------- results
declare -A RUNS  # "metric row" -> space-separated values (or FAIL)
NOTES=()
failures=0

problem() { failures=$((failures + 1)); NOTES+=("$1"); echo "bench-cache: FAIL $1" >&2; }

# Wait until the upstream's log has not grown for a second (at most 60 s):
# a cache may still be storing what it fetched after its client is done.
settle() {
    local a b i
    a=$(wc -l <"$up_log")
    for i in $(seq 1 60); do
        sleep 1
        b=$(wc -l <"$up_log")
        [ "$a" = "$b" ] && return 0
        a=$b
    done
}

# Requests made of the upstream since line FROM of its log, from the access
# log's lines ("GET /v2/REPO/blobs/sha256:... HTTP/1.1" ...): "GETS HEADS
# MANIFESTS MIN MAX DISTINCT": blob GETs, blob HEADs, manifest GETs and
# HEADs, and the fewest and most GETs of one blob over the DISTINCT blobs got.
up_count() {
    tail -n +$(($1 + 1)) "$up_log" | awk -v r="/v2/$UP_REPO/" '
        index($0, "\"GET " r "blobs/") { g++; split(substr($0, index($0, "\"GET " r "blobs/")), a, " ")
                                         n[a[2]]++ }
        index($0, "\"HEAD " r "blobs/") { h++ }
        index($0, "\"GET " r "manifests/") || index($0, "\"HEAD " r "manifests/") { m++ }
        END { min = -1; max = 0; d = 0
              for (k in n) { d++; if (min < 0 || n[k] < min) min = n[k]; if (n[k] > max) max = n[k] }
              if (min < 0) min = 0
              printf "%d %d %d %d %d %d\n", g, h, m, min, max, d }'
}

# pull ROW ADDR REPO CLIENTS: one timed pull by bench/pull.py (CLIENTS
# processes, each on its own connection, all started together; every status
# 200, every body its descriptor's size, the manifest the one pushed). Records
# seconds, MB/s (all clients' bytes) and the upstream's requests; sets GETS,
# MIN, MAX, DISTINCT for the caller's checks. Returns 1 if the pull failed.
pull() {
    local row=$1 addr=$2 repo=$3 n=$4 mark t bytes heads man m
    quiesce
    mark=$(wc -l <"$up_log")
    if ! run timeout "$PULL_MAXT" python3 "$here/pull.py" pull "$addr" "$repo" v1 "$n" "$IMG_D" \
        >"$work/tmp/out" 2>"$work/tmp/err"; then
        for m in s mbs gets heads man; do record "$m" "$row" FAIL; done
        problem "$row: $(tail -1 "$work/tmp/err")"
        return 1
    fi
    read -r t bytes <"$work/tmp/out"
    settle
    read -r GETS heads man MIN MAX DISTINCT < <(up_count "$mark")
    record s "$row" "$(calc "$t" 3)"
    record mbs "$row" "$(calc "$bytes / 1e6 / $t")"
    record gets "$row" "$GETS"
    record heads "$row" "$heads"
    record man "$row" "$man"
    return 0
}

# Ours must ask the upstream for every blob exactly WANT times (0 or 1).
check_ours() { # ROW WANT
    local ok=1
    if [ "$2" = 0 ]; then
        [ "$GETS" = 0 ] || ok=0
    else
        [ "$GETS" = "$NBLOBS" ] && [ "$DISTINCT" = "$NBLOBS" ] && [ "$MAX" = 1 ] || ok=0
    fi
    [ $ok = 1 ] || problem "$1: $GETS upstream blob GETs over $DISTINCT blobs (each $MIN to $MAX times); want $(($2 * NBLOBS)), $2 per blob"
}

cache_runs() { # SRV
    local s=$1
    if ! cache_start "$s"; then
        problem "$s cache did not start"
        return
    fi
    if pull "$s.cold" "$CACHE_ADDR" "$CACHE_REPO" 1; then
        [ "$s" = ours ] && check_ours "$s.cold" 1
        pull "$s.warm" "$CACHE_ADDR" "$CACHE_REPO" 1 && [ "$s" = ours ] && check_ours "$s.warm" 0
    fi
    kill -0 "$cache_pid" 2>/dev/null || problem "$s cache exited: $(tail -3 "$CACHE_DIR/log" | tr '\n' ' ')"
    cache_stop
    if ! cache_start "$s"; then
        problem "$s cache did not start"
        return
    fi
    pull "$s.coldN" "$CACHE_ADDR" "$CACHE_REPO" "$CLIENTS" && [ "$s" = ours ] && check_ours "$s.coldN" 1
    kill -0 "$cache_pid" 2>/dev/null || problem "$s cache exited: $(tail -3 "$CACHE_DIR/log" | tr '\n' ' ')"
    cache_stop
}

# ---------------------------------------------------------------- measurements
t_start=$(date +%s)
for r in $(seq 1 "$REPS"); do
    echo "bench-cache: run $r/$REPS: direct, then through each cache from empty (${IMG_MB} MiB image; 1 and ${CLIENTS} clients)"
    pull direct "$UP_ADDR" "$UP_REPO" 1
    pull directN "$UP_ADDR" "$UP_REPO" "$CLIENTS"
    for s in $(order "$r"); do cache_runs "$s"; done
    kill -0 "$up_pid" 2>/dev/null || die "the upstream exited: $(tail -3 "$up_log" | tr '\n' ' ')"
done
t_end=$(date +%s)

# ---------------------------------------------------------------- report
med() { median "${RUNS["$1 $2"]:-}"; }

ROWS="direct ours.cold ours.warm dist.cold dist.warm directN ours.coldN dist.coldN"
label() {
    case $1 in
    direct) echo "direct from the upstream, 1 client" ;;
    ours.cold) echo "ours: first (cold) pull, 1 client" ;;
    ours.warm) echo "ours: second (warm) pull, 1 client" ;;
    dist.cold) echo "distribution: first (cold) pull, 1 client" ;;
    dist.warm) echo "distribution: second (warm) pull, 1 client" ;;
    directN) echo "direct from the upstream, $CLIENTS clients at once" ;;
    ours.coldN) echo "ours: first (cold) pull, $CLIENTS clients at once" ;;
    dist.coldN) echo "distribution: first (cold) pull, $CLIENTS clients at once" ;;
    esac
}
base_row() { case $1 in *N) echo directN ;; *) echo direct ;; esac; }

{
    echo "# Pull-through cache benchmark"
    echo
    host_line
    echo "ours: $ours_ver; upstream and the second cache: docker-registry $dist_ver (Debian), filesystem storage."
    echo "Image: ${LAYERS} random layers of ${LAYER_MB} MiB, a config and an OCI manifest (${IMG_MB} MiB, ${NBLOBS} blobs); median of $REPS runs; workload took $((t_end - t_start)) s."
    echo "Every cache starts empty for each first pull; the second pull follows the first on the same cache."
    echo "MB/s = 10^6 bytes per second, all clients' bytes over the wall time of the pull."
    echo "x direct = seconds / seconds of the direct pull by as many clients (1.00: as fast as pulling from the upstream; 2.00: twice as long)."
    echo "Upstream requests are counted in the upstream's access log; a blob GET row of ${NBLOBS} per pull is one GET per blob."
    echo
    echo "| pull | seconds | MB/s | x direct | upstream blob GETs | upstream blob HEADs | upstream manifest GETs+HEADs |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    for row in $ROWS; do
        sec=$(med s "$row")
        bsec=$(med s "$(base_row "$row")")
        ratio=n/a
        case "$sec $bsec" in *FAIL*) ;; *) awk "BEGIN { exit !($bsec > 0) }" && ratio=$(calc "$sec / $bsec" 2) ;; esac
        echo "| $(label "$row") | $(fmt "$sec" 2) | $(fmt "$(med mbs "$row")" 1) | $ratio |" \
            "$(fmt "$(med gets "$row")" 0) | $(fmt "$(med heads "$row")" 0) | $(fmt "$(med man "$row")" 0) |"
    done
    echo
    echo "## Runs"
    echo
    for row in $ROWS; do
        echo "- $row: seconds ${RUNS["s $row"]:-none}; MB/s ${RUNS["mbs $row"]:-none};" \
            "upstream blob GETs ${RUNS["gets $row"]:-none}, blob HEADs ${RUNS["heads $row"]:-none}, manifest requests ${RUNS["man $row"]:-none}"
    done
    problems
    # Distribution warns at every start in proxy mode that it cannot delete
    # repositories; that line is left out.
    for f in "$work"/ours.*/log "$work"/dist.*/log; do
        grep -v 'does not implement RempositoryRemover' "$f" >"$work/tmp/log" 2>/dev/null
        [ -s "$work/tmp/log" ] || continue
        echo
        echo "## $(basename "$(dirname "$f")") log ($(wc -l <"$work/tmp/log") lines at warn level or above; last 5)"
        echo
        echo '```'
        tail -5 "$work/tmp/log" | cut -c1-300
        echo '```'
    done
} >"$work/report.md"

finish cache.md
