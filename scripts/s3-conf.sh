#!/bin/sh
# Print the registry.conf lines that put a server's blobs on the throw-away
# RADOS Gateway named in REGISTRY_S3_ENV (scripts/with-ceph.sh), under key
# prefix PREFIX of bucket BUCKET (default registry-tests), which it creates.
# Exits 3 when there is no gateway, so callers can skip.
#   usage: scripts/s3-conf.sh PREFIX [BUCKET]
set -u
prefix=$1
bucket=${2:-registry-tests}
if [ -z "${REGISTRY_S3_ENV:-}" ] || [ ! -f "$REGISTRY_S3_ENV" ]; then
    exit 3
fi
# shellcheck disable=SC1090
. "$REGISTRY_S3_ENV"
# PUT bucket: 200 when made, 409 when it is ours already.
code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT --noproxy '*' \
    -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --aws-sigv4 "aws:amz:$S3_REGION:s3" \
    --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" "$S3_ENDPOINT/$bucket") || exit 1
case $code in 200 | 409) ;; *) echo "s3-conf: creating bucket $bucket: HTTP $code" >&2; exit 1 ;; esac
printf '[storage]\ndriver = s3\n[s3]\nendpoint = %s\nregion = %s\nbucket = %s\nprefix = %s\n' \
    "$S3_ENDPOINT" "$S3_REGION" "$bucket" "$prefix"
printf 'access_key = %s\nsecret_key = %s\npath_style = true\npart_size = 5M\n' \
    "$S3_ACCESS_KEY" "$S3_SECRET_KEY"
