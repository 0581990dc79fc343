/* Blob pull, range and delete, against a real server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct server srv;

static void setup(void)
{
    server_start(&srv, NULL);
}

static void setup_delete(void)
{
    server_start(&srv, "[storage]\ndelete = true\n");
}

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(blobs, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(blobs_delete, .init = setup_delete, .fini = teardown, .timeout = 120);

Test(blobs, base_endpoint_answers_empty_json_with_api_version)
{
    struct resp r;
    char v[64];

    http(&srv, "GET", "/v2/", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{}");
    cr_assert_str_eq(resp_header(&r, "Docker-Distribution-API-Version", v, sizeof(v)),
                     "registry/2.0");
    resp_free(&r);
}

Test(blobs, every_response_carries_api_version_even_errors)
{
    struct resp r;
    char v[64], code[64];

    http(&srv, "GET",
         "/v2/nope/blobs/sha256:"
         "0000000000000000000000000000000000000000000000000000000000000000",
         NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(resp_error_code(&r, code, sizeof(code)), "BLOB_UNKNOWN");
    cr_assert(resp_header(&r, "Docker-Distribution-API-Version", v, sizeof(v)));
    resp_free(&r);
}

Test(blobs, get_returns_bytes_with_digest_length_etag_and_accept_ranges)
{
    size_t len = 300000;
    char *data = rand_bytes(len), d[200], path[400], v[256];
    struct resp r;

    push_blob(&srv, "lib/app", data, len, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/lib/app/blobs/%s", d);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, len);
    cr_assert_eq(memcmp(r.body, data, len), 0);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    cr_assert_str_eq(resp_header(&r, "Content-Length", v, sizeof(v)), "300000");
    cr_assert_str_eq(resp_header(&r, "Accept-Ranges", v, sizeof(v)), "bytes");
    cr_assert(resp_header(&r, "ETag", v, sizeof(v)) && strstr(v, d));
    resp_free(&r);
    http(&srv, "HEAD", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 0);
    cr_assert_str_eq(resp_header(&r, "Content-Length", v, sizeof(v)), "300000");
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    resp_free(&r);
    free(data);
}

Test(blobs, range_request_returns_206_with_content_range)
{
    size_t len = 1000;
    char *data = rand_bytes(len), d[200], path[400], v[256];
    const char *h1[] = {"Range: bytes=100-199", NULL};
    const char *h2[] = {"Range: bytes=-10", NULL};
    const char *h3[] = {"Range: bytes=990-", NULL};
    const char *h4[] = {"Range: bytes=900-5000", NULL};
    struct resp r;

    push_blob(&srv, "r", data, len, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/r/blobs/%s", d);
    http(&srv, "GET", path, NULL, 0, h1, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.len, 100);
    cr_assert_eq(memcmp(r.body, data + 100, 100), 0);
    cr_assert_str_eq(resp_header(&r, "Content-Range", v, sizeof(v)), "bytes 100-199/1000");
    resp_free(&r);
    http(&srv, "GET", path, NULL, 0, h2, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.len, 10);
    cr_assert_eq(memcmp(r.body, data + 990, 10), 0);
    resp_free(&r);
    http(&srv, "GET", path, NULL, 0, h3, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_str_eq(resp_header(&r, "Content-Range", v, sizeof(v)), "bytes 990-999/1000");
    resp_free(&r);
    http(&srv, "GET", path, NULL, 0, h4, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.len, 100);
    resp_free(&r);
    free(data);
}

Test(blobs, unsatisfiable_range_is_416_with_size)
{
    char data[] = "0123456789", d[200], path[400], v[256], code[64];
    const char *h[] = {"Range: bytes=10-20", NULL};
    struct resp r;

    push_blob(&srv, "r", data, 10, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/r/blobs/%s", d);
    http(&srv, "GET", path, NULL, 0, h, &r);
    cr_assert_eq(r.status, 416);
    cr_assert_str_eq(resp_header(&r, "Content-Range", v, sizeof(v)), "bytes */10");
    cr_assert_str_neq(resp_error_code(&r, code, sizeof(code)), "");
    resp_free(&r);
}

Test(blobs, malformed_range_is_ignored_and_whole_blob_served)
{
    char data[] = "0123456789", d[200], path[400];
    const char *h[] = {"Range: bytes=abc", NULL};
    struct resp r;

    push_blob(&srv, "r", data, 10, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/r/blobs/%s", d);
    http(&srv, "GET", path, NULL, 0, h, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 10);
    resp_free(&r);
}

Test(blobs, blob_is_visible_only_in_repositories_it_was_pushed_to)
{
    char data[] = "private layer", d[200], path[400], code[64];
    struct resp r;

    push_blob(&srv, "team-a/app", data, strlen(data), d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/team-b/app/blobs/%s", d);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(resp_error_code(&r, code, sizeof(code)), "BLOB_UNKNOWN");
    resp_free(&r);
}

Test(blobs, same_blob_in_many_repositories_is_one_file)
{
    size_t len = 4096;
    char *data = rand_bytes(len), d[200], dir[400];
    int i;

    for (i = 0; i < 5; i++) {
        char repo[32];

        snprintf(repo, sizeof(repo), "repo%d", i);
        push_blob(&srv, repo, data, len, d, sizeof(d));
    }
    snprintf(dir, sizeof(dir), "%s/data/blobs", srv.root);
    cr_assert_eq(count_files(dir), 1);
    free(data);
}

Test(blobs, delete_is_unsupported_when_disabled)
{
    char data[] = "x", d[200], path[400], code[64];
    struct resp r;

    push_blob(&srv, "r", data, 1, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/r/blobs/%s", d);
    http(&srv, "DELETE", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 405);
    cr_assert_str_eq(resp_error_code(&r, code, sizeof(code)), "UNSUPPORTED");
    resp_free(&r);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
}

Test(blobs_delete, delete_removes_blob_from_repository)
{
    char data[] = "to delete", d[200], path[400], code[64];
    struct resp r;

    push_blob(&srv, "r", data, strlen(data), d, sizeof(d));
    push_blob(&srv, "other", data, strlen(data), d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/r/blobs/%s", d);
    http(&srv, "DELETE", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 202);
    resp_free(&r);
    http(&srv, "HEAD", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
    http(&srv, "DELETE", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(resp_error_code(&r, code, sizeof(code)), "BLOB_UNKNOWN");
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/other/blobs/%s", d);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "other repositories keep the blob");
    resp_free(&r);
}

Test(blobs, unknown_endpoint_is_404_and_wrong_method_405)
{
    struct resp r;
    char code[64];

    http(&srv, "GET", "/v2/foo/unknown/thing", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 404);
    cr_assert_str_eq(resp_error_code(&r, code, sizeof(code)), "UNSUPPORTED");
    resp_free(&r);
    http(&srv, "GET", "/v1/", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 404);
    resp_free(&r);
    http(&srv, "POST",
         "/v2/foo/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000",
         "x", 1, NULL, &r);
    cr_assert_eq(r.status, 405);
    cr_assert_str_eq(resp_error_code(&r, code, sizeof(code)), "UNSUPPORTED");
    resp_free(&r);
}
