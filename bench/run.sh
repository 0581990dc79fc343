#!/bin/bash
# make bench: our registry against Debian's docker-registry (CNCF
# Distribution 2.8), side by side in one run, each on a free 127.0.0.1 port
# with its own temporary root. Prints a table (median of BENCH_REPS runs) and
# writes it to bench/results/latest.md. Figures only: never a pass/fail test.
#
# Environment:
#   BENCH_SIZE_MB      big blob size in MiB (default 1024); the chunked blob
#                      is a quarter of it (256 MiB by default); the image of
#                      the concurrent pull has 8 layers of BENCH_SIZE_MB/8
#                      MiB each, at most 25 and at least 1 (200 MiB by default)
#   BENCH_REPS         runs per figure, median reported (default 3)
#   BENCH_SMALL_COUNT  small blobs per run (default 1000, 4 KiB each)
#   BENCH_CONC         parallel connections for the small-blob runs (default 4)
#   BENCH_TIMEOUT      whole-run limit in seconds (default 3600)
#   REGISTRY_BIN       our server (default build/registry)
#   DISTRIBUTION_BIN   Distribution (default /usr/bin/docker-registry)
#   TMPDIR             where the temporary roots go (needs about 11x BENCH_SIZE_MB MiB,
#                      plus 3x the image, free)
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

SIZE_MB=${BENCH_SIZE_MB:-1024}
REPS=${BENCH_REPS:-3}
SMALL_N=${BENCH_SMALL_COUNT:-1000}
CONC=${BENCH_CONC:-4}
LIMIT=${BENCH_TIMEOUT:-3600}
SMALL_SIZE=4096
PULL_CLIENTS=32  # concurrent pull: clients, each on its own connection
LAYERS=8         # layers of the pulled image
ours_bin=${REGISTRY_BIN:-$top/build/registry}
dist_bin=${DISTRIBUTION_BIN:-/usr/bin/docker-registry}

prog=bench
# shellcheck source=lib.sh
. "$here/lib.sh"

check_args SIZE_MB REPS SMALL_N CONC LIMIT
[ "$SMALL_N" -le 100000 ] || die "BENCH_SMALL_COUNT at most 100000"
under_timeout "$@"
need_tools curl python3 sha256sum awk getconf
[ -x "$ours_bin" ] || die "$ours_bin not found (run make first)"
install_distribution

CH_MB=$((SIZE_MB / 4))
[ "$CH_MB" -ge 1 ] || CH_MB=1
CHUNK_MB=16
while [ $((CHUNK_MB * 4)) -gt "$CH_MB" ] && [ "$CHUNK_MB" -gt 1 ]; do CHUNK_MB=$((CHUNK_MB / 2)); done
BIG_BYTES=$((SIZE_MB * 1048576))
CH_BYTES=$((CH_MB * 1048576))
MAXT=$((60 + SIZE_MB))  # curl --max-time for one big transfer (>= 1 MB/s)
image_sizes
PULL_MAXT=$((120 + PULL_CLIENTS * IMG_MB / 10))  # the whole pull (>= 10 MB/s in all)
clk_tck

work=$(mktemp -d "${TMPDIR:-/tmp}/regbench.XXXXXX") || die "mktemp failed"
ours_pid=
dist_pid=
child=

cleanup_pids="ours_pid dist_pid"
set_traps

now_ns() { date +%s%N; }

# Disk: sources (3 big + 3 chunked + small + image) and two servers holding a copy.
need_mb=$(((REPS * (SIZE_MB + CH_MB) + IMG_MB) * 3 + 200))
need_space "$need_mb"

# ---------------------------------------------------------------- servers
mkdir -p "$work/ours" "$work/dist" "$work/src" "$work/tmp"
cat >"$work/ours/registry.conf" <<EOC
[storage]
delete = true
[log]
level = warn
EOC
spawn_ours

dist_port=$(free_port) || die "no free port"
cat >"$work/dist/config.yml" <<EOC
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $work/dist/root
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$dist_port
  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d " \n")
EOC
"$dist_bin" serve "$work/dist/config.yml" >"$work/dist/log" 2>&1 &
dist_pid=$!

wait_servers
versions
echo "bench: ours: $ours_ver (pid $ours_pid, ${ours_base#http://}); distribution $dist_ver (pid $dist_pid, 127.0.0.1:$dist_port)"

# ---------------------------------------------------------------- results
declare -A RUNS  # "metric srv" -> space-separated values (or FAIL)
declare -A DEAD  # srv -> 1 once the server is gone
NOTES=()
failures=0

rss_mib() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }
rss_samples() { # METRIC: each server's VmRSS, three samples a second apart after 2 s
    local i s
    sleep 2
    for i in $(seq 1 3); do
        for s in $SERVERS; do
            alive "$s" "$1" && record "$1" "$s" "$(rss_mib "$(pid_of "$s")" VmRSS)"
        done
        sleep 1
    done
}
# Each server sees the same request sequence; the order alternates per run
# (order in lib.sh).

# ---------------------------------------------------------------- data
echo "bench: generating test data (${REPS}x ${SIZE_MB} MiB, ${REPS}x ${CH_MB} MiB, ${REPS}x2x ${SMALL_N} x 4 KiB, ${LAYERS} x ${LAYER_MB} MiB layers)"
declare -A BIG_D
for r in $(seq 1 "$REPS"); do
    run head -c "$BIG_BYTES" /dev/urandom >"$work/src/big.$r" || die "generating data failed"
    BIG_D[$r]=sha256:$(sha256sum "$work/src/big.$r" | cut -d' ' -f1)
    run head -c "$CH_BYTES" /dev/urandom >"$work/src/chunk.$r" || die "generating data failed"
done
# Small blobs: set m$r (monolithic POST, ours only) and p$r (POST+PUT, both).
cat >"$work/tmp/gen.py" <<'EOF'
import hashlib, os, sys
root, reps, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for r in range(1, reps + 1):
    for kind in ("m", "p"):
        d = os.path.join(root, f"small.{kind}{r}")
        os.makedirs(d)
        with open(d + ".list", "w") as idx:
            for i in range(n):
                b = os.urandom(size)
                with open(os.path.join(d, str(i)), "wb") as f:
                    f.write(b)
                idx.write(f"sha256:{hashlib.sha256(b).hexdigest()} {d}/{i}\n")
EOF
run python3 "$work/tmp/gen.py" "$work/src" "$REPS" "$SMALL_N" "$SMALL_SIZE" || die "generating small blobs failed"
# The image of the concurrent pull: distinct random layers, pushed once to
# each server (below, after the idle RSS samples) and pulled in every run.
LAYER_FILES=()
for i in $(seq 1 "$LAYERS"); do
    run head -c $((LAYER_MB * 1048576)) /dev/urandom >"$work/src/layer.$i" || die "generating data failed"
    LAYER_FILES+=("$work/src/layer.$i")
done

# ---------------------------------------------------------------- measurements
# RSS at idle: three samples a second apart, after a short settle.
rss_samples rss_idle

big_push() { # SRV REP: push_big_blob and big_head_check in lib.sh
    local s=$1 r=$2
    alive "$s" push_big || return
    quiesce
    push_big_blob "$s" "$r" || return
    record push_big "$s" "$(calc "$BIG_BYTES / 1e6 / $PUSH_T")"
    big_head_check "$s" "$r"
}

# big_get (lib.sh) flushes before its GET and does nothing after it.
step_open() { quiesce; }
step_close() { :; }

chunked() { # SRV REP
    local s=$1 r=$2 base t n
    base=$(base_of "$s")
    alive "$s" chunked || return
    quiesce
    if ! run timeout "$MAXT" python3 "$here/client.py" chunked "${base#http://}" "bench/chunk$r" \
        "$work/src/chunk.$r" $((CHUNK_MB * 1048576)) >"$work/tmp/out" 2>"$work/tmp/err"; then
        fail chunked "$s" "$(tail -1 "$work/tmp/err")"
        return
    fi
    read -r t n <"$work/tmp/out"
    record chunked "$s" "$(calc "$n / 1e6 / $t")"
}

# Concurrent pull: PULL_CLIENTS processes (bench/pull.py), each on its own
# connection, pull the whole image at once. The figure is all their bytes over
# the wall time from the start signal to the last client's end; the server's
# CPU is read before and after the pull.py process.
declare -A IMG_D  # srv -> manifest digest of the image pushed to it
push_image() { # SRV: untimed
    local s=$1 base d
    base=$(base_of "$s")
    alive "$s" pull || return
    if ! run timeout "$PULL_MAXT" python3 "$here/pull.py" push "${base#http://}" bench/image v1 \
        "${LAYER_FILES[@]}" >"$work/tmp/out" 2>"$work/tmp/err"; then
        fail pull "$s" "pushing the image: $(tail -1 "$work/tmp/err")"
        return
    fi
    read -r d _ <"$work/tmp/out"
    IMG_D[$s]=$d
}
image_pull() { # SRV REP
    local s=$1 base t n c0 c1
    base=$(base_of "$s")
    alive "$s" pull || return
    [ -n "${IMG_D[$s]:-}" ] || { record pull "$s" FAIL; return; }  # push failed
    quiesce
    c0=$(cpu_ticks "$(pid_of "$s")")
    if ! run timeout "$PULL_MAXT" python3 "$here/pull.py" pull "${base#http://}" bench/image v1 \
        "$PULL_CLIENTS" "${IMG_D[$s]}" >"$work/tmp/out" 2>"$work/tmp/err"; then
        fail pull "$s" "$(tail -1 "$work/tmp/err")"
        return
    fi
    c1=$(cpu_ticks "$(pid_of "$s")")
    read -r t n <"$work/tmp/out"
    record pull "$s" "$(calc "$n / 1e6 / $t")"
    [ -n "$c0" ] && [ -n "$c1" ] && record pull_cpu "$s" "$(calc "($c1 - $c0) / $CLK_TCK" 3)"
}

# Small blobs: curl --parallel over CONC keep-alive connections, one curl
# process for the whole batch; the clock is the wall time of that process.
CURLP=(curl --no-progress-meter --parallel --parallel-immediate --parallel-max "$CONC")
cfg_group() { # URL [curl config lines...] -> one config group
    printf 'url = "%s"\noutput = "/dev/null"\nsilent\nshow-error\nmax-time = 60\n' "$1"
    shift
    printf '%s\n' "$@"
}
batch() { # CFG OUT -> sets BT (seconds); fails if curl fails
    local t0 t1
    t0=$(now_ns)
    run "${CURLP[@]}" -K "$1" >"$2" 2>"$work/tmp/err" || true
    t1=$(now_ns)
    BT=$(calc "($t1 - $t0) / 1e9" 6)
}
check_codes() { # FILE WANT -> "" if SMALL_N lines all WANT, else a summary
    local bad
    bad=$(awk -v w="$2" -v n="$SMALL_N" '$1 == w { ok++ } $1 != w { c[$1]++ }
        END { if (ok != n) { printf "%d/%d HTTP %s;", ok, n, w; for (k in c) printf " %d x HTTP %s", c[k], k } }' "$1")
    [ -z "$bad" ] || echo "$bad $(head -c 200 "$work/tmp/err" | tr '\n' ' ')"
}

small_post() { # SRV REP: monolithic POST ?digest= (ours; Distribution does not store the body)
    local s=$1 r=$2 base bad
    base=$(base_of "$s")
    alive "$s" small_post || return
    while read -r d f; do
        cfg_group "$base/v2/bench/small$r/blobs/uploads/?digest=$d" 'request = "POST"' \
            "data-binary = \"@$f\"" 'header = "Content-Type: application/octet-stream"' \
            'write-out = "%{http_code}\n"'
        echo next
    done <"$work/src/small.m$r.list" | sed '$d' >"$work/tmp/post.cfg"
    quiesce
    batch "$work/tmp/post.cfg" "$work/tmp/codes"
    bad=$(check_codes "$work/tmp/codes" 201)
    [ -z "$bad" ] || { fail small_post "$s" "$bad"; return; }
    record small_post "$s" "$(calc "$SMALL_N / $BT" 0)"
}

small_postput() { # SRV REP: POST a session, PUT ?digest= with the body
    local s=$1 r=$2 base bad ta i
    base=$(base_of "$s")
    alive "$s" small_postput || return
    for i in $(seq 1 "$SMALL_N"); do
        [ "$i" -gt 1 ] && echo next
        cfg_group "$base/v2/bench/small$r/blobs/uploads/" 'request = "POST"' \
            'header = "Content-Length: 0"' 'write-out = "%{http_code} %header{location}\n"'
    done >"$work/tmp/sess.cfg"
    quiesce
    # Phase 1: SMALL_N sessions; phase 2: one PUT per session (sessions are
    # interchangeable). The figure is all requests over both phases' time.
    batch "$work/tmp/sess.cfg" "$work/tmp/locs"
    ta=$BT
    bad=$(check_codes "$work/tmp/locs" 202)
    [ -z "$bad" ] || { fail small_postput "$s" "POST session: $bad"; return; }
    paste -d' ' "$work/tmp/locs" "$work/src/small.p$r.list" | while read -r _ loc d f; do
        cfg_group "$(with_digest "$(absolute "$loc" "$base")" "$d")" 'request = "PUT"' \
            "data-binary = \"@$f\"" 'header = "Content-Type: application/octet-stream"' \
            'write-out = "%{http_code}\n"'
        echo next
    done | sed '$d' >"$work/tmp/put.cfg"
    batch "$work/tmp/put.cfg" "$work/tmp/codes"
    bad=$(check_codes "$work/tmp/codes" 201)
    [ -z "$bad" ] || { fail small_postput "$s" "PUT: $bad"; return; }
    record small_postput "$s" "$(calc "2 * $SMALL_N / ($ta + $BT)" 0)"
}

small_head() { # SRV REP: HEAD each blob pushed by small_postput
    local s=$1 r=$2 base bad
    base=$(base_of "$s")
    alive "$s" small_head || return
    while read -r d _; do
        cfg_group "$base/v2/bench/small$r/blobs/$d" 'head' 'write-out = "%{http_code}\n"'
        echo next
    done <"$work/src/small.p$r.list" | sed '$d' >"$work/tmp/head.cfg"
    quiesce
    batch "$work/tmp/head.cfg" "$work/tmp/codes"
    bad=$(check_codes "$work/tmp/codes" 200)
    [ -z "$bad" ] || { fail small_head "$s" "$bad"; return; }
    record small_head "$s" "$(calc "$SMALL_N / $BT" 0)"
}

echo "bench: pushing the ${IMG_MB} MiB image for the concurrent pull (untimed)"
for s in $SERVERS; do push_image "$s"; done

t_start=$(date +%s)
for r in $(seq 1 "$REPS"); do
    echo "bench: run $r/$REPS: ${SIZE_MB} MiB push + GET"
    for s in $(order "$r"); do big_push "$s" "$r"; big_get "$s" "$r"; done
done
for r in $(seq 1 "$REPS"); do
    echo "bench: run $r/$REPS: ${CH_MB} MiB chunked upload"
    for s in $(order "$r"); do chunked "$s" "$r"; done
done
for r in $(seq 1 "$REPS"); do
    echo "bench: run $r/$REPS: ${PULL_CLIENTS} clients pulling a ${IMG_MB} MiB image at once"
    for s in $(order "$r"); do image_pull "$s" "$r"; done
done
for r in $(seq 1 "$REPS"); do
    echo "bench: run $r/$REPS: ${SMALL_N} x 4 KiB blobs"
    for s in $(order "$r"); do
        if [ "$s" = ours ]; then small_post "$s" "$r"; fi
        small_postput "$s" "$r"
        small_head "$s" "$r"
    done
done
t_end=$(date +%s)

# RSS after the workload: three samples a second apart; peak from VmHWM.
rss_samples rss_after
for s in $SERVERS; do
    alive "$s" rss_peak && record rss_peak "$s" "$(rss_mib "$(pid_of "$s")" VmHWM)"
done

# ---------------------------------------------------------------- report
METRICS="push_big get_big get_big_cpu chunked pull pull_cpu small_post small_postput small_head rss_idle rss_after rss_peak"
label() {
    case $1 in
    push_big) echo "push ${SIZE_MB} MiB blob, MB/s (ours: POST ?digest=; distribution: POST + PUT)" ;;
    get_big) echo "GET ${SIZE_MB} MiB blob to /dev/null, MB/s" ;;
    get_big_cpu) echo "GET ${SIZE_MB} MiB blob, server CPU-s per GiB" ;;
    pull) echo "pull by ${PULL_CLIENTS} clients at once, ${LAYERS} x ${LAYER_MB} MiB layers, MB/s in all" ;;
    pull_cpu) echo "pull by ${PULL_CLIENTS} clients at once, server CPU-s" ;;
    chunked) echo "chunked upload ${CH_MB} MiB (${CHUNK_MB} MiB PATCHes + PUT), MB/s" ;;
    small_post) echo "push ${SMALL_N} x 4 KiB, monolithic POST, req/s" ;;
    small_postput) echo "push ${SMALL_N} x 4 KiB, POST + PUT, req/s" ;;
    small_head) echo "HEAD ${SMALL_N} x 4 KiB, req/s" ;;
    rss_idle) echo "RSS idle after start, MiB" ;;
    rss_after) echo "RSS after the workload, MiB" ;;
    rss_peak) echo "peak RSS (VmHWM), MiB" ;;
    esac
}
decimals() { case $1 in small_*) echo 0 ;; *_cpu) echo 2 ;; *) echo 1 ;; esac; }
# Direction: memory and CPU rows are lower-is-better, all others higher.
better() {
    case $1 in
    rss_*) echo "lower: ratio < 1 is ours smaller" ;;
    *_cpu) echo "lower: ratio < 1 is ours cheaper" ;;
    *) echo "higher: ratio > 1 is ours faster" ;;
    esac
}

{
    echo "# Registry benchmark: ours vs Distribution"
    echo
    host_line
    echo "ours: $ours_ver; distribution: docker-registry $dist_ver (Debian)."
    echo "BENCH_SIZE_MB=$SIZE_MB, median of $REPS runs, small blobs over $CONC connections; workload took $((t_end - t_start)) s."
    echo "MB/s = 10^6 bytes per second. CPU-s = the server process's user + system time (/proc/PID/stat, 1/${CLK_TCK} s ticks). Ratio = ours / distribution."
    echo
    echo "| metric | ours | distribution | ratio | better |"
    echo "|---|---:|---:|---:|---|"
    for m in $METRICS; do
        if [ "$m" = small_post ]; then metric_row "$m" n/a; else metric_row "$m"; fi
    done
    echo
    echo "Distribution 2.8 answers a monolithic POST with 202 and stores nothing, so it"
    echo "has no figure for that row; its push uses POST + PUT (both requests timed)."
    echo
    echo "## Runs"
    echo
    for m in $METRICS; do
        echo "- $m: ours ${RUNS["$m ours"]:-none}; distribution ${RUNS["$m dist"]:-n/a}"
    done
    problems
    server_logs
} >"$work/report.md"

finish latest.md
