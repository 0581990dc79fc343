#!/usr/bin/env python3
"""Storage lifecycle figures: GC time and bytes freed on a root with N blobs,
and fsck's rehash rate beside `openssl speed -evp sha256`.

  bench/lifecycle.py [REGISTRY_BIN] [N_BLOBS] [FSCK_MB]

Starts the registry on a free loopback port with a temporary root and
[gc] interval = 0, grace = 0; pushes N_BLOBS small distinct blobs over one
keep-alive connection, half of them referenced by manifests (one manifest
per 10 blobs) and half not; runs `registry gc` once the server is stopped
and reads its log line; then pushes FSCK_MB of 8 MiB blobs and runs
`registry fsck`. Prints figures; never fails on timing. Standard library.
"""
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time


def call(c, method, path, body=b"", headers=None, want=(201, 202)):
    h = dict(headers or {})
    h["Content-Length"] = str(len(body))
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    if r.status not in want:
        raise RuntimeError(f"{method} {path}: {r.status} {data[:200]!r}")
    return r


def push(c, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    call(c, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data)
    return d


def manifest(c, repo, tag, cfg, layers):
    m = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
         "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": cfg[0], "size": cfg[1]},
         "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                     "digest": d, "size": n} for d, n in layers]}
    call(c, "PUT", f"/v2/{repo}/manifests/{tag}", json.dumps(m).encode(),
         {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})


def start(binary, root, conf):
    ready = os.path.join(root, "ready")
    if os.path.exists(ready):
        os.unlink(ready)
    log = open(os.path.join(root, "server.log"), "ab")
    p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--root",
                          os.path.join(root, "data"), "--ready-file", ready, "--config", conf],
                         stdout=log, stderr=log)
    for _ in range(300):
        if os.path.exists(ready):
            with open(ready) as f:
                addr = f.read().strip()
            if addr:
                host, port = addr.rsplit(":", 1)
                return p, http.client.HTTPConnection(host, int(port), timeout=60)
        time.sleep(0.05)
    raise RuntimeError("server did not start")


def main(argv):
    binary = argv[1] if len(argv) > 1 else "build/registry"
    n = int(argv[2]) if len(argv) > 2 else 10000
    fsck_mb = int(argv[3]) if len(argv) > 3 else 1024
    root = tempfile.mkdtemp(prefix="reg-lifecycle-")
    conf = os.path.join(root, "registry.conf")
    with open(conf, "w") as f:
        f.write("[storage]\ndelete = true\n[gc]\ninterval = 0\ngrace = 0\n[log]\nlevel = warn\n")
    data = os.path.join(root, "data")
    try:
        p, c = start(binary, root, conf)
        cfg_body = b'{"architecture":"amd64"}'
        cfg = (push(c, "bench/gc", cfg_body), len(cfg_body))
        t0 = time.time()
        group, freed = [], 0
        for i in range(n):
            body = os.urandom(512) + str(i).encode()
            d = push(c, "bench/gc", body)
            if i % 2 == 0:
                group.append((d, len(body)))
                if len(group) == 10:
                    manifest(c, "bench/gc", f"t{i}", cfg, group)
                    group = []
            else:
                freed += len(body)
        push_s = time.time() - t0
        p.terminate()
        p.wait()
        t0 = time.time()
        out = subprocess.run([binary, "gc", "--root", data, "--config", conf],
                             capture_output=True, text=True)
        gc_wall = time.time() - t0
        line = (out.stdout + out.stderr).strip().splitlines()[-1]
        m = re.search(r"(\d+) blobs \((\d+) bytes\).* in ([0-9.]+) s", line)
        print(f"pushed {n} blobs (+{n // 20} manifests) in {push_s:.1f} s")
        print(f"gc: {line.split('gc: ', 1)[-1]}")
        if m:
            print(f"gc on a root with {n} blobs: freed {m.group(1)} blobs, {m.group(2)} bytes "
                  f"(expected {n // 2} blobs, {freed} bytes) in {m.group(3)} s "
                  f"({gc_wall:.2f} s with process start)")

        # fsck rate on bigger blobs.
        p, c = start(binary, root, conf)
        for i in range(max(1, fsck_mb // 8)):
            push(c, "bench/fsck", os.urandom(8 << 20))
        p.terminate()
        p.wait()
        subprocess.run(["sync"])
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        out = subprocess.run([binary, "fsck", "--root", data], capture_output=True, text=True)
        print("fsck (cold cache):", out.stdout.strip().splitlines()[-1])
        out = subprocess.run([binary, "fsck", "--root", data], capture_output=True, text=True)
        print("fsck (warm cache):", out.stdout.strip().splitlines()[-1])
        out = subprocess.run(["openssl", "speed", "-evp", "sha256", "-seconds", "2", "-bytes",
                              "1048576"], capture_output=True, text=True)
        print("openssl speed -evp sha256 (1 MiB blocks):",
              [l for l in out.stdout.splitlines() if l.startswith("sha256")][-1:])
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
