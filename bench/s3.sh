#!/bin/bash
# make bench-s3 (and the second half of make bench): our registry against
# Debian's docker-registry (CNCF Distribution 2.8), both keeping their blobs
# on one throw-away Ceph RADOS Gateway (scripts/with-ceph.sh), each in a
# bucket of its own. Measures push and GET of a big blob and push and pull of
# an 8-layer image, and counts the S3 requests each server sends for each of
# them (radosgw's log has a line per request). Prints a table (median of
# BENCH_REPS runs) and writes it to bench/results/s3.md. Figures only: never
# a pass/fail test.
#
# Environment:
#   BENCH_SIZE_MB      big blob size in MiB (default 1024); the image has 8
#                      layers of BENCH_SIZE_MB/8 MiB each, at most 25 and at
#                      least 1 (200 MiB by default)
#   BENCH_REPS         runs per figure, median reported (default 3)
#   BENCH_S3_PART_MB   multipart part size in MiB for both servers (ours:
#                      [s3] part_size, Distribution: chunksize; 5 or more).
#                      Unset: each server's default (16 MiB and 10 MiB)
#   BENCH_TIMEOUT      whole-run limit in seconds (default 3600), Ceph's
#                      start-up not included
#   REGISTRY_BIN       our server (default build/registry)
#   DISTRIBUTION_BIN   Distribution (default /usr/bin/docker-registry)
#   REGISTRY_S3_ENV    a running gateway's env file (scripts/ceph-rgw.sh) to
#                      use instead of starting one
#   TMPDIR             where the data and our root go (about BENCH_REPS x
#                      (BENCH_SIZE_MB + the image) free); Ceph's files go to
#                      /tmp (about 3x that)
set -u
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")

SIZE_MB=${BENCH_SIZE_MB:-1024}
REPS=${BENCH_REPS:-3}
LIMIT=${BENCH_TIMEOUT:-3600}
PART_MB=${BENCH_S3_PART_MB:-}
LAYERS=8  # layers of the pushed and pulled image
ours_bin=${REGISTRY_BIN:-$top/build/registry}
dist_bin=${DISTRIBUTION_BIN:-/usr/bin/docker-registry}

prog=bench-s3
# shellcheck source=lib.sh
. "$here/lib.sh"

check_args SIZE_MB REPS LIMIT
if [ -n "$PART_MB" ]; then
    case $PART_MB in '' | *[!0-9]* | 0*) die "BENCH_S3_PART_MB must be a positive integer" ;; esac
    if [ "$PART_MB" -lt 5 ] || [ "$PART_MB" -gt 1024 ]; then die "BENCH_S3_PART_MB: 5..1024"; fi
fi

image_sizes
BIG_BYTES=$((SIZE_MB * 1048576))
# Local data: the sources, plus our root (the index and at most two parts
# per upload session).
data_mb=$((REPS * (SIZE_MB + IMG_MB) + 200))
# What the gateway stores: each server keeps a copy of everything pushed, and
# a server-side copy (both commit that way) may write the bytes again, which
# RGW frees only at its garbage collection, two hours later.
ceph_mb=$((3 * REPS * (SIZE_MB + IMG_MB) + 1024))

# Outside: start the gateway (unless one is named), then run this script
# under timeout(1). SIGTERM from it goes through the trap below, which stops
# the servers; with-ceph.sh stops the gateway when the script has ended.
if [ -z "${BENCH_UNDER_TIMEOUT:-}" ]; then
    for tool in curl python3 sha256sum awk getconf timeout ceph; do
        command -v "$tool" >/dev/null || die "$tool not found (make deps-test)"
    done
    if [ -z "${REGISTRY_S3_ENV:-}" ]; then
        if ! command -v radosgw >/dev/null || ! command -v ceph-mon >/dev/null; then
            die "no ceph-mon/radosgw: apt-get install ceph-mon ceph-osd radosgw ceph-common (make deps-test)"
        fi
        # A sparse block file large enough that the OSD never gets near full.
        export CEPH_RGW_BLOCK_GB=$(((ceph_mb * 5 / 4 + 1023) / 1024))
        [ "$CEPH_RGW_BLOCK_GB" -ge 8 ] || CEPH_RGW_BLOCK_GB=8
        need=$ceph_mb
        if [ "$(df -P /tmp | awk 'NR == 2 { print $6 }')" = \
            "$(df -P "${TMPDIR:-/tmp}" | awk 'NR == 2 { print $6 }')" ]; then
            need=$((need + data_mb))
        fi
        avail=$(df -Pm /tmp | awk 'NR == 2 { print $4 }')
        [ "$avail" -ge "$need" ] || die "need ${need} MiB free in /tmp (Ceph's OSD), have ${avail}"
        echo "bench-s3: starting a throw-away Ceph RADOS Gateway (OSD block file ${CEPH_RGW_BLOCK_GB} GiB, sparse)"
    fi
    BENCH_UNDER_TIMEOUT=1 exec "$top/scripts/with-ceph.sh" \
        timeout --foreground -k 60 "$LIMIT" bash "$0" "$@"
fi

if [ -z "${REGISTRY_S3_ENV:-}" ] || [ ! -f "$REGISTRY_S3_ENV" ]; then
    die "no RADOS Gateway started (see above)"
fi
# shellcheck disable=SC1090
. "$REGISTRY_S3_ENV"
ceph_dir=$(dirname "${CEPH_CONF:-}")
rgw_log=$ceph_dir/log/client.rgw.log
rgw_asok=$ceph_dir/run/client.rgw.asok
if [ ! -f "$rgw_log" ] || [ ! -S "$rgw_asok" ]; then
    die "no radosgw log or admin socket under $ceph_dir"
fi
[ -x "$ours_bin" ] || die "$ours_bin not found (run make first)"
install_distribution

MAXT=$((60 + SIZE_MB))          # curl --max-time for one big transfer (>= 1 MB/s)
IMG_MAXT=$((120 + IMG_MB))      # one push or pull of the image
clk_tck

work=$(mktemp -d "${TMPDIR:-/tmp}/regbench-s3.XXXXXX") || die "mktemp failed"
ours_pid=
dist_pid=
child=

cleanup_pids="ours_pid dist_pid"
set_traps

need_space "$data_mb"

# ---------------------------------------------------------------- servers
# A bucket per server, new in every run (a gateway named in REGISTRY_S3_ENV
# may hold earlier runs' blobs, which would turn pushes into dedups).
tag=$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')
ours_bucket=bench-ours-$tag
dist_bucket=bench-dist-$tag

mkdir -p "$work/ours" "$work/dist" "$work/src" "$work/tmp"
{
    # Background GC off on both servers (Distribution: upload purging), so
    # every S3 request counted is one of the step measured.
    printf '[storage]\ndelete = true\n[log]\nlevel = warn\n[gc]\ninterval = 0\n'
    "$top/scripts/s3-conf.sh" ours/ "$ours_bucket" | grep -v '^part_size' ||
        die "creating bucket $ours_bucket failed"
    [ -z "$PART_MB" ] || echo "part_size = ${PART_MB}M"
} >"$work/ours/registry.conf"
"$top/scripts/s3-conf.sh" "" "$dist_bucket" >/dev/null || die "creating bucket $dist_bucket failed"

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
  s3:
    regionendpoint: $S3_ENDPOINT
    region: $S3_REGION
    bucket: $dist_bucket
    accesskey: $S3_ACCESS_KEY
    secretkey: $S3_SECRET_KEY
    secure: false
    v4auth: true
$([ -z "$PART_MB" ] || echo "    chunksize: $((PART_MB * 1048576))")
  delete:
    enabled: true
  redirect:
    disable: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$dist_port
  secret: $(od -An -N16 -tx1 /dev/urandom | tr -d " \n")
EOC
# Distribution 2.8 refuses to start when AWS_CA_BUNDLE is set, and takes
# every REGISTRY_* variable for a setting of its own (REGISTRY_S3_ENV is one
# of ours): unset them for this process only.
dist_env=(-u AWS_CA_BUNDLE)
for k in $(compgen -e); do
    case $k in REGISTRY_*) dist_env+=(-u "$k") ;; esac
done
env "${dist_env[@]}" "$dist_bin" serve "$work/dist/config.yml" >"$work/dist/log" 2>&1 &
dist_pid=$!

wait_servers
versions
rgw_ver=$(radosgw --version 2>/dev/null | awk '{ print $3 }')
echo "bench-s3: ours: $ours_ver (pid $ours_pid, ${ours_base#http://}, bucket $ours_bucket);" \
    "distribution $dist_ver (pid $dist_pid, 127.0.0.1:$dist_port, bucket $dist_bucket);" \
    "radosgw $rgw_ver at $S3_ENDPOINT"

bucket_of() { if [ "$1" = ours ]; then echo "$ours_bucket"; else echo "$dist_bucket"; fi; }

# ---------------------------------------------------------------- S3 requests
# radosgw logs one line per HTTP request it answers, at debug_rgw level 1
# (the default):
#   ... beast: 0x..: 127.0.0.1 - registry [date] "PUT /BUCKET/KEY?partNumber=3&uploadId=.. HTTP/1.1" 200 ...
# Both servers address objects path-style, so the bucket is the first path
# element. A step's count is the lines for that server's bucket written
# between two marks: the log's size after a flush (the admin socket's
# "log flush") before the step, and again half a second after it ended.
rgw_flush() { ceph --admin-daemon "$rgw_asok" log flush >/dev/null 2>&1; }
s3_mark() { # -> byte offset of the log's end in S3_MARK
    rgw_flush || return 1
    S3_MARK=$(stat -c %s "$rgw_log")
}
# BUCKET -> S3_N (requests since S3_MARK) and S3_KINDS ("n Operation, ...").
s3_count() {
    local out
    sleep 0.5
    rgw_flush
    out=$(tail -c +$((S3_MARK + 1)) "$rgw_log" | awk -v b="/$1" '
        BEGIN { op["GET"] = "Get"; op["HEAD"] = "Head"; op["DELETE"] = "Delete"; op["PUT"] = "Put"; op["POST"] = "Post" }
        / beast: / {
            split($0, q, "\"")              # q[2]: request line; q[3]: " STATUS BYTES - "
            split(q[2], rl, " ")
            m = rl[1]; t = rl[2]; split(q[3], st, " ")
            path = t; qs = ""
            i = index(t, "?")
            if (i) { path = substr(t, 1, i - 1); qs = "&" substr(t, i + 1) "&" }
            if (path != b && path != b "/" && substr(path, 1, length(b) + 1) != b "/") next
            obj = path != b && path != b "/"
            # The log names no operation; this is the S3 API call each
            # method and query string mean (a copy looks like its upload).
            if (!obj) {
                if (m == "GET" && qs ~ /&uploads[=&]/) k = "ListMultipartUploads"
                else if (m == "GET") k = "ListObjects"
                else if (m == "POST" && qs ~ /&delete[=&]/) k = "DeleteObjects"
                else k = (m in op ? op[m] : m) "Bucket"
            } else if (m == "POST" && qs ~ /&uploads[=&]/) k = "CreateMultipartUpload"
            else if (m == "PUT" && qs ~ /&partNumber=/) k = "UploadPart(Copy)"
            else if (m == "POST" && qs ~ /&uploadId=/) k = "CompleteMultipartUpload"
            else if (m == "GET" && qs ~ /&uploadId=/) k = "ListParts"
            else if (m == "DELETE" && qs ~ /&uploadId=/) k = "AbortMultipartUpload"
            else if (m == "PUT") k = "PutObject/CopyObject"
            else k = (m in op ? op[m] : m) "Object"
            if (st[1] !~ /^2/) k = k " (" st[1] ")"
            n++; c[k]++
        }
        END {
            printf "%d\n", n
            for (k in c) printf "%d %s\n", c[k], k
        }')
    S3_N=$(echo "$out" | head -1)
    S3_KINDS=$(echo "$out" | tail -n +2 | sort -k1,1nr -k2 | awk '{ printf "%s%s", sep, $0; sep = ", " }')
}

# ---------------------------------------------------------------- results
declare -A RUNS   # "metric srv" -> space-separated values (or FAIL)
declare -A KINDS  # "metric srv" -> the first run's requests by operation
declare -A DEAD   # srv -> 1 once the server is gone
NOTES=()
failures=0

# Opens a step's window: flush, then mark the gateway's log.
window_open() { # METRIC SRV
    quiesce
    s3_mark || { fail "$1" "$2" "radosgw admin socket: log flush failed"; return 1; }
}
# Closes it: the step's S3 requests are recorded under METRIC_req.
window_close() { # METRIC SRV REP
    s3_count "$(bucket_of "$2")"
    if [ "${S3_N:-0}" -eq 0 ]; then
        fail "$1_req" "$2" "no S3 request in radosgw's log (is debug_rgw below 1?)"
        return
    fi
    record "$1_req" "$2" "$S3_N"
    [ "$3" != 1 ] || KINDS["$1 $2"]=$S3_KINDS
}

# ---------------------------------------------------------------- data
echo "bench-s3: generating test data (${REPS}x ${SIZE_MB} MiB, ${REPS}x ${LAYERS} x ${LAYER_MB} MiB layers)"
declare -A BIG_D
for r in $(seq 1 "$REPS"); do
    run head -c "$BIG_BYTES" /dev/urandom >"$work/src/big.$r" || die "generating data failed"
    BIG_D[$r]=sha256:$(sha256sum "$work/src/big.$r" | cut -d' ' -f1)
    for i in $(seq 1 "$LAYERS"); do
        run head -c $((LAYER_MB * 1048576)) /dev/urandom >"$work/src/layer.$r.$i" ||
            die "generating data failed"
    done
done

# ---------------------------------------------------------------- steps
# Push of the big blob, as bench/run.sh does it (push_big_blob in lib.sh:
# ours a monolithic POST ?digest= with the body; Distribution, which ignores
# a POST's body, POST for a session, then PUT ?digest= with the body, both
# timed), with the server's CPU and the S3 requests counted.
big_push() { # SRV REP
    local s=$1 r=$2 c0 c1
    alive "$s" push_big || return
    window_open push_big "$s" || return
    c0=$(cpu_ticks "$(pid_of "$s")")
    push_big_blob "$s" "$r" || return
    c1=$(cpu_ticks "$(pid_of "$s")")
    window_close push_big "$s" "$r"
    record push_big "$s" "$(calc "$BIG_BYTES / 1e6 / $PUSH_T")"
    [ -n "$c0" ] && [ -n "$c1" ] &&
        record push_big_cpu "$s" "$(calc "($c1 - $c0) / $CLK_TCK * 1073741824 / $BIG_BYTES" 3)"
    # Untimed, uncounted check: the blob is there with its size.
    big_head_check "$s" "$r"
}

# big_get (lib.sh) counts the S3 requests of its GET.
step_open() { window_open "$@"; }
step_close() { window_close "$@"; }

# The image: bench/pull.py push (POST + PUT per blob, as bench/run.sh pushes
# its image, then the manifest under a tag) on one connection, timed by
# pull.py from the connection to the manifest's 201; a new image every run.
declare -A IMG_D  # "srv rep" -> manifest digest
img_push() { # SRV REP
    local s=$1 r=$2 base d n t files=()
    base=$(base_of "$s")
    alive "$s" push_img || return
    for i in $(seq 1 "$LAYERS"); do files+=("$work/src/layer.$r.$i"); done
    window_open push_img "$s" || return
    if ! run timeout "$IMG_MAXT" python3 "$here/pull.py" push "${base#http://}" "bench/image$r" v1 \
        "${files[@]}" >"$work/tmp/out" 2>"$work/tmp/err"; then
        fail push_img "$s" "$(tail -1 "$work/tmp/err")"
        return
    fi
    window_close push_img "$s" "$r"
    read -r d n t <"$work/tmp/out"
    IMG_D["$s $r"]=$d
    record push_img "$s" "$(calc "$n / 1e6 / $t")"
}

# Pull of that image by one client: bench/pull.py pull with one process (the
# manifest, the config and the layers in order on one connection, each body
# read to its end; statuses, sizes and the manifest's digest checked).
img_pull() { # SRV REP
    local s=$1 r=$2 base t n
    base=$(base_of "$s")
    alive "$s" pull_img || return
    [ -n "${IMG_D["$s $r"]:-}" ] || { record pull_img "$s" FAIL; return; }  # push failed
    window_open pull_img "$s" || return
    if ! run timeout "$IMG_MAXT" python3 "$here/pull.py" pull "${base#http://}" "bench/image$r" v1 \
        1 "${IMG_D["$s $r"]}" >"$work/tmp/out" 2>"$work/tmp/err"; then
        fail pull_img "$s" "$(tail -1 "$work/tmp/err")"
        return
    fi
    window_close pull_img "$s" "$r"
    read -r t n <"$work/tmp/out"
    record pull_img "$s" "$(calc "$n / 1e6 / $t")"
}

t_start=$(date +%s)
for r in $(seq 1 "$REPS"); do
    echo "bench-s3: run $r/$REPS: ${SIZE_MB} MiB blob push + GET, ${IMG_MB} MiB image push + pull"
    for s in $(order "$r"); do
        big_push "$s" "$r"
        big_get "$s" "$r"
        img_push "$s" "$r"
        img_pull "$s" "$r"
    done
done
t_end=$(date +%s)

# ---------------------------------------------------------------- report
METRICS="push_big push_big_cpu push_big_req get_big get_big_cpu get_big_req push_img push_img_req pull_img pull_img_req"
label() {
    case $1 in
    push_big) echo "push ${SIZE_MB} MiB blob, MB/s (ours: POST ?digest=; distribution: POST + PUT)" ;;
    push_big_cpu) echo "push ${SIZE_MB} MiB blob, server CPU-s per GiB" ;;
    push_big_req) echo "push ${SIZE_MB} MiB blob, S3 requests" ;;
    get_big) echo "GET ${SIZE_MB} MiB blob to /dev/null, MB/s" ;;
    get_big_cpu) echo "GET ${SIZE_MB} MiB blob, server CPU-s per GiB" ;;
    get_big_req) echo "GET ${SIZE_MB} MiB blob, S3 requests" ;;
    push_img) echo "push image, ${LAYERS} x ${LAYER_MB} MiB layers (POST + PUT each), MB/s" ;;
    push_img_req) echo "push image, S3 requests" ;;
    pull_img) echo "pull image by one client, MB/s" ;;
    pull_img_req) echo "pull image by one client, S3 requests" ;;
    esac
}
decimals() { case $1 in *_req) echo 0 ;; *_cpu) echo 2 ;; *) echo 1 ;; esac; }
better() {
    case $1 in
    *_req) echo "lower: ratio < 1 is ours fewer" ;;
    *_cpu) echo "lower: ratio < 1 is ours cheaper" ;;
    *) echo "higher: ratio > 1 is ours faster" ;;
    esac
}

{
    echo "# Registry benchmark on S3 (Ceph RGW): ours vs Distribution"
    echo
    host_line
    echo "ours: $ours_ver; distribution: docker-registry $dist_ver (Debian); one single-node Ceph $rgw_ver RADOS Gateway (one bluestore OSD in a file), a bucket per server."
    if [ -n "$PART_MB" ]; then
        echo "Part size ${PART_MB} MiB for both (ours: part_size; distribution: chunksize)."
    else
        echo "Each server's default part size: ours 16 MiB (part_size), distribution 10 MiB (chunksize; server-side copies in 32 MiB parts above 32 MiB)."
    fi
    echo "Both stream blob GETs through the server (ours: redirect = false, the default; distribution: redirect disabled)."
    echo "BENCH_SIZE_MB=$SIZE_MB, median of $REPS runs; workload took $((t_end - t_start)) s."
    echo "MB/s = 10^6 bytes per second. CPU-s = the server process's user + system time (/proc/PID/stat, 1/${CLK_TCK} s ticks)."
    echo "S3 requests = radosgw's request lines for the server's bucket during the step (bench/README.md). Ratio = ours / distribution."
    echo
    echo "| metric | ours | distribution | ratio | better |"
    echo "|---|---:|---:|---:|---|"
    for m in $METRICS; do metric_row "$m"; done
    echo
    echo "## S3 requests by operation (run 1)"
    echo
    echo "From the method and query string of each request line; a server-side copy"
    echo "looks like the upload it stands for, hence UploadPart(Copy) and PutObject/CopyObject."
    echo
    for m in push_big get_big push_img pull_img; do
        for s in $SERVERS; do
            echo "- $m, $(name_of "$s"): ${KINDS["$m $s"]:-none}"
        done
    done
    echo
    echo "## Runs"
    echo
    for m in $METRICS; do
        echo "- $m: ours ${RUNS["$m ours"]:-none}; distribution ${RUNS["$m dist"]:-none}"
    done
    problems
    server_logs
} >"$work/report.md"

finish s3.md
