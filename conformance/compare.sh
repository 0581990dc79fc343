#!/bin/bash
# make conformance-compare: run the conformance suite against Debian's
# docker-registry (CNCF Distribution 2.8) and against our registry, each
# fresh on a free loopback port with a temporary root and deletes enabled,
# and print the results side by side.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
suite=${CONFORMANCE_BIN:-$top/build/conformance}
dist=${DISTRIBUTION_BIN:-/usr/bin/docker-registry}
dir=$(mktemp -d /tmp/compare.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

if [ ! -x "$dist" ]; then
    echo "conformance-compare: $dist not found (Debian package docker-registry)" >&2
    exit 1
fi

port=$(free_port)
mkdir -p "$dir/dist"
cat >"$dir/dist/config.yml" <<EOC
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/dist/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOC
"$dist" serve "$dir/dist/config.yml" >"$dir/dist/log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break
    sleep 0.1
done

echo "== Distribution $("$dist" --version 2>/dev/null | awk '{print $3}') on 127.0.0.1:$port"
OCI_ROOT_URL="http://127.0.0.1:$port" "$suite" >"$dir/dist.out" 2>&1
tail -1 "$dir/dist.out"
echo "== registry (this project)"
REGISTRY_BIN=${REGISTRY_BIN:-$top/build/registry} "$here/run" >"$dir/ours.out" 2>&1
tail -1 "$dir/ours.out"
echo

# Side by side: one row per test.
awk '
    FNR == 1 { file++ }
    /^(PASS|FAIL|SKIP)  / {
        name = substr($0, 7)
        if (!(name in seen)) { seen[name] = 1; order[++n] = name }
        res[file, name] = $1
    }
    END {
        printf "| %-4s | %-12s | %s |\n", "ours", "distribution", "test"
        printf "|------|--------------|------|\n"
        for (i = 1; i <= n; i++)
            printf "| %-4s | %-12s | %s |\n", res[2, order[i]], res[1, order[i]], order[i]
    }' "$dir/dist.out" "$dir/ours.out"
echo
echo "Distribution's failures, with the suite's message:"
grep -A1 '^FAIL' "$dir/dist.out" | grep -v '^--' || echo "(none)"
grep -q '^Conformance: .* 0 failed' "$dir/ours.out"
