# shellcheck shell=bash
# Helpers shared by bench/run.sh, bench/cache.sh and bench/s3.sh; sourced by
# them after they set `prog` (the prefix of their messages). The functions
# read the scripts' own variables: here, work (the temporary root), child,
# LIMIT, SIZE_MB, REPS, LAYERS, cleanup_pids, ours_bin, dist_bin, RUNS,
# NOTES, failures; the side-by-side helpers (run.sh, s3.sh) also ours_pid,
# dist_pid, dist_port, DEAD, MAXT, CLK_TCK, BIG_BYTES and BIG_D. metric_row
# calls the script's label, decimals and better; big_get its step_open and
# step_close.
# shellcheck disable=SC2034,SC2154,SC2317  # variables shared with the scripts; cleanup runs from a trap

# die MESSAGE: print it with the script's prefix and exit 1.
die() { echo "$prog: $*" >&2; exit 1; }

# check_args VAR...: each variable a positive integer (no leading 0);
# BENCH_SIZE_MB and BENCH_REPS within their limits.
check_args() {
    local v
    for v in "$@"; do
        case ${!v} in
        '' | *[!0-9]* | 0*) die "$v must be a positive integer (got '${!v}')" ;;
        esac
    done
    [ "$SIZE_MB" -le 65536 ] || die "BENCH_SIZE_MB too large"
    [ "$REPS" -le 15 ] || die "BENCH_REPS at most 15"
}

# under_timeout ARGS: the whole run is bounded: re-run this script (once)
# under timeout(1) LIMIT. SIGTERM from it goes through the trap set by
# set_traps, which stops the servers.
under_timeout() {
    if [ -z "${BENCH_UNDER_TIMEOUT:-}" ] && command -v timeout >/dev/null; then
        BENCH_UNDER_TIMEOUT=1 exec timeout --foreground -k 60 "$LIMIT" bash "$0" "$@"
    fi
}

# need_tools TOOL...: die if one is not on PATH.
need_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool not found"
    done
}

# install_distribution: Debian's docker-registry package, installed with
# apt-get if dist_bin is missing (as root). The package may start its own
# service on :5000; it does not conflict with the free ports used here, so it
# is left alone.
install_distribution() {
    [ -x "$dist_bin" ] && return 0
    [ "$(id -u)" -eq 0 ] || die "$dist_bin missing; run: sudo apt-get install docker-registry"
    echo "$prog: installing docker-registry"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends docker-registry >/dev/null ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-registry >/dev/null; } ||
        die "could not install docker-registry"
    [ -x "$dist_bin" ] || die "$dist_bin still missing after install"
}

# image_sizes: LAYER_MB (SIZE_MB / LAYERS, at least 1, at most 25) and
# IMG_MB (the whole image's layers) of the 8-layer image.
image_sizes() {
    LAYER_MB=$((SIZE_MB / LAYERS))
    [ "$LAYER_MB" -le 25 ] || LAYER_MB=25
    [ "$LAYER_MB" -ge 1 ] || LAYER_MB=1
    IMG_MB=$((LAYERS * LAYER_MB))
}

# clk_tck: CLK_TCK, the clock ticks per second of /proc/PID/stat.
clk_tck() {
    CLK_TCK=$(getconf CLK_TCK)
    case $CLK_TCK in '' | *[!0-9]* | 0) die "getconf CLK_TCK: '$CLK_TCK'" ;; esac
}

# need_space MB: die unless MB MiB are free where $work is.
need_space() {
    local avail_mb
    avail_mb=$(df -Pm "$work" | awk 'NR == 2 { print $4 }')
    [ "$avail_mb" -ge "$1" ] || die "need ${1} MiB free in $(dirname "$work"), have ${avail_mb}"
}

# stop_pid PID: SIGTERM, then SIGKILL after 15 s; only this PID.
stop_pid() {
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

# cleanup: at exit, stop the running child, then the servers whose PIDs are
# in the variables named by cleanup_pids (in that order), and remove $work.
cleanup() {
    local v
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
    for v in $cleanup_pids; do stop_pid "${!v}"; done
    rm -rf "$work"
}

# set_traps: cleanup at exit; SIGINT and SIGTERM (BENCH_TIMEOUT) end the script.
set_traps() {
    trap cleanup EXIT
    trap 'echo "$prog: interrupted" >&2; exit 130' INT
    trap 'echo "$prog: terminated (BENCH_TIMEOUT=${LIMIT}s reached?)" >&2; exit 143' TERM
}

# run [-i FILE] COMMAND...: run a command in the background and wait for it,
# so that a signal reaches the trap at once; stdin FILE, else /dev/null.
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

# free_port: a free 127.0.0.1 TCP port.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# spawn_ours: our registry on 127.0.0.1:0 with $work/ours/registry.conf, its
# root, ready file and log under $work/ours. Sets ours_pid.
spawn_ours() {
    "$ours_bin" serve --config "$work/ours/registry.conf" --listen 127.0.0.1:0 \
        --root "$work/ours/root" --ready-file "$work/ours/ready" >"$work/ours/log" 2>&1 &
    ours_pid=$!
}

# wait_servers: wait (10 s at most) until ours has written its ready file
# and Distribution on dist_port answers /v2/; die if either does not. Sets
# ours_base and dist_base.
wait_servers() {
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
}

# versions: ours_ver and dist_ver, the two servers' versions.
versions() {
    ours_ver=$("$ours_bin" version 2>/dev/null | head -1)
    dist_ver=$("$dist_bin" --version 2>/dev/null | awk '{ print $NF }')
}

# The two servers side by side (run.sh, s3.sh): SRV is ours or dist.
SERVERS="ours dist"
base_of() { if [ "$1" = ours ]; then echo "$ours_base"; else echo "$dist_base"; fi; }
pid_of() { if [ "$1" = ours ]; then echo "$ours_pid"; else echo "$dist_pid"; fi; }
name_of() { if [ "$1" = ours ]; then echo "ours"; else echo "distribution"; fi; }

# record METRIC ROW VALUE: append VALUE to RUNS["METRIC ROW"].
record() { RUNS["$1 $2"]="${RUNS["$1 $2"]:-}${RUNS["$1 $2"]:+ }$3"; }

# fail METRIC SRV MESSAGE: record FAIL, count it and note it for the report.
fail() {
    record "$1" "$2" FAIL
    failures=$((failures + 1))
    NOTES+=("$(name_of "$2"): $1: $3")
    echo "$prog: FAIL $(name_of "$2") $1: $3" >&2
}

# alive SRV METRIC: false (and recorded) if the server has exited.
alive() {
    local s=$1
    [ -n "${DEAD[$s]:-}" ] && { record "$2" "$s" FAIL; return 1; }
    if ! kill -0 "$(pid_of "$s")" 2>/dev/null; then
        DEAD["$s"]=1
        fail "$2" "$s" "server process exited; last log lines: $(tail -3 "$work/$s/log" | tr '\n' ' ')"
        return 1
    fi
}

# cpu_ticks PID: utime + stime of the whole process (all threads), in clock
# ticks. Fields after "PID (comm) ": utime and stime are the 12th and 13th.
cpu_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null
}

# calc EXPR [DECIMALS]: awk arithmetic, printed with DECIMALS (1) decimals.
calc() { awk "BEGIN { printf \"%.${2:-1}f\", $1 }"; }

# quiesce: flush dirty pages outside the timed window.
quiesce() { sync; sleep 0.5; }

# order REP: the two servers, in an order that alternates per run.
order() { if [ $(($1 % 2)) -eq 1 ]; then echo ours dist; else echo dist ours; fi; }

# with_digest URL DIGEST: URL with ?digest= (or &digest=) appended.
with_digest() { case $1 in *\?*) echo "$1&digest=$2" ;; *) echo "$1?digest=$2" ;; esac; }

# absolute LOCATION BASE: a Location header made an absolute URL.
absolute() { case $1 in http://* | https://*) echo "$1" ;; *) echo "$2$1" ;; esac; }

# upload METHOD URL FILE -> "code time" in $work/tmp/up: curl upload of
# FILE streamed from stdin (-T FILE would append the file name to a URL
# ending in '/'), with a Content-Length, no Expect, no chunking.
upload() {
    run -i "$3" curl -sS -o "$work/tmp/body" -w '%{http_code} %{time_total}\n' \
        --max-time "$MAXT" -X "$1" -T - \
        -H 'Content-Type: application/octet-stream' -H 'Expect:' \
        -H 'Transfer-Encoding:' -H "Content-Length: $(stat -c %s "$3")" "$2" >"$work/tmp/up"
}

# median "v1 v2 ...": median of the numeric ones, FAIL if none.
median() {
    echo "$1" | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+)?$' | sort -n |
        awk '{ v[++n] = $1 } END { if (!n) print "FAIL"; else if (n % 2) print v[(n + 1) / 2]
                                    else print (v[n / 2] + v[n / 2 + 1]) / 2 }'
}

# fmt VALUE DECIMALS: VALUE rounded; FAIL and n/a as they are.
fmt() { case $1 in FAIL | n/a) echo "$1" ;; *) calc "$1" "$2" ;; esac; }

# host_line: the report's line on when and where it ran.
host_line() {
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores, $(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r); loopback."
}

# metric_row METRIC [DIST]: a row "| label | ours | distribution | ratio |
# better |" of the medians of RUNS, with the scripts' label, decimals and
# better; DIST, if given, stands in the distribution column.
metric_row() {
    local m=$1 o d ratio
    o=$(fmt "$(median "${RUNS["$m ours"]:-}")" "$(decimals "$m")")
    d=${2:-$(fmt "$(median "${RUNS["$m dist"]:-}")" "$(decimals "$m")")}
    ratio=n/a
    case "$o $d" in *FAIL* | *n/a*) ;; *) awk "BEGIN { exit !($d > 0) }" && ratio=$(calc "$o / $d" 2) ;; esac
    echo "| $(label "$m") | $o | $d | $ratio | $(better "$m") |"
}

# problems: the report's "Problems seen" section, if NOTES has any.
problems() {
    local n
    [ ${#NOTES[@]} -gt 0 ] || return 0
    echo
    echo "## Problems seen"
    echo
    for n in "${NOTES[@]}"; do echo "- $n"; done
}

# server_logs: for each of SERVERS with a non-empty log, its last 5 lines.
server_logs() {
    local s lines
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
}

# finish NAME: copy $work/report.md to bench/results/NAME, print it, and
# exit 1 if any step failed, else 0.
finish() {
    mkdir -p "$here/results"
    cp "$work/report.md" "$here/results/$1"
    echo
    cat "$work/report.md"
    echo
    echo "$prog: written to bench/results/$1"
    [ "$failures" -eq 0 ] || { echo "$prog: some measurements failed (see Problems seen)" >&2; exit 1; }
    exit 0
}

# The big blob of run.sh and s3.sh: $work/src/big.REP, BIG_BYTES long, its
# digest BIG_D[REP], pushed to bench/bigREP.

# push_big_blob SRV REP: the timed push of the big blob. Ours: a monolithic
# POST ?digest= with the body. Distribution 2.8 ignores a body on POST (202,
# nothing stored): POST for a session, then PUT ?digest= with the body; both
# are timed. Sets PUSH_T (seconds); false (and recorded, as push_big) if a
# status is not the one wanted.
push_big_blob() {
    local s=$1 r=$2 base code t t1 loc url
    base=$(base_of "$s")
    if [ "$s" = ours ]; then
        upload POST "$base/v2/bench/big$r/blobs/uploads/?digest=${BIG_D[$r]}" "$work/src/big.$r"
        read -r code t <"$work/tmp/up"
        [ "$code" = 201 ] || { fail push_big "$s" "monolithic POST: HTTP ${code:-none} $(head -c 200 "$work/tmp/body")"; return 1; }
    else
        run curl -sS -o /dev/null -w '%{http_code} %{time_total} %header{location}\n' --max-time 30 \
            -X POST -H 'Content-Length: 0' "$base/v2/bench/big$r/blobs/uploads/" >"$work/tmp/out"
        read -r code t1 loc <"$work/tmp/out"
        [ "$code" = 202 ] || { fail push_big "$s" "POST session: HTTP ${code:-none}"; return 1; }
        url=$(with_digest "$(absolute "$loc" "$base")" "${BIG_D[$r]}")
        upload PUT "$url" "$work/src/big.$r"
        read -r code t <"$work/tmp/up"
        [ "$code" = 201 ] || { fail push_big "$s" "PUT: HTTP ${code:-none} $(head -c 200 "$work/tmp/body")"; return 1; }
        t=$(calc "$t + $t1" 6)
    fi
    PUSH_T=$t
}

# big_head_check SRV REP: untimed, after the push: a HEAD of the big blob
# answers its size, else a note for the report.
big_head_check() {
    local s=$1 r=$2 len
    len=$(curl -sI --max-time 30 "$(base_of "$s")/v2/bench/big$r/blobs/${BIG_D[$r]}" | tr -d '\r' |
        awk 'tolower($1) == "content-length:" { print $2 }')
    [ "$len" = "$BIG_BYTES" ] || NOTES+=("$(name_of "$s"): HEAD after big push run $r: Content-Length '${len}', expected $BIG_BYTES")
}

# big_get SRV REP: the timed GET of the big blob to /dev/null: get_big in
# MB/s, and get_big_cpu, the server's CPU-s (user + system, all threads)
# over the GET scaled to 1 GiB. In run 1 an untimed GET also checks the
# bytes' sha256. The script's step_open METRIC SRV (false: skip the step)
# and step_close METRIC SRV REP are called before and after the GET.
big_get() {
    local s=$1 r=$2 base code t size c0 c1
    base=$(base_of "$s")
    alive "$s" get_big || return
    step_open get_big "$s" || return
    c0=$(cpu_ticks "$(pid_of "$s")")
    run curl -sS -o /dev/null -w '%{http_code} %{time_total} %{size_download}\n' --max-time "$MAXT" \
        "$base/v2/bench/big$r/blobs/${BIG_D[$r]}" >"$work/tmp/out"
    c1=$(cpu_ticks "$(pid_of "$s")")
    step_close get_big "$s" "$r"
    read -r code t size <"$work/tmp/out"
    if [ "$code" != 200 ] || [ "$size" != "$BIG_BYTES" ]; then
        fail get_big "$s" "GET: HTTP ${code:-none}, ${size:-0} bytes (want 200, $BIG_BYTES)"
        return
    fi
    record get_big "$s" "$(calc "$BIG_BYTES / 1e6 / $t")"
    [ -n "$c0" ] && [ -n "$c1" ] &&
        record get_big_cpu "$s" "$(calc "($c1 - $c0) / $CLK_TCK * 1073741824 / $BIG_BYTES" 3)"
    if [ "$r" = 1 ]; then # untimed (and in s3.sh uncounted), once: the bytes are right
        local got
        run bash -c 'curl -s --max-time "$1" "$2" | sha256sum' _ "$MAXT" "$base/v2/bench/big$r/blobs/${BIG_D[$r]}" >"$work/tmp/sum"
        got=sha256:$(cut -d' ' -f1 "$work/tmp/sum")
        [ "$got" = "${BIG_D[$r]}" ] || NOTES+=("$(name_of "$s"): GET returned wrong content (sha256 $got)")
    fi
}
