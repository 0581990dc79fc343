#!/bin/sh
# Run criterion test binaries one after another and add up their results.
# usage: tests/run.sh JOBS BINARY...
# Prints each binary's own report, then one line "N passed, N failed".
jobs=$1; shift
passed=0; failed=0; status=0
for bin in "$@"; do
    echo "== $bin"
    out=$(mktemp)
    "$bin" -j"$jobs" --short-filename >"$out" 2>&1
    rc=$?
    cat "$out"
    line=$(grep 'Synthesis:' "$out" | tail -1)
    if [ -z "$line" ]; then
        echo "$bin: no synthesis line (crashed?)"
        failed=$((failed + 1)); status=1
    else
        p=$(echo "$line" | sed -n 's/.*Passing: *\([0-9]*\).*/\1/p')
        f=$(echo "$line" | sed -n 's/.*Failing: *\([0-9]*\).*/\1/p')
        c=$(echo "$line" | sed -n 's/.*Crashing: *\([0-9]*\).*/\1/p')
        passed=$((passed + p)); failed=$((failed + f))
        [ "$f" -eq 0 ] && [ "$c" -eq 0 ] || status=1
    fi
    [ $rc -eq 0 ] || status=1
    rm -f "$out"
done
echo "Total: $passed passed, $failed failed"
exit $status
