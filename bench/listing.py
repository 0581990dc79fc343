#!/usr/bin/env python3
"""Listing latency: one page of tags/list with many tags in the repository,
and one page of _catalog with many repositories. Prints figures; never a
pass/fail test.

usage: bench/listing.py HOST:PORT [TAGS] [REPOS]
The server must be empty-ish and writable (it is filled by this script).
"""
import hashlib
import http.client
import json
import statistics
import sys
import time


def conn(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=30)


def req(c, method, path, body=None, headers=None):
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    if r.status >= 400:
        raise SystemExit(f"{method} {path}: {r.status} {data[:200]!r}")
    return r, data


def push_blob(c, repo, data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    req(c, "POST", f"/v2/{repo}/blobs/uploads/?digest={d}", data,
        {"Content-Type": "application/octet-stream"})
    return d


def push_image(c, repo):
    cfg = b'{"architecture":"amd64","os":"linux"}'
    layer = b"layer " + repo.encode()
    cd, ld = push_blob(c, repo, cfg), push_blob(c, repo, layer)
    m = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd, "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": ld, "size": len(layer)}],
    }, separators=(",", ":")).encode()
    return m


def timed(c, path, runs=50):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        req(c, "GET", path)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times), max(times)


def main():
    addr = sys.argv[1]
    ntags = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
    nrepos = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    c = conn(addr)
    m = push_image(c, "bench/tags")
    h = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
    t = time.perf_counter()
    for i in range(ntags):
        req(c, "PUT", f"/v2/bench/tags/manifests/t{i:06d}", m, h)
    put_s = time.perf_counter() - t
    print(f"tag PUTs: {ntags} in {put_s:.1f} s ({ntags / put_s:.0f}/s)")
    for path in ("/v2/bench/tags/tags/list?n=100",
                 f"/v2/bench/tags/tags/list?n=100&last=t{ntags // 2:06d}",
                 f"/v2/bench/tags/tags/list?n=100&last=t{ntags - 150:06d}",
                 "/v2/bench/tags/tags/list"):
        med, worst = timed(c, path, 20 if "n=" not in path else 50)
        print(f"GET {path}: median {med:.2f} ms, max {worst:.2f} ms ({ntags} tags)")
    blob = b"shared"
    d = "sha256:" + hashlib.sha256(blob).hexdigest()
    for i in range(nrepos):
        req(c, "POST", f"/v2/repo{i:05d}/blobs/uploads/?digest={d}", blob,
            {"Content-Type": "application/octet-stream"})
    for path in ("/v2/_catalog?n=100", f"/v2/_catalog?n=100&last=repo{nrepos // 2:05d}",
                 "/v2/_catalog?n=10000"):
        med, worst = timed(c, path)
        print(f"GET {path}: median {med:.2f} ms, max {worst:.2f} ms ({nrepos + 1} repos)")


if __name__ == "__main__":
    main()
