#!/usr/bin/env python3
"""Concurrent image pull for bench/run.sh. Standard library only.

  pull.py push ADDR REPO TAG LAYER_FILE...
      Push each LAYER_FILE as a blob (POST a session, then PUT ?digest= with
      the body: both servers store that), a small image config, and an OCI
      image manifest under TAG, all on one keep-alive connection. Prints
      "MANIFEST_DIGEST BYTES_PER_CLIENT SECONDS", where BYTES_PER_CLIENT is
      the manifest's length plus the config's and every layer's size, and
      SECONDS the time from the connection to the manifest's 201 (the files
      are read into memory and hashed before it). bench/run.sh pushes untimed;
      bench/s3.sh times it.

  pull.py pull ADDR REPO TAG CLIENTS MANIFEST_DIGEST
      Start CLIENTS processes. Each opens its own connection, waits until all
      are connected, then on that keep-alive connection GETs the manifest
      (checking its sha256 against MANIFEST_DIGEST), the config, and every
      layer in order, reading each body to its end and discarding it. Every
      status must be 200 and every body exactly its descriptor's size.
      Prints "SECONDS BYTES": BYTES is the sum over all clients, SECONDS the
      wall time from the start signal to the end of the last client.
      Any failure is an error (exit 1).
"""
import hashlib
import http.client
import json
import multiprocessing as mp
import queue
import signal
import sys
import time
import urllib.parse

TIMEOUT = 120  # seconds, per socket operation
BUF = 1 << 20  # read size for blob bodies
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def conn(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)


def call(c, method, path, body=b"", headers=None, want=(201,)):
    h = dict(headers or {})
    h["Content-Length"] = str(len(body))
    if body:
        h.setdefault("Content-Type", "application/octet-stream")
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    if r.status not in want:
        raise RuntimeError(f"{method} {path[:120]}: HTTP {r.status} {data[:200]!r}")
    return r


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_blob(c, repo, data, d):
    r = call(c, "POST", f"/v2/{repo}/blobs/uploads/", want=(202,))
    loc = r.getheader("Location") or ""
    u = urllib.parse.urlsplit(loc)
    path = u.path + ("?" + u.query + "&" if u.query else "?") + "digest=" + d
    call(c, "PUT", path, data)
    return d


def push(addr, repo, tag, files):
    blobs = []
    for fn in files:
        with open(fn, "rb") as f:
            data = f.read()
        blobs.append((data, sha256(data)))
    t0 = time.monotonic()
    c = conn(addr)
    layers = []
    for data, d in blobs:
        push_blob(c, repo, data, d)
        layers.append({"mediaType": OCI_LAYER, "digest": d, "size": len(data)})
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]},
    }, separators=(",", ":")).encode()
    cd = sha256(config)
    push_blob(c, repo, config, cd)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": cd, "size": len(config)},
        "layers": layers,
    }, indent=3).encode()
    call(c, "PUT", f"/v2/{repo}/manifests/{tag}", manifest,
         {"Content-Type": OCI_MANIFEST})
    t1 = time.monotonic()
    c.close()
    md = "sha256:" + hashlib.sha256(manifest).hexdigest()
    total = len(manifest) + len(config) + sum(l["size"] for l in layers)
    print(f"{md} {total} {t1 - t0:.6f}")


def get_all(c, path, buf, headers=None):
    """GET path, read the body to its end into buf (discarded); return
    (status, bytes read, first bytes up to 64 KiB)."""
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    n = 0
    head = b""
    mv = memoryview(buf)
    while True:
        k = r.readinto(mv)
        if not k:
            break
        if n < 65536:
            head += bytes(mv[:min(k, 65536 - n)])
        n += k
    return r.status, n, head


def client(addr, repo, tag, mdigest, barrier, results):
    out = (False, 0, 0.0, 0.0, "")
    try:
        try:
            c = conn(addr)
            c.connect()
        except Exception:
            barrier.abort()  # release the others at once
            raise
        buf = bytearray(BUF)
        barrier.wait(TIMEOUT)
        t0 = time.monotonic()
        st, n, body = get_all(c, f"/v2/{repo}/manifests/{tag}", buf,
                              {"Accept": OCI_MANIFEST})
        if st != 200:
            raise RuntimeError(f"GET manifest: HTTP {st} {body[:200]!r}")
        if "sha256:" + hashlib.sha256(body).hexdigest() != mdigest or n != len(body):
            raise RuntimeError(f"GET manifest: {n} bytes, not the manifest pushed")
        total = n
        m = json.loads(body)
        for desc in [m["config"]] + m["layers"]:
            st, n, head = get_all(c, f"/v2/{repo}/blobs/{desc['digest']}", buf)
            if st != 200 or n != desc["size"]:
                raise RuntimeError(f"GET {desc['digest'][:19]}: HTTP {st}, {n} bytes "
                                   f"(want 200, {desc['size']}) {head[:100]!r}"[:300])
            total += n
        t1 = time.monotonic()
        c.close()
        out = (True, total, t0, t1, "")
    except Exception as e:  # reported by the parent
        out = (False, 0, 0.0, 0.0, f"{type(e).__name__}: {e}")
    results.put(out)


def pull(addr, repo, tag, nclients, mdigest):
    ctx = mp.get_context("fork")
    barrier = ctx.Barrier(nclients)
    results = ctx.Queue()
    procs = [ctx.Process(target=client, args=(addr, repo, tag, mdigest, barrier, results),
                         daemon=True) for _ in range(nclients)]
    for p in procs:
        p.start()
    try:
        got = [results.get(timeout=TIMEOUT * 40) for _ in procs]
    except queue.Empty:
        raise RuntimeError("a client gave no result in time") from None
    for p in procs:
        p.join(TIMEOUT)
    bad = [g[4] for g in got if not g[0]]
    if bad:
        raise RuntimeError(f"{len(bad)}/{nclients} clients failed; first: {bad[0]}")
    start = min(g[2] for g in got)
    end = max(g[3] for g in got)
    print(f"{end - start:.6f} {sum(g[1] for g in got)}")


def main(argv):
    # Die cleanly (daemon workers are terminated at exit) on SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(argv) >= 6 and argv[1] == "push":
        push(argv[2], argv[3], argv[4], argv[5:])
    elif len(argv) == 7 and argv[1] == "pull":
        pull(argv[2], argv[3], argv[4], int(argv[5]), argv[6])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except (RuntimeError, OSError, ValueError, queue.Empty, http.client.HTTPException) as e:
        print(f"pull.py: {e}", file=sys.stderr)
        sys.exit(1)
