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
# shellcheck disable=SC2317  # stop_pid and cleanup are reached from traps
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

die() { echo "bench: $*" >&2; exit 1; }

for v in SIZE_MB REPS SMALL_N CONC LIMIT; do
    case ${!v} in
    '' | *[!0-9]* | 0*) die "$v must be a positive integer (got '${!v}')" ;;
    esac
done
[ "$SIZE_MB" -le 65536 ] || die "BENCH_SIZE_MB too large"
[ "$REPS" -le 15 ] || die "BENCH_REPS at most 15"
[ "$SMALL_N" -le 100000 ] || die "BENCH_SMALL_COUNT at most 100000"

# The whole run is bounded: re-run this script under timeout(1). SIGTERM
# from it goes through the trap below, which stops the servers.
if [ -z "${BENCH_UNDER_TIMEOUT:-}" ] && command -v timeout >/dev/null; then
    BENCH_UNDER_TIMEOUT=1 exec timeout --foreground -k 60 "$LIMIT" bash "$0" "$@"
fi

for tool in curl python3 sha256sum awk getconf; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
[ -x "$ours_bin" ] || die "$ours_bin not found (run make first)"

# Distribution: Debian's package. Install it if missing (as root).
if [ ! -x "$dist_bin" ]; then
    [ "$(id -u)" -eq 0 ] || die "$dist_bin missing; run: sudo apt-get install docker-registry"
    echo "bench: installing docker-registry"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends docker-registry >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-registry >/dev/null; } ||
        die "could not install docker-registry"
    [ -x "$dist_bin" ] || die "$dist_bin still missing after install"
    # The package may start its own service on :5000. It does not conflict
    # with the free ports used here, so it is left alone.
fi

CH_MB=$((SIZE_MB / 4))
[ "$CH_MB" -ge 1 ] || CH_MB=1
CHUNK_MB=16
while [ $((CHUNK_MB * 4)) -gt "$CH_MB" ] && [ "$CHUNK_MB" -gt 1 ]; do CHUNK_MB=$((CHUNK_MB / 2)); done
BIG_BYTES=$((SIZE_MB * 1048576))
CH_BYTES=$((CH_MB * 1048576))
MAXT=$((60 + SIZE_MB))  # curl --max-time for one big transfer (>= 1 MB/s)
LAYER_MB=$((SIZE_MB / LAYERS))
[ "$LAYER_MB" -le 25 ] || LAYER_MB=25
[ "$LAYER_MB" -ge 1 ] || LAYER_MB=1
IMG_MB=$((LAYERS * LAYER_MB))
PULL_MAXT=$((120 + PULL_CLIENTS * IMG_MB / 10))  # the whole pull (>= 10 MB/s in all)
CLK_TCK=$(getconf CLK_TCK)
case $CLK_TCK in '' | *[!0-9]* | 0) die "getconf CLK_TCK: '$CLK_TCK'" ;; esac

work=$(mktemp -d "${TMPDIR:-/tmp}/regbench.XXXXXX") || die "mktemp failed"
ours_pid=
dist_pid=
child=

stop_pid() { # PID: SIGTERM, then SIGKILL after 15 s; only this PID
    local p=$1 i
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2>/dev/null || { wait "$p" 2>/dev/null; return 0; }
    for i in $(seq 1 150); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}
cleanup() {
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
    stop_pid "$ours_pid"
    stop_pid "$dist_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT
trap 'echo "bench: terminated (BENCH_TIMEOUT=${LIMIT}s reached?)" >&2; exit 143' TERM

# Run a command in the background and wait for it, so that a signal reaches
# the trap at once; optional stdin file as first argument when it is "-i FILE".
run() {
    local rc
    if [ "$1" = -i ]; then
        local in=$2
        shift 2
        "$@" <"$in" &
    else
        "$@" </dev/null &
    fi
    child=$!
    wait "$child"
    rc=$?
    child=
    return $rc
}

now_ns() { date +%s%N; }

# Disk: sources (3 big + 3 chunked + small + image) and two servers holding a copy.
need_mb=$(((REPS * (SIZE_MB + CH_MB) + IMG_MB) * 3 + 200))
avail_mb=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
[ "$avail_mb" -ge "$need_mb" ] || die "need ${need_mb} MiB free in $(dirname "$work"), have ${avail_mb}"

# ---------------------------------------------------------------- servers
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

mkdir -p "$work/ours" "$work/dist" "$work/src" "$work/tmp"
cat >"$work/ours/registry.conf" <<EOC
[storage]
delete = true
[log]
level = warn
EOC
"$ours_bin" serve --config "$work/ours/registry.conf" --listen 127.0.0.1:0 \
    --root "$work/ours/root" --ready-file "$work/ours/ready" >"$work/ours/log" 2>&1 &
ours_pid=$!

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

ours_base=
dist_base=http://127.0.0.1:$dist_port
for _ in $(seq 1 100); do
    [ -z "$ours_base" ] && [ -s "$work/ours/ready" ] && ours_base=http://$(cat "$work/ours/ready")
    if [ -n "$ours_base" ] && curl -fs -o /dev/null --max-time 2 "$dist_base/v2/"; then
        break
    fi
    sleep 0.1
done
if ! kill -0 "$ours_pid" 2>/dev/null || [ -z "$ours_base" ]; then
    tail -5 "$work/ours/log" >&2
    die "our registry did not start"
fi
curl -fs -o /dev/null --max-time 2 "$ours_base/v2/" || die "our registry does not answer /v2/"
if ! kill -0 "$dist_pid" 2>/dev/null || ! curl -fs -o /dev/null --max-time 2 "$dist_base/v2/"; then
    tail -5 "$work/dist/log" >&2
    die "docker-registry did not start on 127.0.0.1:$dist_port"
fi

ours_ver=$("$ours_bin" version 2>/dev/null | head -1)
dist_ver=$("$dist_bin" --version 2>/dev/null | awk '{ print $NF }')
echo "bench: ours: $ours_ver (pid $ours_pid, ${ours_base#http://}); distribution $dist_ver (pid $dist_pid, 127.0.0.1:$dist_port)"

SERVERS="ours dist"
base_of() { if [ "$1" = ours ]; then echo "$ours_base"; else echo "$dist_base"; fi; }
pid_of() { if [ "$1" = ours ]; then echo "$ours_pid"; else echo "$dist_pid"; fi; }
name_of() { if [ "$1" = ours ]; then echo "ours"; else echo "distribution"; fi; }

# ---------------------------------------------------------------- results
declare -A RUNS  # "metric srv" -> space-separated values (or FAIL)
declare -A DEAD  # srv -> 1 once the server is gone
NOTES=()
failures=0

record() { RUNS["$1 $2"]="${RUNS["$1 $2"]:-}${RUNS["$1 $2"]:+ }$3"; }
fail() { # METRIC SRV MESSAGE
    record "$1" "$2" FAIL
    failures=$((failures + 1))
    NOTES+=("$(name_of "$2"): $1: $3")
    echo "bench: FAIL $(name_of "$2") $1: $3" >&2
}
alive() { # SRV METRIC: false (and recorded) if the server has exited
    local s=$1
    [ -n "${DEAD[$s]:-}" ] && { record "$2" "$s" FAIL; return 1; }
    if ! kill -0 "$(pid_of "$s")" 2>/dev/null; then
        DEAD[$s]=1
        fail "$2" "$s" "server process exited; last log lines: $(tail -3 "$work/$s/log" | tr '\n' ' ')"
        return 1
    fi
}
cpu_ticks() { # PID -> utime + stime of the whole process (all threads), in clock ticks
    # Fields after "PID (comm) ": utime and stime are the 12th and 13th.
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null
}
rss_mib() { awk -v k="$2:" '$1 == k { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null; }
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }
quiesce() { sync; sleep 0.5; }   # flush dirty pages outside the timed window

# Each server sees the same request sequence; the order alternates per run.
order() { if [ $(($1 % 2)) -eq 1 ]; then echo ours dist; else echo dist ours; fi; }

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
sleep 2
for i in $(seq 1 3); do
    for s in $SERVERS; do
        alive "$s" rss_idle && record rss_idle "$s" "$(rss_mib "$(pid_of "$s")" VmRSS)"
    done
    sleep 1
done

with_digest() { case $1 in *\?*) echo "$1&digest=$2" ;; *) echo "$1?digest=$2" ;; esac; }
absolute() { case $1 in http://* | https://*) echo "$1" ;; *) echo "$2$1" ;; esac; }

# curl upload of FILE streamed from stdin (-T FILE would append the file
# name to a URL ending in '/'), with a Content-Length, no Expect, no chunking.
upload() { # METHOD URL FILE -> "code time" in $work/tmp/up
    run -i "$3" curl -sS -o "$work/tmp/body" -w '%{http_code} %{time_total}\n' \
        --max-time "$MAXT" -X "$1" -T - \
        -H 'Content-Type: application/octet-stream' -H 'Expect:' \
        -H 'Transfer-Encoding:' -H "Content-Length: $(stat -c %s "$3")" "$2" >"$work/tmp/up"
}

big_push() { # SRV REP
    local s=$1 r=$2 base code t t1 loc url
    base=$(base_of "$s")
    alive "$s" push_big || return
    quiesce
    if [ "$s" = ours ]; then
        upload POST "$base/v2/bench/big$r/blobs/uploads/?digest=${BIG_D[$r]}" "$work/src/big.$r"
        read -r code t <"$work/tmp/up"
        [ "$code" = 201 ] || { fail push_big "$s" "monolithic POST: HTTP ${code:-none} $(head -c 200 "$work/tmp/body")"; return; }
    else
        # Distribution 2.8 ignores a body on POST (202, nothing stored): POST
        # for a session, then PUT ?digest= with the body. Both are timed.
        run curl -sS -o /dev/null -w '%{http_code} %{time_total} %header{location}\n' --max-time 30 \
            -X POST -H 'Content-Length: 0' "$base/v2/bench/big$r/blobs/uploads/" >"$work/tmp/out"
        read -r code t1 loc <"$work/tmp/out"
        [ "$code" = 202 ] || { fail push_big "$s" "POST session: HTTP ${code:-none}"; return; }
        url=$(with_digest "$(absolute "$loc" "$base")" "${BIG_D[$r]}")
        upload PUT "$url" "$work/src/big.$r"
        read -r code t <"$work/tmp/up"
        [ "$code" = 201 ] || { fail push_big "$s" "PUT: HTTP ${code:-none} $(head -c 200 "$work/tmp/body")"; return; }
        t=$(calc "$t + $t1" 6)
    fi
    record push_big "$s" "$(calc "$BIG_BYTES / 1e6 / $t")"
    # Untimed check: the blob is there with its size.
    local len
    len=$(curl -sI --max-time 30 "$base/v2/bench/big$r/blobs/${BIG_D[$r]}" | tr -d '\r' |
        awk 'tolower($1) == "content-length:" { print $2 }')
    [ "$len" = "$BIG_BYTES" ] || NOTES+=("$(name_of "$s"): HEAD after big push run $r: Content-Length '${len}', expected $BIG_BYTES")
}

big_get() { # SRV REP
    local s=$1 r=$2 base code t size c0 c1
    base=$(base_of "$s")
    alive "$s" get_big || return
    quiesce
    c0=$(cpu_ticks "$(pid_of "$s")")
    run curl -sS -o /dev/null -w '%{http_code} %{time_total} %{size_download}\n' --max-time "$MAXT" \
        "$base/v2/bench/big$r/blobs/${BIG_D[$r]}" >"$work/tmp/out"
    c1=$(cpu_ticks "$(pid_of "$s")")
    read -r code t size <"$work/tmp/out"
    if [ "$code" != 200 ] || [ "$size" != "$BIG_BYTES" ]; then
        fail get_big "$s" "GET: HTTP ${code:-none}, ${size:-0} bytes (want 200, $BIG_BYTES)"
        return
    fi
    record get_big "$s" "$(calc "$BIG_BYTES / 1e6 / $t")"
    # Server CPU (user + system, all threads) over the GET, scaled to 1 GiB.
    [ -n "$c0" ] && [ -n "$c1" ] &&
        record get_big_cpu "$s" "$(calc "($c1 - $c0) / $CLK_TCK * 1073741824 / $BIG_BYTES" 3)"
    if [ "$r" = 1 ]; then # untimed, once: the bytes are right
        local got
        run bash -c 'curl -s --max-time "$1" "$2" | sha256sum' _ "$MAXT" "$base/v2/bench/big$r/blobs/${BIG_D[$r]}" >"$work/tmp/sum"
        got=sha256:$(cut -d' ' -f1 "$work/tmp/sum")
        [ "$got" = "${BIG_D[$r]}" ] || NOTES+=("$(name_of "$s"): GET returned wrong content (sha256 $got)")
    fi
}

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
sleep 2
for i in $(seq 1 3); do
    for s in $SERVERS; do
        alive "$s" rss_after && record rss_after "$s" "$(rss_mib "$(pid_of "$s")" VmRSS)"
    done
    sleep 1
done
for s in $SERVERS; do
    alive "$s" rss_peak && record rss_peak "$s" "$(rss_mib "$(pid_of "$s")" VmHWM)"
done

# ---------------------------------------------------------------- report
median() { # "v1 v2 ..." -> median of the numeric ones, FAIL if none
    echo "$1" | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -n |
        awk '{ v[++n] = $1 } END { if (!n) print "FAIL"; else if (n % 2) print v[(n + 1) / 2]
                                    else print (v[n / 2] + v[n / 2 + 1]) / 2 }'
}
fmt() { # VALUE DECIMALS
    case $1 in FAIL | n/a) echo "$1" ;; *) calc "$1" "$2" ;; esac
}

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
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r); loopback."
    echo "ours: $ours_ver; distribution: docker-registry $dist_ver (Debian)."
    echo "BENCH_SIZE_MB=$SIZE_MB, median of $REPS runs, small blobs over $CONC connections; workload took $((t_end - t_start)) s."
    echo "MB/s = 10^6 bytes per second. CPU-s = the server process's user + system time (/proc/PID/stat, 1/${CLK_TCK} s ticks). Ratio = ours / distribution."
    echo
    echo "| metric | ours | distribution | ratio | better |"
    echo "|---|---:|---:|---:|---|"
    for m in $METRICS; do
        o=$(fmt "$(median "${RUNS["$m ours"]:-}")" "$(decimals "$m")")
        if [ "$m" = small_post ]; then
            d=n/a
        else
            d=$(fmt "$(median "${RUNS["$m dist"]:-}")" "$(decimals "$m")")
        fi
        ratio=n/a
        case "$o $d" in *FAIL* | *n/a*) ;; *) awk "BEGIN { exit !($d > 0) }" && ratio=$(calc "$o / $d" 2) ;; esac
        echo "| $(label "$m") | $o | $d | $ratio | $(better "$m") |"
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
    if [ ${#NOTES[@]} -gt 0 ]; then
        echo
        echo "## Problems seen"
        echo
        for n in "${NOTES[@]}"; do echo "- $n"; done
    fi
    for s in $SERVERS; do
        lines=$(wc -l <"$work/$s/log")
        if [ "$lines" -gt 0 ]; then
            echo
            echo "## $(name_of "$s") log ($lines lines at warn level or above; last 5)"
            echo
            echo '```'
            tail -5 "$work/$s/log" | cut -c1-300
            echo '```'
        fi
    done
} >"$work/report.md"

mkdir -p "$here/results"
cp "$work/report.md" "$here/results/latest.md"
echo
cat "$work/report.md"
echo
echo "bench: written to bench/results/latest.md"
[ "$failures" -eq 0 ] || { echo "bench: some measurements failed (see Problems seen)" >&2; exit 1; }
exit 0
