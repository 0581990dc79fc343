#!/usr/bin/env python3
"""Chunked-upload client for bench/run.sh (a curl process per PATCH would
time process start-up, and following Location is awkward in sh).

  client.py chunked ADDR REPO FILE CHUNK_BYTES
      Read FILE into memory, then on one keep-alive connection: POST a
      session, PATCH FILE in CHUNK_BYTES pieces with Content-Range (following
      Location each time), PUT ?digest=. Prints "SECONDS BYTES".

The clock covers the POST through the 201 of the PUT; reading the file and
the HEAD that checks the result are outside it. Any unexpected status is an
error (exit 1). Standard library only.
"""
import hashlib
import http.client
import signal
import sys
import time
import urllib.parse

TIMEOUT = 120  # seconds, per socket operation


def conn(addr):
    host, port = addr.rsplit(":", 1)
    return http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)


def call(c, method, path, body=None, headers=None, want=(200,)):
    h = dict(headers or {})
    if body is not None:
        h.setdefault("Content-Type", "application/octet-stream")
        h["Content-Length"] = str(memoryview(body).nbytes)
    elif method in ("POST", "PUT", "PATCH"):
        h["Content-Length"] = "0"
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    if r.status not in want:
        raise RuntimeError(f"{method} {path[:120]}: HTTP {r.status} {data[:200]!r}")
    return r


def location(r):
    loc = r.getheader("Location")
    if not loc:
        raise RuntimeError("response without Location")
    u = urllib.parse.urlsplit(loc)
    return u.path + ("?" + u.query if u.query else "")


def with_digest(path, digest):
    return path + ("&" if "?" in path else "?") + "digest=" + digest


def chunked(addr, repo, fname, chunk):
    with open(fname, "rb") as f:
        data = f.read()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    mv = memoryview(data)
    c = conn(addr)
    c.connect()
    t0 = time.perf_counter()
    r = call(c, "POST", f"/v2/{repo}/blobs/uploads/", want=(202,))
    path = location(r)
    off = 0
    while off < len(data):
        end = min(off + chunk, len(data))
        r = call(c, "PATCH", path, mv[off:end],
                 {"Content-Range": f"{off}-{end - 1}"}, want=(202,))
        path = location(r)
        off = end
    call(c, "PUT", with_digest(path, digest), want=(201,))
    t1 = time.perf_counter()
    # Check, untimed: the blob is there with the right size.
    r = call(c, "HEAD", f"/v2/{repo}/blobs/{digest}")
    size = int(r.getheader("Content-Length", "-1"))
    if size != len(data):
        raise RuntimeError(f"HEAD after chunked upload: size {size}, want {len(data)}")
    print(f"{t1 - t0:.6f} {len(data)}")


def main(argv):
    # Die cleanly (daemon workers are terminated at exit) on SIGTERM.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(argv) == 6 and argv[1] == "chunked":
        chunked(argv[2], argv[3], argv[4], int(argv[5]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except (RuntimeError, OSError, http.client.HTTPException) as e:
        print(f"client.py: {e}", file=sys.stderr)
        sys.exit(1)
