#!/bin/sh
# Run a command with a throw-away Ceph RADOS Gateway (scripts/ceph-rgw.sh)
# named in REGISTRY_S3_ENV, then stop exactly the daemons started for it.
# An existing REGISTRY_S3_ENV is reused (make test starts Ceph once for both
# passes). Without Ceph's binaries the command runs alone and the S3 tests
# skip themselves; with them, a gateway that fails to start fails the run.
#   usage: scripts/with-ceph.sh COMMAND [ARG...]
set -u
here=$(cd "$(dirname "$0")" && pwd)
if [ -n "${REGISTRY_S3_ENV:-}" ] && [ -f "$REGISTRY_S3_ENV" ]; then
    exec "$@"
fi
if ! command -v radosgw >/dev/null 2>&1 || ! command -v ceph-mon >/dev/null 2>&1; then
    echo "with-ceph: no ceph-mon/radosgw installed: S3 backend tests will be skipped" >&2
    exec "$@"
fi
dir=$(mktemp -d /tmp/regceph-XXXXXX)
rmdir "$dir"
"$here/ceph-rgw.sh" start "$dir" >/dev/null || exit 1
trap '"$here/ceph-rgw.sh" stop "$dir"' EXIT INT TERM
REGISTRY_S3_ENV=$dir/env "$@"
