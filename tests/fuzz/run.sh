#!/bin/sh
# Run libFuzzer harnesses: run.sh BUILD_DIR SECONDS TARGET...
# Each target runs for SECONDS on a fresh copy of tests/fuzz/corpus/TARGET
# (with tests/fuzz/TARGET.dict when there is one); the seed corpus itself is
# never written. A crash, leak, timeout or failed check leaves its input in
# BUILD_DIR/crashes/ and makes the whole run fail, after every target has run.
set -u
dir=$1
secs=$2
shift 2
here=$(dirname "$0")
failed=""
mkdir -p "$dir/crashes"
for t in "$@"; do
    work="$dir/work/$t"
    rm -rf "$work"
    mkdir -p "$work"
    cp "$here/corpus/$t"/* "$work/"
    dict=""
    [ -f "$here/$t.dict" ] && dict="-dict=$here/$t.dict"
    log="$dir/$t.log"
    # -timeout: an input that takes this long counts as a hang.
    "$dir/fuzz_$t" -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$dir/crashes/$t-" $dict "$work" >"$log" 2>&1
    rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    if [ "$rc" -ne 0 ]; then
        failed="$failed $t"
        echo "fuzz $t: FAILED (exit $rc); log $log, input in $dir/crashes/"
        grep -E '^(==[0-9]+==ERROR|SUMMARY|.*check failed|.*runtime error)' "$log" | head -5
    else
        echo "fuzz $t: ok, ${execs:-?} runs in ${secs} s (${rate:-?}/s), corpus $(ls "$work" | wc -l)"
    fi
done
if [ -n "$failed" ]; then
    echo "Fuzz: failed:$failed"
    exit 1
fi
echo "Fuzz: $# targets, no crash"
