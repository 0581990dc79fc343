#!/usr/bin/env bash
# Run every real-client interop script in this directory (skopeo.sh, and any
# other *.sh but lib.sh and run.sh) against REGISTRY_BIN, add up the results and
# print "Clients: N passed, N failed, N skipped". Exits non-zero on any failure.
#
#   REGISTRY_BIN=build/registry ./conformance/clients/run.sh [CLIENT...]
#
# CLIENT names a script without .sh (default: all). Each script starts its own
# servers, skips itself when its tool is not installed, and cleans up after itself.
# CLIENT_SCRIPT_TIMEOUT bounds one whole script (default 300 s; a script may ask
# for more with a "# client-script-timeout: SECONDS" line). CLIENTS_SKIP names
# scripts (without .sh) not to run: each is reported as skipped.
set -u

here=$(cd "$(dirname "$0")" && pwd)
export REGISTRY_BIN=${REGISTRY_BIN:-build/registry}
case $REGISTRY_BIN in /*) ;; *) REGISTRY_BIN=$(cd "$here/../.." && pwd)/$REGISTRY_BIN ;; esac

if [ "${CLIENT_STORAGE:-fs}" = s3 ] && { [ -z "${REGISTRY_S3_ENV:-}" ] || [ ! -f "$REGISTRY_S3_ENV" ]; }; then
    echo "== real clients on S3: no RADOS Gateway (REGISTRY_S3_ENV unset), skipped"
    echo "Clients: 0 passed, 0 failed, 0 skipped"
    exit 0
fi

results=$(mktemp "${TMPDIR:-/tmp}/clients-results.XXXXXX") || exit 1
trap 'rm -f "$results"' EXIT
export CLIENT_RESULTS=$results

if [ $# -gt 0 ]; then
    scripts=()
    for c in "$@"; do scripts+=("$here/${c%.sh}.sh"); done
else
    scripts=()
    for f in "$here"/*.sh; do
        case $(basename "$f") in lib.sh | run.sh) continue ;; esac
        scripts+=("$f")
    done
fi

echo "== real clients against $REGISTRY_BIN"
passed=0 failed=0 skipped=0 status=0
for s in "${scripts[@]}"; do
    name=$(basename "$s" .sh)
    echo "-- $name"
    if [ ! -f "$s" ]; then
        echo "FAIL  $name: no such client script $s"
        failed=$((failed + 1)); status=1
        continue
    fi
    case " ${CLIENTS_SKIP:-} " in
        *" $name "*)
            echo "SKIP  $name: in CLIENTS_SKIP"
            skipped=$((skipped + 1))
            continue
            ;;
    esac
    limit=$(sed -n 's/^# client-script-timeout: *\([0-9][0-9]*\)$/\1/p' "$s" | head -n1)
    limit=${CLIENT_SCRIPT_TIMEOUT:-${limit:-300}}
    before=$(wc -l <"$results")
    # In the background so that INT/TERM reach it (timeout runs in its own
    # process group): the script then stops its servers and removes its files.
    timeout --kill-after=10 "$limit" bash "$s" </dev/null &
    child=$!
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 130' INT TERM HUP
    wait "$child"
    rc=$?
    trap - INT TERM HUP
    line=$(sed -n "$((before + 1))p" "$results")
    if [ -z "$line" ]; then
        echo "FAIL  $name: script ended (status $rc) without reporting results"
        failed=$((failed + 1)); status=1
        continue
    fi
    read -r _ p f k <<<"$line"
    passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + k))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL  $name: script exited with status $rc"
        failed=$((failed + 1))
    fi
    [ "$rc" -eq 0 ] && [ "$f" -eq 0 ] || status=1
done

echo "Clients: $passed passed, $failed failed, $skipped skipped"
exit $status
