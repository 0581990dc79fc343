/* HTTP strictness: framing a proxy in front of us could read differently
 * (request smuggling), targets that libmicrohttpd would cut short, and
 * encodings we cannot delimit. Each refusal answers once, with the error
 * JSON, and changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"

static struct server srv;

static void setup(void)
{
    server_start(&srv, NULL);
}

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(http, .init = setup, .fini = teardown, .timeout = 60);

/* How many responses (status lines: "HTTP/1.1 NNN" at a line start) an
 * answer holds. */
static int responses(const char *out)
{
    int n = 0;
    const char *p = out;

    while ((p = strstr(p, "HTTP/1.1 ")) != NULL) {
        if ((p == out || p[-1] == '\n') && strspn(p + 9, "0123456789") == 3)
            n++;
        p += 9;
    }
    return n;
}

/* Send req raw and check the one answer: its status and error code (NULL:
 * any body). */
static void expect_raw(const char *req, const char *status_line, const char *code)
{
    char out[8192], want[128];

    raw_send(&srv, req, strlen(req), 0, out, sizeof(out));
    cr_expect_eq(strncmp(out, status_line, strlen(status_line)), 0, "%s\n-> %s", req, out);
    cr_expect_eq(responses(out), 1, "one answer only:\n%s\n-> %s", req, out);
    snprintf(want, sizeof(want), "\"code\":\"%s\"", code);
    if (code)
        cr_expect(strstr(out, want), "%s\n-> %s", req, out);
}

/* An image tagged tag in repo; its manifest digest in digest. */
static void push_image(const char *repo, const char *tag, const char *layer_type, char *digest,
                       size_t dsize)
{
    char cfg[200], layer[200], m[2048], path[512];
    const char *cfg_body = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    const char *h[] = {"Content-Type: " OCI_MANIFEST, NULL};
    char *data = rand_bytes(64);
    struct resp r;

    push_blob(&srv, repo, cfg_body, strlen(cfg_body), cfg, sizeof(cfg));
    push_blob(&srv, repo, data, 64, layer, sizeof(layer));
    snprintf(m, sizeof(m),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":64}]}",
             OCI_MANIFEST, cfg, strlen(cfg_body), layer_type, layer);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, tag);
    http(&srv, "PUT", path, m, strlen(m), h, &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    cr_assert(resp_header(&r, "Docker-Content-Digest", digest, dsize));
    resp_free(&r);
    free(data);
}

static void expect_tag_at(const char *repo, const char *tag, const char *digest)
{
    char path[512], got[200];
    struct resp r;

    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, tag);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_expect_eq(r.status, 200, "%s: %s", path, r.body);
    cr_expect_str_eq(resp_header(&r, "Docker-Content-Digest", got, sizeof(got)) ? got : "", digest,
                     "%s moved", path);
    resp_free(&r);
}

Test(http, nul_in_the_path_is_400_and_does_not_overwrite_the_tag_it_would_cut_to)
{
    char before[200], other[200], path[512];
    const char *h[] = {"Content-Type: " OCI_MANIFEST, NULL};
    char m[1024];
    struct resp r;

    push_image("app", "latest", "application/vnd.oci.image.layer.v1.tar", before, sizeof(before));
    push_image("app", "other", "application/vnd.oci.image.layer.v1.tar+gzip", other, sizeof(other));
    cr_assert_str_neq(before, other);
    /* The body is a valid manifest (the "other" one's, fetched back). */
    http(&srv, "GET", "/v2/app/manifests/other", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    snprintf(m, sizeof(m), "%.*s", (int)r.len, r.body);
    resp_free(&r);
    http(&srv, "PUT", "/v2/app/manifests/latest%00evil", m, strlen(m), h, &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    cr_expect(strstr(r.body, "\"code\":\"UNSUPPORTED\""), "%s", r.body);
    resp_free(&r);
    expect_tag_at("app", "latest", before);
    /* Nor by digest, nor cut in the repository name. */
    snprintf(path, sizeof(path), "/v2/app%%00x/manifests/latest");
    http(&srv, "PUT", path, m, strlen(m), h, &r);
    cr_expect_eq(r.status, 400, "%s", r.body);
    resp_free(&r);
    expect_tag_at("app", "latest", before);
}

Test(http, control_characters_in_the_path_or_query_are_400)
{
    const char *bad[] = {
        "GET /v2/a%00b/tags/list HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v2/a/tags/list%0a HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v2/a/manifests/v1%7f HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v2/a/manifests/v1%1B HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v2/a/tags/list?n=1%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v2/_catalog?last=a%0d%0aSet-Cookie:x HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /v2/a\tb/tags/list HTTP/1.1\r\nHost: x\r\n\r\n",
        NULL,
    };
    size_t i;

    for (i = 0; bad[i]; i++)
        expect_raw(bad[i], "HTTP/1.1 400", "UNSUPPORTED");
    /* Escapes that decode to printable characters are fine. */
    expect_raw("GET /v2/_catalog?n=1&last=%61 HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 200", NULL);
}

Test(http, conflicting_content_length_headers_are_400_and_close_the_connection)
{
    char digest[200], out[8192];
    /* With the first value the body is empty, with the second it is a
     * second request: whichever a proxy believed, we answer once and hang
     * up, so the smuggled request never runs. */
    const char smuggle[] = "DELETE /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\n\r\n";
    char req[1024];

    push_image("app", "latest", "application/vnd.oci.image.layer.v1.tar", digest, sizeof(digest));
    snprintf(req, sizeof(req),
             "GET /v2/app/tags/list HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(smuggle), smuggle);
    raw_send(&srv, req, strlen(req), 0, out, sizeof(out));
    cr_expect_eq(strncmp(out, "HTTP/1.1 400", 12), 0, "%s", out);
    cr_expect(strstr(out, "\"code\":\"SIZE_INVALID\""), "%s", out);
    cr_expect_eq(responses(out), 1, "the smuggled request was answered:\n%s", out);
    expect_tag_at("app", "latest", digest);
    expect_raw("PUT /v2/app/blobs/uploads/x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
               "Content-Length: 10\r\n\r\ndata",
               "HTTP/1.1 400", "SIZE_INVALID");
    /* The same value twice is one length. */
    expect_raw("GET /v2/app/tags/list HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
               "Content-Length: 0\r\nConnection: close\r\n\r\n",
               "HTTP/1.1 200", NULL);
}

Test(http, transfer_encoding_other_than_chunked_is_501_at_once)
{
    /* libmicrohttpd would wait for a body it cannot delimit until the
     * timeout; raw_send gives up after 10 s and the status check fails. */
    expect_raw("PUT /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n"
               "\r\nabc",
               "HTTP/1.1 501", "UNSUPPORTED");
    expect_raw("PUT /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\n"
               "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
               "HTTP/1.1 501", "UNSUPPORTED");
    expect_raw("PUT /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\n"
               "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
               "HTTP/1.1 501", "UNSUPPORTED");
    /* Both framings at once is how smuggling starts. */
    expect_raw("PUT /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\n"
               "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
               "HTTP/1.1 400", "UNSUPPORTED");
    /* Blanks before the colon: a framing header to some proxies, a header
     * of another name to libmicrohttpd. */
    expect_raw("PUT /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\n"
               "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
               "HTTP/1.1 400", "UNSUPPORTED");
    expect_raw("PUT /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\n"
               "Content-Length\t: 5\r\n\r\nabcde",
               "HTTP/1.1 400", "UNSUPPORTED");
    /* Plain chunked still reaches the handler (an empty manifest). */
    expect_raw("PUT /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\n"
               "Content-Type: " OCI_MANIFEST "\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
               "HTTP/1.1 400", "MANIFEST_INVALID");
}

Test(http, invalid_content_length_is_400_and_never_reaches_a_handler)
{
    char digest[200], out[8192];
    const char *bad[] = {"-1", "abc", "1e3", NULL};
    char req[512];
    size_t i;

    push_image("app", "latest", "application/vnd.oci.image.layer.v1.tar", digest, sizeof(digest));
    for (i = 0; bad[i]; i++) {
        snprintf(req, sizeof(req),
                 "DELETE /v2/app/manifests/latest HTTP/1.1\r\nHost: x\r\nContent-Length: %s\r\n"
                 "\r\n",
                 bad[i]);
        raw_send(&srv, req, strlen(req), 0, out, sizeof(out));
        /* libmicrohttpd 0.9.75 answers this itself, before our code runs,
         * and repeats its header block (docs/operations.md). */
        cr_expect_eq(strncmp(out, "HTTP/1.1 400", 12), 0, "Content-Length: %s -> %s", bad[i], out);
    }
    expect_tag_at("app", "latest", digest);
}

Test(http, http11_without_host_or_with_two_hosts_is_400_http10_without_is_fine)
{
    expect_raw("GET /v2/ HTTP/1.1\r\n\r\n", "HTTP/1.1 400", "UNSUPPORTED");
    expect_raw("GET /v2/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "HTTP/1.1 400", "UNSUPPORTED");
    expect_raw("GET /v2/ HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "HTTP/1.1 200", NULL);
    {
        char out[4096];
        const char req[] = "GET /v2/ HTTP/1.0\r\n\r\n";

        raw_send(&srv, req, strlen(req), 0, out, sizeof(out));
        cr_expect_eq(strncmp(out, "HTTP/1.1 200", 12), 0, "%s", out);
    }
}
