/* Upload workflows against a real server: sessions, chunks, resume. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct server srv;

static void setup(void)
{
    server_start(&srv, NULL);
}

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(uploads, .init = setup, .fini = teardown, .timeout = 120);

static long req_status(const char *method, const char *path, const void *body, size_t len,
                       const char *const *hdrs, char *code, size_t csize)
{
    struct resp r;
    long st;

    http(&srv, method, path, body, len, hdrs, &r);
    st = r.status;
    if (code)
        resp_error_code(&r, code, csize);
    resp_free(&r);
    return st;
}

static void assert_blob(const char *repo, const char *digest, const void *data, size_t len)
{
    char path[512];
    struct resp r;

    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "GET %s: %ld", path, r.status);
    cr_assert_eq(r.len, len);
    cr_assert_eq(memcmp(r.body, data, len), 0);
    resp_free(&r);
}

static void patch(const char *loc, const char *data, size_t off, size_t len, long want,
                  const char *want_range)
{
    char cr[96], v[96];
    const char *h[] = {cr, NULL};
    struct resp r;

    snprintf(cr, sizeof(cr), "Content-Range: %zu-%zu", off, off + len - 1);
    http(&srv, "PATCH", loc, data + off, len, h, &r);
    cr_assert_eq(r.status, want, "PATCH %zu-%zu: %ld %s", off, off + len - 1, r.status, r.body);
    if (want_range)
        cr_assert_str_eq(resp_header(&r, "Range", v, sizeof(v)), want_range);
    resp_free(&r);
}

Test(uploads, post_opens_session_with_location_uuid_and_empty_range)
{
    struct resp r;
    char v[256], u[128];

    http(&srv, "POST", "/v2/a/blobs/uploads/", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 202);
    cr_assert(resp_header(&r, "Location", v, sizeof(v)));
    cr_assert(resp_header(&r, "Docker-Upload-UUID", u, sizeof(u)));
    cr_assert(strstr(v, u), "Location %s names the session %s", v, u);
    cr_assert_eq(strncmp(v, "/v2/a/blobs/uploads/", 20), 0);
    cr_assert_str_eq(resp_header(&r, "Range", v, sizeof(v)), "0-0");
    resp_free(&r);
}

Test(uploads, monolithic_post_with_digest_creates_blob)
{
    size_t len = 1 << 20;
    char *data = rand_bytes(len), d[200], path[400], v[256];
    struct resp r;

    digest_str("sha256", data, len, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/a/blobs/uploads/?digest=%s", d);
    http(&srv, "POST", path, data, len, NULL, &r);
    cr_assert_eq(r.status, 201);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    snprintf(path, sizeof(path), "/v2/a/blobs/%s", d);
    cr_assert_str_eq(resp_header(&r, "Location", v, sizeof(v)), path);
    resp_free(&r);
    assert_blob("a", d, data, len);
    free(data);
}

Test(uploads, chunked_patches_then_put_with_last_chunk)
{
    size_t len = 250000;
    char *data = rand_bytes(len), d[200], loc[400], path[1024], v[256];
    struct resp r;

    digest_str("sha256", data, len, d, sizeof(d));
    start_upload(&srv, "chunky", loc, sizeof(loc));
    patch(loc, data, 0, 100000, 202, "0-99999");
    patch(loc, data, 100000, 100000, 202, "0-199999");
    http(&srv, "GET", loc, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 204);
    cr_assert_str_eq(resp_header(&r, "Range", v, sizeof(v)), "0-199999");
    resp_free(&r);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    http(&srv, "PUT", path, data + 200000, 50000, NULL, &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    resp_free(&r);
    assert_blob("chunky", d, data, len);
    free(data);
}

Test(uploads, streamed_patch_without_content_range_appends)
{
    size_t len = 5000;
    char *data = rand_bytes(len), d[200], loc[400], path[1024];

    digest_str("sha256", data, len, d, sizeof(d));
    start_upload(&srv, "s", loc, sizeof(loc));
    cr_assert_eq(req_status("PATCH", loc, data, 3000, NULL, NULL, 0), 202);
    cr_assert_eq(req_status("PATCH", loc, data + 3000, 2000, NULL, NULL, 0), 202);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    cr_assert_eq(req_status("PUT", path, NULL, 0, NULL, NULL, 0), 201);
    assert_blob("s", d, data, len);
    free(data);
}

Test(uploads, post_then_put_whole_body_as_containerd_does)
{
    size_t len = 70000;
    char *data = rand_bytes(len), d[200], loc[400], path[1024], v[256];
    struct resp r;

    digest_str("sha256", data, len, d, sizeof(d));
    start_upload(&srv, "ctr/img", loc, sizeof(loc));
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    http(&srv, "PUT", path, data, len, NULL, &r);
    cr_assert_eq(r.status, 201);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    resp_free(&r);
    assert_blob("ctr/img", d, data, len);
    free(data);
}

Test(uploads, chunk_with_gap_or_overlap_is_416_and_upload_survives)
{
    size_t len = 3000;
    char *data = rand_bytes(len), d[200], loc[400], path[1024], code[64];

    digest_str("sha256", data, len, d, sizeof(d));
    start_upload(&srv, "g", loc, sizeof(loc));
    patch(loc, data, 0, 1000, 202, "0-999");
    patch(loc, data, 1500, 500, 416, "0-999");   /* gap */
    patch(loc, data, 500, 1000, 416, "0-999");   /* overlap */
    patch(loc, data, 1000, 2000, 202, "0-2999"); /* right place still works */
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    cr_assert_eq(req_status("PUT", path, NULL, 0, NULL, code, sizeof(code)), 201);
    assert_blob("g", d, data, len);
    free(data);
}

Test(uploads, content_range_disagreeing_with_content_length_is_416)
{
    char loc[400], code[64];
    const char *h[] = {"Content-Range: 0-99", NULL};

    start_upload(&srv, "g", loc, sizeof(loc));
    cr_assert_eq(req_status("PATCH", loc, "abc", 3, h, code, sizeof(code)), 416);
    cr_assert_str_eq(code, "BLOB_UPLOAD_INVALID");
}

/* Found by fuzz_range: 0-18446744073709551615 is 2^64 bytes, whose length
 * wrapped to 0 and so agreed with an empty body. */
Test(uploads, content_range_longer_than_64_bits_is_400)
{
    char loc[400], code[64];
    const char *h[] = {"Content-Range: 0-18446744073709551615", NULL};

    start_upload(&srv, "g", loc, sizeof(loc));
    cr_assert_eq(req_status("PATCH", loc, "", 0, h, code, sizeof(code)), 400);
    cr_assert_str_eq(code, "BLOB_UPLOAD_INVALID");
}

Test(uploads, cancelled_upload_is_gone)
{
    char loc[400], code[64], path[1024];

    start_upload(&srv, "c", loc, sizeof(loc));
    cr_assert_eq(req_status("PATCH", loc, "abc", 3, NULL, NULL, 0), 202);
    cr_assert_eq(req_status("DELETE", loc, NULL, 0, NULL, NULL, 0), 204);
    cr_assert_eq(req_status("PATCH", loc, "def", 3, NULL, code, sizeof(code)), 404);
    cr_assert_str_eq(code, "BLOB_UPLOAD_UNKNOWN");
    cr_assert_eq(req_status("GET", loc, NULL, 0, NULL, code, sizeof(code)), 404);
    snprintf(path, sizeof(path),
             "%s?digest=sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
             loc);
    cr_assert_eq(req_status("PUT", path, NULL, 0, NULL, code, sizeof(code)), 404);
    cr_assert_str_eq(code, "BLOB_UPLOAD_UNKNOWN");
    cr_assert_eq(req_status("DELETE", loc, NULL, 0, NULL, code, sizeof(code)), 404);
    snprintf(path, sizeof(path), "%s/data/uploads", srv.root);
    cr_assert_eq(count_files(path), 0, "the upload file is removed");
}

Test(uploads, unknown_session_is_404_blob_upload_unknown)
{
    char code[64];
    const char *p = "/v2/a/blobs/uploads/01234567-89ab-4def-8123-456789abcdef";

    cr_assert_eq(req_status("PATCH", p, "x", 1, NULL, code, sizeof(code)), 404);
    cr_assert_str_eq(code, "BLOB_UPLOAD_UNKNOWN");
    cr_assert_eq(req_status("GET", p, NULL, 0, NULL, code, sizeof(code)), 404);
    cr_assert_eq(
        req_status("GET", "/v2/a/blobs/uploads/not-a-uuid", NULL, 0, NULL, code, sizeof(code)),
        404);
    cr_assert_str_eq(code, "BLOB_UPLOAD_UNKNOWN");
}

Test(uploads, session_of_another_repository_is_unknown)
{
    char loc[400], other[500], code[64];

    start_upload(&srv, "mine", loc, sizeof(loc));
    snprintf(other, sizeof(other), "/v2/theirs/blobs/uploads/%s", strrchr(loc, '/') + 1);
    cr_assert_eq(req_status("PATCH", other, "x", 1, NULL, code, sizeof(code)), 404);
    cr_assert_str_eq(code, "BLOB_UPLOAD_UNKNOWN");
}

Test(uploads, digest_mismatch_is_400_and_nothing_is_stored)
{
    char data[] = "some bytes", wrong[200], path[1024], loc[400], code[64], dir[400];

    digest_str("sha256", "other bytes", 11, wrong, sizeof(wrong));
    snprintf(path, sizeof(path), "/v2/m/blobs/uploads/?digest=%s", wrong);
    cr_assert_eq(req_status("POST", path, data, strlen(data), NULL, code, sizeof(code)), 400);
    cr_assert_str_eq(code, "DIGEST_INVALID");
    start_upload(&srv, "m", loc, sizeof(loc));
    snprintf(path, sizeof(path), "%s?digest=%s", loc, wrong);
    cr_assert_eq(req_status("PUT", path, data, strlen(data), NULL, code, sizeof(code)), 400);
    cr_assert_str_eq(code, "DIGEST_INVALID");
    snprintf(path, sizeof(path), "/v2/m/blobs/%s", wrong);
    cr_assert_eq(req_status("HEAD", path, NULL, 0, NULL, NULL, 0), 404);
    snprintf(dir, sizeof(dir), "%s/data/blobs", srv.root);
    cr_assert_eq(count_files(dir), 0);
    snprintf(dir, sizeof(dir), "%s/data/uploads", srv.root);
    cr_assert_eq(count_files(dir), 0);
}

Test(uploads, put_without_digest_is_400_and_session_survives)
{
    char data[] = "abc", loc[400], code[64], path[1024], d[200];

    digest_str("sha256", data, 3, d, sizeof(d));
    start_upload(&srv, "n", loc, sizeof(loc));
    cr_assert_eq(req_status("PATCH", loc, data, 3, NULL, NULL, 0), 202);
    cr_assert_eq(req_status("PUT", loc, NULL, 0, NULL, code, sizeof(code)), 400);
    cr_assert_str_eq(code, "DIGEST_INVALID");
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    cr_assert_eq(req_status("PUT", path, NULL, 0, NULL, NULL, 0), 201);
}

Test(uploads, sha512_monolithic_and_chunked)
{
    size_t len = 10000;
    char *data = rand_bytes(len), d[300], path[1024], loc[400];

    digest_str("sha512", data, len, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/s5/blobs/uploads/?digest=%s", d);
    cr_assert_eq(req_status("POST", path, data, len, NULL, NULL, 0), 201);
    assert_blob("s5", d, data, len);
    start_upload(&srv, "s5b", loc, sizeof(loc));
    patch(loc, data, 0, 4000, 202, "0-3999");
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    cr_assert_eq(req_status("PUT", path, data + 4000, len - 4000, NULL, NULL, 0), 201);
    assert_blob("s5b", d, data, len);
    free(data);
}

Test(uploads, cross_repository_mount_links_existing_blob)
{
    char data[] = "shared base layer", d[200], path[1024], v[256];
    struct resp r;

    push_blob(&srv, "base/os", data, strlen(data), d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/app/blobs/uploads/?mount=%s&from=base/os", d);
    http(&srv, "POST", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 201);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    resp_free(&r);
    assert_blob("app", d, data, strlen(data));
}

Test(uploads, mount_from_repository_without_blob_opens_session)
{
    char data[] = "only in a", d[200], path[1024], v[256];
    struct resp r;

    push_blob(&srv, "a", data, strlen(data), d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/c/blobs/uploads/?mount=%s&from=b", d);
    http(&srv, "POST", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 202);
    cr_assert(resp_header(&r, "Location", v, sizeof(v)));
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/c/blobs/%s", d);
    cr_assert_eq(req_status("HEAD", path, NULL, 0, NULL, NULL, 0), 404);
}

Test(uploads, session_survives_kill_9_and_resumes)
{
    size_t len = 200000;
    char *data = rand_bytes(len), d[200], loc[400], path[1024], v[96];
    struct resp r;

    digest_str("sha256", data, len, d, sizeof(d));
    start_upload(&srv, "resume/me", loc, sizeof(loc));
    patch(loc, data, 0, 120000, 202, "0-119999");
    server_kill9(&srv);
    server_restart(&srv);
    http(&srv, "GET", loc, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 204);
    cr_assert_str_eq(resp_header(&r, "Range", v, sizeof(v)), "0-119999");
    resp_free(&r);
    patch(loc, data, 120000, 50000, 202, "0-169999");
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    cr_assert_eq(req_status("PUT", path, data + 170000, 30000, NULL, NULL, 0), 201);
    assert_blob("resume/me", d, data, len);
    free(data);
}

/* The client sends part of a PATCH body and hangs up: what arrived is kept
 * and the upload goes on from there. */
Test(uploads, client_disconnect_mid_patch_leaves_upload_resumable)
{
    size_t len = 600000, sent = 300000, off;
    char *data = rand_bytes(len), d[200], loc[400], path[1024], v[96], *req;
    struct resp r;
    int n, i;

    digest_str("sha256", data, len, d, sizeof(d));
    start_upload(&srv, "dc", loc, sizeof(loc));
    req = malloc(sent + 512);
    n = snprintf(req, 512, "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n", loc, len);
    memcpy(req + n, data, sent);
    raw_send(&srv, req, (size_t)n + sent, 1, NULL, 0);
    free(req);
    /* The server notices the hang-up asynchronously and then checkpoints
     * what it received; poll until the session shows those bytes. */
    for (i = 0; i < 200; i++) {
        http(&srv, "GET", loc, NULL, 0, NULL, &r);
        if (r.status != 204 || (resp_header(&r, "Range", v, sizeof(v)) && strcmp(v, "0-0")))
            break;
        resp_free(&r);
        usleep(20000);
    }
    cr_assert_eq(r.status, 204, "session must stay usable: %ld", r.status);
    cr_assert(resp_header(&r, "Range", v, sizeof(v)));
    resp_free(&r);
    off = strtoull(strchr(v, '-') + 1, NULL, 10);
    if (strcmp(v, "0-0") == 0)
        off = 0;
    else
        off += 1;
    cr_assert_leq(off, sent);
    snprintf(path, sizeof(path), "%s?digest=%s", loc, d);
    cr_assert_eq(req_status("PUT", path, data + off, len - off, NULL, NULL, 0), 201);
    assert_blob("dc", d, data, len);
    free(data);
}

Test(uploads, body_shorter_than_content_length_stores_nothing)
{
    char data[] = "short body", d[200], req[1024], dir[400], path[400];
    int n;

    digest_str("sha256", data, strlen(data), d, sizeof(d));
    n = snprintf(req, sizeof(req),
                 "POST /v2/short/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 100\r\n\r\n%s",
                 d, data);
    raw_send(&srv, req, (size_t)n, 0, NULL, 0);
    snprintf(path, sizeof(path), "/v2/short/blobs/%s", d);
    cr_assert_eq(req_status("HEAD", path, NULL, 0, NULL, NULL, 0), 404);
    snprintf(dir, sizeof(dir), "%s/data/blobs", srv.root);
    cr_assert_eq(count_files(dir), 0);
}

Test(uploads, body_longer_than_content_length_is_not_taken_as_blob)
{
    char data[] = "0123456789EXTRA-GARBAGE", d[200], req[1024], out[4096], path[400];
    int n;

    digest_str("sha256", data, 10, d, sizeof(d));
    n = snprintf(req, sizeof(req),
                 "POST /v2/long/blobs/uploads/?digest=%s HTTP/1.1\r\nHost: x\r\n"
                 "Content-Length: 10\r\n\r\n%s",
                 d, data);
    raw_send(&srv, req, (size_t)n, 0, out, sizeof(out));
    cr_assert(strstr(out, "201 Created"), "first request completes: %s", out);
    cr_assert(!strstr(out, "500"), "the excess is never taken as data: %s", out);
    snprintf(path, sizeof(path), "/v2/long/blobs/%s", d);
    cr_assert_eq(req_status("HEAD", path, NULL, 0, NULL, NULL, 0), 200);
    cr_assert_eq(req_status("GET", "/v2/", NULL, 0, NULL, NULL, 0), 200, "server stays up");
}
