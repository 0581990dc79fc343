/* Bad names, digests and paths: the spec's error, nothing stored, the
 * server stays up. */
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

static void teardown(void)
{
    char dir[400];

    snprintf(dir, sizeof(dir), "%s/data/blobs", srv.root);
    cr_expect_eq(count_files(dir), 0, "bad input stored nothing");
    server_destroy(&srv);
}

TestSuite(badinput, .init = setup, .fini = teardown, .timeout = 60);

static void expect(const char *method, const char *path, long status, const char *code)
{
    struct resp r;
    char c[64];

    http(&srv, method, path, method[0] == 'P' ? "data" : NULL, method[0] == 'P' ? 4 : 0, NULL, &r);
    cr_expect_eq(r.status, status, "%s %s: %ld %s", method, path, r.status, r.body);
    if (code)
        cr_expect_str_eq(resp_error_code(&r, c, sizeof(c)), code, "%s %s: %s", method, path,
                         r.body);
    resp_free(&r);
}

#define ZERO64 "0000000000000000000000000000000000000000000000000000000000000000"

Test(badinput, malformed_digests_are_digest_invalid)
{
    expect("GET", "/v2/a/blobs/sha256:abc", 400, "DIGEST_INVALID");
    expect("GET", "/v2/a/blobs/sha256:" ZERO64 "00", 400, "DIGEST_INVALID");
    expect("GET", "/v2/a/blobs/SHA256:" ZERO64, 400, "DIGEST_INVALID");
    expect("GET",
           "/v2/a/blobs/sha256:"
           "ABCDEF0000000000000000000000000000000000000000000000000000000000",
           400, "DIGEST_INVALID");
    expect("GET", "/v2/a/blobs/nocolon", 400, "DIGEST_INVALID");
    expect("POST", "/v2/a/blobs/uploads/?digest=sha256:xyz", 400, "DIGEST_INVALID");
}

Test(badinput, unknown_algorithm_is_digest_invalid)
{
    expect("GET", "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", 400, "DIGEST_INVALID");
    expect("POST", "/v2/a/blobs/uploads/?digest=sha384:" ZERO64, 400, "DIGEST_INVALID");
}

Test(badinput, bad_repository_names_are_name_invalid)
{
    char path[600], name[300];

    expect("GET", "/v2/Upper/blobs/sha256:" ZERO64, 400, "NAME_INVALID");
    expect("POST", "/v2/UPPER/blobs/uploads/", 400, "NAME_INVALID");
    expect("GET", "/v2/a//b/blobs/sha256:" ZERO64, 400, "NAME_INVALID");
    expect("GET", "/v2/a/../b/blobs/sha256:" ZERO64, 400, "NAME_INVALID");
    expect("GET", "/v2/../blobs/sha256:" ZERO64, 400, "NAME_INVALID");
    expect("GET", "/v2/-a/blobs/sha256:" ZERO64, 400, "NAME_INVALID");
    expect("GET", "/v2/a-/blobs/sha256:" ZERO64, 400, "NAME_INVALID");
    memset(name, 'a', 256);
    name[256] = '\0';
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", name);
    expect("POST", path, 400, "NAME_INVALID");
    name[255] = '\0';
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", name);
    expect("POST", path, 202, NULL);
}

Test(badinput, encoded_traversal_is_refused)
{
    expect("GET", "/v2/a/%2e%2e/b/blobs/sha256:" ZERO64, 400, "NAME_INVALID");
    expect("GET", "/v2/%2E%2E/%2E%2E/etc/blobs/sha256:" ZERO64, 400, "NAME_INVALID");
    expect("GET", "/v2/a%2f..%2fb/blobs/sha256:" ZERO64, 400, "NAME_INVALID");
    /* Decoded, these name no endpoint at all (a NUL is refused outright). */
    expect("GET", "/v2/a/blobs/..%2f..%2fetc%2fpasswd", 404, "UNSUPPORTED");
    expect("GET", "/v2/a/blobs/sha256:..%2f..%2f" ZERO64, 404, "UNSUPPORTED");
    expect("PATCH", "/v2/a/blobs/uploads/..%2f..%2findex%2fdata.mdb", 404, "UNSUPPORTED");
    expect("GET", "/v2/a%00b/blobs/sha256:" ZERO64, 400, "UNSUPPORTED");
    expect("GET", "/v2/a/blobs/sha256:%2e%2e", 400, "DIGEST_INVALID");
    expect("GET", "/v2/a/blobs/uploads/%2e%2e", 404, "BLOB_UPLOAD_UNKNOWN");
    expect("GET", "/v2/a/blobs/uploads/.", 404, "BLOB_UPLOAD_UNKNOWN");
    expect("GET", "/v2/", 200, NULL);
}
