#!/bin/sh
# A throw-away single-node Ceph with a RADOS Gateway on loopback, for tests
# and benchmarks of the S3 blob-store backend. Debian's packages only
# (ceph-mon ceph-osd radosgw ceph-common); no systemd, no /etc/ceph, no
# manager: one monitor, one OSD on bluestore in a sparse file, radosgw
# (beast) on a free 127.0.0.1 port, one S3 user with a bucket-less account.
#
#   scripts/ceph-rgw.sh start DIR   start it in DIR (created, must not exist);
#                                   writes DIR/env (S3_ENDPOINT, S3_REGION,
#                                   S3_ACCESS_KEY, S3_SECRET_KEY) and DIR/pids
#   scripts/ceph-rgw.sh stop DIR    stop exactly the daemons listed in DIR/pids,
#                                   then remove DIR
#
# The daemons run as the calling user, with authentication off (loopback
# only). Logs stay in DIR/log until stop; radosgw's (DIR/log/client.rgw.log)
# has a line per S3 request ("beast: ..."), which bench/s3.sh counts.
#
# CEPH_RGW_BLOCK_GB: size of the OSD's sparse block file (default 8); only
# what is written takes disk space. Deleted objects keep theirs until RGW's
# garbage collection, two hours later.
set -eu

usage() {
    echo "usage: $0 start|stop DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
cmd=$1
dir=$2

# A TCP port nobody listens on (a small race with other starters; the
# daemons fail loudly if they lose it).
free_port() {
    while :; do
        p=$(( $(od -An -N2 -tu2 /dev/urandom) % 30000 + 20000 ))
        ss -Hltn "sport = :$p" | grep -q . || { echo "$p"; return; }
    done
}

# Start a daemon in its own session, in the foreground (so its PID is the
# one we record), and remember it.
spawn() {
    name=$1; shift
    setsid "$@" -f >"$dir/log/$name.out" 2>&1 </dev/null &
    echo "$!" >>"$dir/pids"
}

# Wait up to $1 tenths of a second for a command to succeed.
wait_for() {
    n=$1; shift
    while [ "$n" -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}

stop() {
    [ -f "$dir/pids" ] || { rm -rf "$dir"; return 0; }
    # radosgw first, the OSD, the monitor last (reverse order of start).
    for pid in $(tac "$dir/pids"); do
        kill "$pid" 2>/dev/null || true
    done
    for pid in $(tac "$dir/pids"); do
        i=0
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$dir"
}

fail() {
    echo "ceph-rgw: $*" >&2
    for f in "$dir"/log/*; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    [ -n "${CEPH_RGW_KEEP:-}" ] || stop
    exit 1
}

start() {
    [ ! -e "$dir" ] || { echo "ceph-rgw: $dir exists" >&2; exit 1; }
    block_gb=${CEPH_RGW_BLOCK_GB:-8}
    case $block_gb in '' | *[!0-9]* | 0*) echo "ceph-rgw: CEPH_RGW_BLOCK_GB: '$block_gb'" >&2; exit 2 ;; esac
    mkdir -p "$dir/log" "$dir/run" "$dir/mon" "$dir/osd" "$dir/rgw"
    dir=$(cd "$dir" && pwd)
    fsid=$(cat /proc/sys/kernel/random/uuid)
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    mon_port=$(free_port)
    rgw_port=$(free_port)
    conf=$dir/ceph.conf
    cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = v2:127.0.0.1:$mon_port
public_network = 127.0.0.0/8
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
# radosgw asks for a secure connection mode by default, which auth "none"
# cannot give: the monitor would refuse it (get_initial_auth_request -13).
ms_mon_client_mode = crc
ms_client_mode = crc
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
log_file = $dir/log/\$name.log
pid_file =
keyring = $dir/keyring
# One OSD: every pool has one replica and few placement groups.
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
mon_max_pg_per_osd = 1000
mon_warn_on_pool_no_redundancy = false
# Small memory footprint.
osd_memory_target = 939524096
bluestore_cache_autotune = false
bluestore_cache_size = 67108864
rocksdb_cache_size = 16777216
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 1

[mon]
mon_data = $dir/mon/\$cluster-\$id
mon_initial_members = a

[osd]
osd_data = $dir/osd/\$cluster-\$id
osd_objectstore = bluestore
bluestore_block_path = $dir/osd/block
bluestore_block_create = true
bluestore_block_size = $((block_gb * 1073741824))
bluestore_fsck_on_mount = false

[client.rgw]
rgw_data = $dir/rgw
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port
rgw_thread_pool_size = 32
rgw_dns_name = localhost
EOF
    : >"$dir/pids"

    ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' \
        >/dev/null
    monmaptool --create --clobber --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" \
        "$dir/monmap" >/dev/null
    ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring" \
        >"$dir/log/mon-mkfs.out" 2>&1 || fail "ceph-mon --mkfs failed"
    spawn mon ceph-mon -c "$conf" -i a
    wait_for 300 ceph -c "$conf" --connect-timeout 2 mon stat || fail "monitor did not start"

    id=$(ceph -c "$conf" osd new "$osd_uuid") || fail "osd new failed"
    mkdir -p "$dir/osd/ceph-$id"
    ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$osd_uuid" \
        >"$dir/log/osd-mkfs.out" 2>&1 || fail "ceph-osd --mkfs failed"
    spawn osd ceph-osd -c "$conf" -i "$id"
    wait_for 600 sh -c "ceph -c '$conf' osd stat | grep -q '1 up'" || fail "OSD did not come up"

    spawn rgw radosgw -c "$conf" -n client.rgw
    wait_for 600 curl -sf "http://127.0.0.1:$rgw_port/" || fail "radosgw did not answer"

    access=$(od -An -N10 -tx1 /dev/urandom | tr -d ' \n' | tr a-f A-F)
    secret=$(od -An -N20 -tx1 /dev/urandom | tr -d ' \n')
    radosgw-admin -c "$conf" -n client.rgw user create --uid=registry --display-name=registry \
        --access-key="$access" --secret-key="$secret" >/dev/null 2>"$dir/log/user.out" ||
        fail "radosgw-admin user create failed"
    cat >"$dir/env" <<EOF
S3_ENDPOINT=http://127.0.0.1:$rgw_port
S3_REGION=default
S3_ACCESS_KEY=$access
S3_SECRET_KEY=$secret
CEPH_CONF=$conf
EOF
    cat "$dir/env"
}

case $cmd in
start) start ;;
stop) stop ;;
*) usage ;;
esac
