#!/bin/sh
# Dependencies point one way (docs/architecture.md): server -> api ->
# service -> storage, and api -> auth. Checked on the objects themselves:
# the undefined symbols of each layer's objects must not name a layer above
# it, nor, for api/, the storage underneath the service layer.
#
#   tests/layers.sh BUILD_DIR
set -u
obj=${1:-build}/obj
src=$(cd "$(dirname "$0")/.." && pwd)
status=0

# check DIR PATTERN WHY: no object in DIR may need a symbol matching PATTERN.
check() {
    # The objects of today's sources (a build directory may hold stale ones).
    for c in "$src/$1"/*.c; do
        o=$obj/$1/$(basename "$c" .c).o
        [ -e "$o" ] || { echo "layers: no $o (build first)"; status=1; continue; }
        bad=$(nm -u "$o" | awk '{print $NF}' | grep -E "$2" | tr '\n' ' ')
        if [ -n "$bad" ]; then
            echo "layers: $o needs $bad($3)"
            status=1
        fi
    done
}

check api '^(index_|mdb_|blobstore_|blob_writer_|s3_)' 'api/ goes through service/service.h'
check service '^(req_|api_|MHD_|http_)' 'service/ knows no HTTP'
check storage '^(req_|api_|MHD_|http_|svc_|upload_|gc_|fsck_)' 'storage/ knows no layer above it'
check auth '^(req_|api_|MHD_|http_|svc_|index_|blobstore_)' 'auth/ knows no HTTP and no storage'
check common '^(req_|api_|MHD_|svc_|index_|blobstore_)' 'common/ is below everything'
[ $status -eq 0 ] && echo "layers: ok"
exit $status
