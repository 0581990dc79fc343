/* The conformance tests, grouped by the spec's four workflows plus the
 * registry-specific extras; content management runs last, as it deletes. Each name says what it
 * checks. Tests run in order and share the content pushed by the first ones that need it. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "suite.h"

#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_CONFIG "application/vnd.oci.image.config.v1+json"
#define MT_LAYER "application/vnd.oci.image.layer.v1.tar+gzip"
#define MT_EMPTY "application/vnd.oci.empty.v1+json"
#define ZERO_DIGEST "sha256:0000000000000000000000000000000000000000000000000000000000000000"

/* Content pushed once and used by later tests. */
static struct {
    int ready;
    char config[160], layer1[160], layer2[160];
    size_t layer_len;
    char *layer_data;
    char manifest[2048], manifest_digest[160];
    char index[2048], index_digest[160];
    char referrer[4096], referrer_digest[160];
} content;

static char *path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A rotating set of buffers, enough for the paths of one check. */
static char *path(const char *fmt, ...)
{
    static char bufs[8][4096];
    static int next;
    char *b = bufs[next++ % 8];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(b, sizeof(bufs[0]), fmt, ap);
    va_end(ap);
    return b;
}

static long status_of(const char *method, const char *p, const char *const *hdrs, const void *body,
                      size_t len, char *code, size_t csize)
{
    struct cf_resp r;
    long st;

    cf_http(method, p, hdrs, body, len, &r);
    st = r.status;
    if (code)
        cf_error_code(&r, code, csize);
    cf_resp_free(&r);
    return st;
}

/* The upload URL from a Location header (relative or absolute). */
static void location(const struct cf_resp *r, char *out, size_t size)
{
    CHECK(cf_header(r, "Location", out, size), "response %ld has no Location header", r->status);
}

/* Append ?digest= or &digest= to an upload location. */
static char *with_digest(const char *loc, const char *digest)
{
    return path("%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", digest);
}

static void start_session(const char *repo, char *loc, size_t size)
{
    struct cf_resp r;

    cf_http("POST", path("/v2/%s/blobs/uploads/", repo), NULL, NULL, 0, &r);
    CHECK(r.status == 202, "POST /v2/%s/blobs/uploads/: want 202, got %ld", repo, r.status);
    location(&r, loc, size);
    cf_resp_free(&r);
}

/* POST then PUT: the one upload every registry must support. */
static void push_blob(const char *repo, const void *data, size_t len, char *digest, size_t dsize)
{
    const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
    char loc[4096];
    struct cf_resp r;

    cf_digest("sha256", data, len, digest, dsize);
    start_session(repo, loc, sizeof(loc));
    cf_http("PUT", with_digest(loc, digest), hdrs, data, len, &r);
    CHECK(r.status == 201, "PUT blob %s: want 201, got %ld %s", digest, r.status, r.body);
    cf_resp_free(&r);
}

static long put_manifest(const char *repo, const char *ref, const char *mt, const char *body,
                         struct cf_resp *out)
{
    char ct[200];
    const char *hdrs[] = {ct, NULL};
    struct cf_resp r;
    long st;

    snprintf(ct, sizeof(ct), "Content-Type: %s", mt);
    cf_http("PUT", path("/v2/%s/manifests/%s", repo, ref), hdrs, body, strlen(body), &r);
    st = r.status;
    if (out)
        *out = r;
    else
        cf_resp_free(&r);
    return st;
}

static void image_manifest(char *out, size_t size, const char *config, size_t config_len,
                           const char *l1, const char *l2, size_t layer_len, const char *extra)
{
    snprintf(out, size,
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{\"mediaType\":"
             "\"" MT_CONFIG
             "\",\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"" MT_LAYER
             "\",\"digest\":\"%s\",\"size\":%zu},{\"mediaType\":\"" MT_LAYER "\","
             "\"digest\":\"%s\",\"size\":%zu}]%s}",
             config, config_len, l1, layer_len, l2, layer_len, extra ? extra : "");
}

static const char config_json[] = "{\"architecture\":\"amd64\",\"os\":\"linux\","
                                  "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}";

/* Push a config, two layers and a manifest tagged "tagtest0". */
static void prepare(void)
{
    char *l2;

    if (content.ready)
        return;
    content.layer_len = 4096;
    content.layer_data = cf_random(content.layer_len);
    l2 = cf_random(content.layer_len);
    push_blob(cf.ns, config_json, strlen(config_json), content.config, sizeof(content.config));
    push_blob(cf.ns, content.layer_data, content.layer_len, content.layer1, sizeof(content.layer1));
    push_blob(cf.ns, l2, content.layer_len, content.layer2, sizeof(content.layer2));
    free(l2);
    image_manifest(content.manifest, sizeof(content.manifest), content.config, strlen(config_json),
                   content.layer1, content.layer2, content.layer_len, NULL);
    cf_digest("sha256", content.manifest, strlen(content.manifest), content.manifest_digest,
              sizeof(content.manifest_digest));
    CHECK(put_manifest(cf.ns, "tagtest0", MT_MANIFEST, content.manifest, NULL) == 201,
          "setup: pushing the test manifest failed");
    content.ready = 1;
}

static void expect_error(const struct cf_resp *r, long status, const char *code)
{
    char got[64];

    CHECK(r->status == status, "want %ld %s, got %ld %s", status, code, r->status, r->body);
    if (r->status >= 400 && r->len > 0) {
        cf_error_code(r, got, sizeof(got));
        CHECK(!strcmp(got, code), "want error code %s, got '%s' in %s", code, got, r->body);
    }
}

/* ---- pull ---------------------------------------------------------------- */

static void t_base(void)
{
    CHECK(status_of("GET", "/v2/", NULL, NULL, 0, NULL, 0) == 200, "GET /v2/ is not 200");
}

static void t_pull_manifest_tag(void)
{
    struct cf_resp r;
    char v[256];

    prepare();
    cf_http("GET", path("/v2/%s/manifests/tagtest0", cf.ns), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    CHECK(r.len == strlen(content.manifest) && !memcmp(r.body, content.manifest, r.len),
          "body differs from what was pushed");
    CHECK(cf_header(&r, "Content-Type", v, sizeof(v)) && !strcmp(v, MT_MANIFEST),
          "Content-Type is not the manifest's media type");
    if (cf_header(&r, "Docker-Content-Digest", v, sizeof(v)))
        CHECK(!strcmp(v, content.manifest_digest), "Docker-Content-Digest %s is wrong", v);
    cf_resp_free(&r);
}

static void t_pull_manifest_digest(void)
{
    struct cf_resp r;

    prepare();
    cf_http("GET", path("/v2/%s/manifests/%s", cf.ns, content.manifest_digest), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    CHECK(r.len == strlen(content.manifest) && !memcmp(r.body, content.manifest, r.len),
          "body differs from what was pushed");
    cf_resp_free(&r);
}

static void t_head_manifest(void)
{
    struct cf_resp r;
    char v[256], want[32];

    prepare();
    cf_http("HEAD", path("/v2/%s/manifests/tagtest0", cf.ns), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "HEAD by tag: want 200, got %ld", r.status);
    snprintf(want, sizeof(want), "%zu", strlen(content.manifest));
    CHECK(cf_header(&r, "Content-Length", v, sizeof(v)) && !strcmp(v, want),
          "Content-Length is not the manifest's size");
    CHECK(cf_header(&r, "Docker-Content-Digest", v, sizeof(v)) &&
              !strcmp(v, content.manifest_digest),
          "HEAD has no or a wrong Docker-Content-Digest");
    cf_resp_free(&r);
    CHECK(status_of("HEAD", path("/v2/%s/manifests/%s", cf.ns, content.manifest_digest), NULL, NULL,
                    0, NULL, 0) == 200,
          "HEAD by digest is not 200");
}

static void t_pull_missing_manifest(void)
{
    struct cf_resp r;

    cf_http("GET", path("/v2/%s/manifests/nonexistent-tag", cf.ns), NULL, NULL, 0, &r);
    expect_error(&r, 404, "MANIFEST_UNKNOWN");
    cf_resp_free(&r);
    cf_http("GET", path("/v2/%s/manifests/%s", cf.ns, ZERO_DIGEST), NULL, NULL, 0, &r);
    expect_error(&r, 404, "MANIFEST_UNKNOWN");
    cf_resp_free(&r);
}

static void t_pull_blob(void)
{
    struct cf_resp r;

    prepare();
    cf_http("GET", path("/v2/%s/blobs/%s", cf.ns, content.layer1), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    CHECK(r.len == content.layer_len && !memcmp(r.body, content.layer_data, r.len),
          "blob bytes differ from what was pushed");
    cf_resp_free(&r);
}

static void t_head_blob(void)
{
    struct cf_resp r;
    char v[64], want[32];

    prepare();
    cf_http("HEAD", path("/v2/%s/blobs/%s", cf.ns, content.layer1), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    snprintf(want, sizeof(want), "%zu", content.layer_len);
    CHECK(cf_header(&r, "Content-Length", v, sizeof(v)) && !strcmp(v, want),
          "Content-Length is not the blob's size");
    cf_resp_free(&r);
}

static void t_pull_missing_blob(void)
{
    struct cf_resp r;

    cf_http("GET", path("/v2/%s/blobs/%s", cf.ns, ZERO_DIGEST), NULL, NULL, 0, &r);
    expect_error(&r, 404, "BLOB_UNKNOWN");
    cf_resp_free(&r);
    CHECK(status_of("HEAD", path("/v2/%s/blobs/%s", cf.ns, ZERO_DIGEST), NULL, NULL, 0, NULL, 0) ==
              404,
          "HEAD of an absent blob is not 404");
}

/* ---- push ---------------------------------------------------------------- */

static void t_push_post_put(void)
{
    const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
    char *data = cf_random(1000), d[160], loc[4096], v[4096];
    struct cf_resp r;

    cf_digest("sha256", data, 1000, d, sizeof(d));
    start_session(cf.ns, loc, sizeof(loc));
    cf_http("PUT", with_digest(loc, d), hdrs, data, 1000, &r);
    CHECK(r.status == 201, "PUT: want 201, got %ld %s", r.status, r.body);
    CHECK(cf_header(&r, "Location", v, sizeof(v)), "201 has no Location");
    cf_resp_free(&r);
    CHECK(status_of("HEAD", path("/v2/%s/blobs/%s", cf.ns, d), NULL, NULL, 0, NULL, 0) == 200,
          "the blob is not there after 201");
    free(data);
}

static void t_push_monolithic_post(void)
{
    const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
    char *data = cf_random(2000), d[160];
    long st;

    cf_digest("sha256", data, 2000, d, sizeof(d));
    st = status_of("POST", path("/v2/%s/blobs/uploads/?digest=%s", cf.ns, d), hdrs, data, 2000,
                   NULL, 0);
    free(data);
    if (st == 202)
        cf_skip("the registry answers a single POST with a session (202), which the spec allows");
    CHECK(st == 201, "want 201, got %ld", st);
    CHECK(status_of("HEAD", path("/v2/%s/blobs/%s", cf.ns, d), NULL, NULL, 0, NULL, 0) == 200,
          "the blob is not there after 201");
}

static void patch_chunk(const char *loc, const char *data, size_t off, size_t len, long want,
                        char *next, size_t nsize)
{
    char cr[96], cl[64];
    const char *hdrs[] = {"Content-Type: application/octet-stream", cr, cl, NULL};
    struct cf_resp r;
    char v[128];

    snprintf(cr, sizeof(cr), "Content-Range: %zu-%zu", off, off + len - 1);
    snprintf(cl, sizeof(cl), "Content-Length: %zu", len);
    cf_http("PATCH", loc, hdrs, data + off, len, &r);
    CHECK(r.status == want, "PATCH %zu-%zu: want %ld, got %ld %s", off, off + len - 1, want,
          r.status, r.body);
    if (want == 202) {
        char range[64];

        snprintf(range, sizeof(range), "0-%zu", off + len - 1);
        CHECK(cf_header(&r, "Range", v, sizeof(v)) && !strcmp(v, range),
              "PATCH: Range should be %s", range);
        location(&r, next, nsize);
    }
    cf_resp_free(&r);
}

static void t_push_chunked(void)
{
    size_t len = 300000;
    char *data = cf_random(len), d[160], loc[4096];
    struct cf_resp r;

    cf_digest("sha256", data, len, d, sizeof(d));
    start_session(cf.ns, loc, sizeof(loc));
    patch_chunk(loc, data, 0, 100000, 202, loc, sizeof(loc));
    patch_chunk(loc, data, 100000, 100000, 202, loc, sizeof(loc));
    patch_chunk(loc, data, 200000, 100000, 202, loc, sizeof(loc));
    cf_http("PUT", with_digest(loc, d), NULL, NULL, 0, &r);
    CHECK(r.status == 201, "closing PUT: want 201, got %ld %s", r.status, r.body);
    cf_resp_free(&r);
    cf_http("GET", path("/v2/%s/blobs/%s", cf.ns, d), NULL, NULL, 0, &r);
    CHECK(r.status == 200 && r.len == len && !memcmp(r.body, data, len),
          "the chunked blob does not read back");
    cf_resp_free(&r);
    free(data);
}

static void t_upload_status(void)
{
    char *data = cf_random(500), loc[4096], v[64];
    struct cf_resp r;

    start_session(cf.ns, loc, sizeof(loc));
    patch_chunk(loc, data, 0, 500, 202, loc, sizeof(loc));
    cf_http("GET", loc, NULL, NULL, 0, &r);
    CHECK(r.status == 204, "GET upload: want 204, got %ld", r.status);
    CHECK(cf_header(&r, "Range", v, sizeof(v)) && !strcmp(v, "0-499"),
          "GET upload: Range should be 0-499");
    cf_resp_free(&r);
    free(data);
}

static void t_chunk_out_of_order(void)
{
    char *data = cf_random(3000), loc[4096];

    start_session(cf.ns, loc, sizeof(loc));
    patch_chunk(loc, data, 0, 1000, 202, loc, sizeof(loc));
    patch_chunk(loc, data, 2000, 1000, 416, NULL, 0);
    free(data);
}

static void t_push_digest_mismatch(void)
{
    const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
    char loc[4096];
    struct cf_resp r;

    start_session(cf.ns, loc, sizeof(loc));
    cf_http("PUT", with_digest(loc, ZERO_DIGEST), hdrs, "abc", 3, &r);
    expect_error(&r, 400, "DIGEST_INVALID");
    cf_resp_free(&r);
}

static void t_cross_mount(void)
{
    struct cf_resp r;
    char v[160];

    prepare();
    cf_http("POST",
            path("/v2/%s/blobs/uploads/?mount=%s&from=%s", cf.cross_ns, content.layer1, cf.ns),
            NULL, NULL, 0, &r);
    CHECK(r.status == 201 || r.status == 202, "mount: want 201 (or 202), got %ld", r.status);
    if (r.status == 202) {
        cf_resp_free(&r);
        cf_skip("the registry does not mount (202 opens a session, which the spec allows)");
    }
    CHECK(cf_header(&r, "Location", v, sizeof(v)), "201 has no Location");
    cf_resp_free(&r);
    CHECK(status_of("HEAD", path("/v2/%s/blobs/%s", cf.cross_ns, content.layer1), NULL, NULL, 0,
                    NULL, 0) == 200,
          "the mounted blob is not readable in %s", cf.cross_ns);
}

static void t_mount_unknown(void)
{
    CHECK(status_of("POST",
                    path("/v2/%s/blobs/uploads/?mount=%s&from=%s", cf.cross_ns, ZERO_DIGEST, cf.ns),
                    NULL, NULL, 0, NULL, 0) == 202,
          "mount of an absent blob must open a session (202)");
}

static void t_push_manifest_tag(void)
{
    struct cf_resp r;
    char v[4096];

    prepare();
    CHECK(put_manifest(cf.ns, "tagtest1", MT_MANIFEST, content.manifest, &r) == 201,
          "want 201, got %ld %s", r.status, r.body);
    CHECK(cf_header(&r, "Location", v, sizeof(v)), "201 has no Location");
    CHECK(cf_header(&r, "Docker-Content-Digest", v, sizeof(v)) &&
              !strcmp(v, content.manifest_digest),
          "Docker-Content-Digest missing or wrong");
    cf_resp_free(&r);
}

static void t_push_manifest_digest(void)
{
    prepare();
    CHECK(put_manifest(cf.ns, content.manifest_digest, MT_MANIFEST, content.manifest, NULL) == 201,
          "PUT by digest is not 201");
}

static void t_push_manifest_missing_blob(void)
{
    char m[2048];
    struct cf_resp r;

    prepare();
    image_manifest(m, sizeof(m), content.config, strlen(config_json), content.layer1, ZERO_DIGEST,
                   content.layer_len, NULL);
    put_manifest(cf.ns, "missingblob", MT_MANIFEST, m, &r);
    expect_error(&r, 400, "MANIFEST_BLOB_UNKNOWN");
    cf_resp_free(&r);
}

static void t_push_manifest_invalid(void)
{
    struct cf_resp r;

    put_manifest(cf.ns, "invalid", MT_MANIFEST, "{\"schemaVersion\":2,", &r);
    expect_error(&r, 400, "MANIFEST_INVALID");
    cf_resp_free(&r);
}

static void t_push_index(void)
{
    prepare();
    snprintf(content.index, sizeof(content.index),
             "{\"schemaVersion\":2,\"mediaType\":\"" MT_INDEX "\",\"manifests\":[{\"mediaType\":"
             "\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"architecture\":"
             "\"amd64\",\"os\":\"linux\"}}]}",
             content.manifest_digest, strlen(content.manifest));
    cf_digest("sha256", content.index, strlen(content.index), content.index_digest,
              sizeof(content.index_digest));
    CHECK(put_manifest(cf.ns, "index", MT_INDEX, content.index, NULL) == 201,
          "pushing an image index failed");
}

static void t_push_subject(void)
{
    struct cf_resp r;
    char extra[1024], v[160];

    prepare();
    push_blob(cf.ns, "{}", 2, v, sizeof(v));
    snprintf(extra, sizeof(extra),
             ",\"artifactType\":\"application/vnd.conformance.sbom\",\"subject\":{\"mediaType\":"
             "\"" MT_MANIFEST "\",\"digest\":\"%s\",\"size\":%zu},\"annotations\":{"
             "\"org.conformance\":\"yes\"}",
             content.manifest_digest, strlen(content.manifest));
    image_manifest(content.referrer, sizeof(content.referrer), content.config, strlen(config_json),
                   content.layer1, content.layer2, content.layer_len, extra);
    cf_digest("sha256", content.referrer, strlen(content.referrer), content.referrer_digest,
              sizeof(content.referrer_digest));
    CHECK(put_manifest(cf.ns, content.referrer_digest, MT_MANIFEST, content.referrer, &r) == 201,
          "want 201, got %ld %s", r.status, r.body);
    if (!cf_header(&r, "OCI-Subject", v, sizeof(v)) && !cf.require_referrers) {
        cf_resp_free(&r);
        cf_skip("no OCI-Subject: the registry does not support the referrers API (allowed; "
                "set OCI_REFERRERS=1 to require it)");
    }
    CHECK(cf_header(&r, "OCI-Subject", v, sizeof(v)) && !strcmp(v, content.manifest_digest),
          "no OCI-Subject header: the registry ignored the subject");
    cf_resp_free(&r);
}

static void t_cancel_upload(void)
{
    char loc[4096];
    struct cf_resp r;

    start_session(cf.ns, loc, sizeof(loc));
    CHECK(status_of("DELETE", loc, NULL, NULL, 0, NULL, 0) == 204, "DELETE upload is not 204");
    cf_http("GET", loc, NULL, NULL, 0, &r);
    expect_error(&r, 404, "BLOB_UPLOAD_UNKNOWN");
    cf_resp_free(&r);
}

/* ---- content discovery ------------------------------------------------- */

static void push_tags(void)
{
    static int done;
    int i;

    prepare();
    if (done)
        return;
    for (i = 1; i <= 4; i++)
        CHECK(put_manifest(cf.ns, path("tagtest%d", i), MT_MANIFEST, content.manifest, NULL) == 201,
              "pushing tag tagtest%d failed", i);
    done = 1;
}

static void t_tags_list(void)
{
    struct cf_resp r;
    int i;

    push_tags();
    cf_http("GET", path("/v2/%s/tags/list", cf.ns), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    for (i = 0; i <= 4; i++)
        CHECK(strstr(r.body, path("\"tagtest%d\"", i)), "tagtest%d is not listed: %s", i, r.body);
    cf_resp_free(&r);
}

static void t_tags_sorted(void)
{
    struct cf_resp r;
    char prev[256] = "", cur[256];
    const char *p;

    push_tags();
    cf_http("GET", path("/v2/%s/tags/list", cf.ns), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    p = strstr(r.body, "\"tags\"");
    CHECK(p && (p = strchr(p, '[')), "no tags array: %s", r.body);
    while ((p = strchr(p + 1, '"'))) {
        const char *e = strchr(p + 1, '"');

        if (!e || (size_t)(e - p) >= sizeof(cur))
            break;
        snprintf(cur, sizeof(cur), "%.*s", (int)(e - p - 1), p + 1);
        CHECK(!prev[0] || strcasecmp(prev, cur) <= 0, "%s listed before %s: %s", prev, cur, r.body);
        snprintf(prev, sizeof(prev), "%s", cur);
        p = e;
    }
    cf_resp_free(&r);
}

static int count_tags(const char *body)
{
    int n = 0;
    const char *p = strstr(body, "\"tags\"");

    if (!p)
        return -1;
    for (p = strchr(p, '['); p && *p && *p != ']'; p++)
        if (*p == '"')
            n++;
    return n / 2;
}

static void t_tags_n(void)
{
    struct cf_resp r;
    char link[1024];

    push_tags();
    cf_http("GET", path("/v2/%s/tags/list?n=2", cf.ns), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    CHECK(count_tags(r.body) == 2, "n=2 did not give 2 tags: %s", r.body);
    if (cf_header(&r, "Link", link, sizeof(link)))
        CHECK(strstr(link, "rel=\"next\""), "Link without rel=\"next\": %s", link);
    cf_resp_free(&r);
}

static void t_tags_last(void)
{
    struct cf_resp r;

    push_tags();
    cf_http("GET", path("/v2/%s/tags/list?n=2&last=tagtest1", cf.ns), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    CHECK(strstr(r.body, "\"tagtest2\"") && strstr(r.body, "\"tagtest3\"") &&
              !strstr(r.body, "\"tagtest1\"") && !strstr(r.body, "\"tagtest4\""),
          "n=2&last=tagtest1 should list tagtest2 and tagtest3: %s", r.body);
    cf_resp_free(&r);
}

static void t_tags_n0(void)
{
    struct cf_resp r;
    char link[1024];

    push_tags();
    cf_http("GET", path("/v2/%s/tags/list?n=0", cf.ns), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    CHECK(count_tags(r.body) <= 0, "n=0 must give an empty list: %s", r.body);
    CHECK(!cf_header(&r, "Link", link, sizeof(link)), "n=0 must not have a Link header");
    cf_resp_free(&r);
}

/* A 404 from the referrers API means the registry has none: allowed,
 * unless OCI_REFERRERS=1. */
static void referrers_supported(struct cf_resp *r)
{
    if (r->status == 404 && !cf.require_referrers) {
        cf_resp_free(r);
        cf_skip("no referrers API (404), which the spec allows; set OCI_REFERRERS=1 to "
                "require it");
    }
}

static void t_referrers(void)
{
    struct cf_resp r;
    char v[256];

    if (!content.referrer_digest[0])
        t_push_subject();
    cf_http("GET", path("/v2/%s/referrers/%s", cf.ns, content.manifest_digest), NULL, NULL, 0, &r);
    referrers_supported(&r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    CHECK(cf_header(&r, "Content-Type", v, sizeof(v)) && !strncmp(v, MT_INDEX, strlen(MT_INDEX)),
          "Content-Type must be an image index");
    CHECK(strstr(r.body, content.referrer_digest), "the referrer is not listed: %s", r.body);
    CHECK(strstr(r.body, "application/vnd.conformance.sbom"), "artifactType missing: %s", r.body);
    CHECK(strstr(r.body, "org.conformance"), "annotations missing: %s", r.body);
    cf_resp_free(&r);
}

static void t_referrers_filter(void)
{
    struct cf_resp r;
    char v[256];

    if (!content.referrer_digest[0])
        t_push_subject();
    cf_http("GET",
            path("/v2/%s/referrers/%s?artifactType=application/vnd.other", cf.ns,
                 content.manifest_digest),
            NULL, NULL, 0, &r);
    referrers_supported(&r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    if (!cf_header(&r, "OCI-Filters-Applied", v, sizeof(v))) {
        cf_resp_free(&r);
        cf_skip("the registry does not filter by artifactType (allowed; clients filter)");
    }
    CHECK(!strcmp(v, "artifactType"), "OCI-Filters-Applied: %s", v);
    CHECK(!strstr(r.body, content.referrer_digest), "a filtered-out referrer is listed");
    cf_resp_free(&r);
    cf_http("GET",
            path("/v2/%s/referrers/%s?artifactType=application/vnd.conformance.sbom", cf.ns,
                 content.manifest_digest),
            NULL, NULL, 0, &r);
    CHECK(strstr(r.body, content.referrer_digest), "the matching referrer is missing");
    cf_resp_free(&r);
}

static void t_referrers_empty(void)
{
    struct cf_resp r;

    cf_http("GET", path("/v2/%s/referrers/%s", cf.ns, ZERO_DIGEST), NULL, NULL, 0, &r);
    referrers_supported(&r);
    CHECK(r.status == 200, "want 200 with an empty index, got %ld", r.status);
    CHECK(strstr(r.body, "\"manifests\""), "no manifests array: %s", r.body);
    cf_resp_free(&r);
}

static void t_tags_unknown_repo(void)
{
    struct cf_resp r;

    cf_http("GET", "/v2/conformance/no-such-repository-here/tags/list", NULL, NULL, 0, &r);
    expect_error(&r, 404, "NAME_UNKNOWN");
    cf_resp_free(&r);
}

/* ---- content management ------------------------------------------------ */

static void t_delete_tag(void)
{
    long st;

    push_tags();
    st = status_of("DELETE", path("/v2/%s/manifests/tagtest4", cf.ns), NULL, NULL, 0, NULL, 0);
    if (st == 400 || st == 405)
        cf_skip("the registry does not delete tags (%ld), which the spec allows", st);
    CHECK(st == 202, "want 202, got %ld", st);
    CHECK(status_of("GET", path("/v2/%s/manifests/tagtest4", cf.ns), NULL, NULL, 0, NULL, 0) == 404,
          "the deleted tag still resolves");
    CHECK(status_of("GET", path("/v2/%s/manifests/%s", cf.ns, content.manifest_digest), NULL, NULL,
                    0, NULL, 0) == 200,
          "deleting a tag removed the manifest");
}

static void delete_manifests(void)
{
    long st;

    prepare();
    if (content.referrer_digest[0])
        status_of("DELETE", path("/v2/%s/manifests/%s", cf.ns, content.referrer_digest), NULL, NULL,
                  0, NULL, 0);
    if (content.index_digest[0])
        status_of("DELETE", path("/v2/%s/manifests/%s", cf.ns, content.index_digest), NULL, NULL, 0,
                  NULL, 0);
    st = status_of("DELETE", path("/v2/%s/manifests/%s", cf.ns, content.manifest_digest), NULL,
                   NULL, 0, NULL, 0);
    CHECK(st == 202, "DELETE manifest by digest: want 202, got %ld", st);
    CHECK(status_of("GET", path("/v2/%s/manifests/%s", cf.ns, content.manifest_digest), NULL, NULL,
                    0, NULL, 0) == 404,
          "the deleted manifest is still there");
}

static void delete_blobs(void)
{
    long st;

    prepare();
    st =
        status_of("DELETE", path("/v2/%s/blobs/%s", cf.ns, content.layer2), NULL, NULL, 0, NULL, 0);
    if (st == 405)
        cf_skip("the registry does not delete blobs (405), which the spec allows");
    CHECK(st == 202, "DELETE blob: want 202, got %ld", st);
    CHECK(status_of("GET", path("/v2/%s/blobs/%s", cf.ns, content.layer2), NULL, NULL, 0, NULL,
                    0) == 404,
          "the deleted blob is still there");
}

static void t_delete_first(void)
{
    if (cf.delete_manifest_before_blobs)
        delete_manifests();
    else
        delete_blobs();
}

static void t_delete_second(void)
{
    if (cf.delete_manifest_before_blobs)
        delete_blobs();
    else
        delete_manifests();
}

static void t_delete_unknown_manifest(void)
{
    struct cf_resp r;

    cf_http("DELETE", path("/v2/%s/manifests/%s", cf.ns, ZERO_DIGEST), NULL, NULL, 0, &r);
    if (r.status == 405) {
        cf_resp_free(&r);
        cf_skip("deletes are disabled (405)");
    }
    expect_error(&r, 404, "MANIFEST_UNKNOWN");
    cf_resp_free(&r);
}

/* ---- extras -------------------------------------------------------------- */

static void t_range(void)
{
    const char *hdrs[] = {"Range: bytes=100-199", NULL};
    struct cf_resp r;
    char v[128], want[64];

    prepare();
    cf_http("GET", path("/v2/%s/blobs/%s", cf.ns, content.layer1), hdrs, NULL, 0, &r);
    CHECK(r.status == 206, "want 206, got %ld", r.status);
    CHECK(r.len == 100 && !memcmp(r.body, content.layer_data + 100, 100), "wrong bytes");
    snprintf(want, sizeof(want), "bytes 100-199/%zu", content.layer_len);
    CHECK(cf_header(&r, "Content-Range", v, sizeof(v)) && !strcmp(v, want),
          "Content-Range should be %s", want);
    cf_resp_free(&r);
}

static void t_range_unsatisfiable(void)
{
    const char *hdrs[] = {"Range: bytes=999999-", NULL};

    prepare();
    CHECK(status_of("GET", path("/v2/%s/blobs/%s", cf.ns, content.layer1), hdrs, NULL, 0, NULL,
                    0) == 416,
          "a range past the end must be 416");
}

static void t_sha512(void)
{
    const char *hdrs[] = {"Content-Type: application/octet-stream", NULL};
    char *data = cf_random(5000), d[300], loc[4096];
    struct cf_resp r;

    cf_digest("sha512", data, 5000, d, sizeof(d));
    start_session(cf.ns, loc, sizeof(loc));
    patch_chunk(loc, data, 0, 2000, 202, loc, sizeof(loc));
    cf_http("PUT", with_digest(loc, d), hdrs, data + 2000, 3000, &r);
    CHECK(r.status == 201, "sha512 PUT: want 201, got %ld %s", r.status, r.body);
    cf_resp_free(&r);
    cf_http("GET", path("/v2/%s/blobs/%s", cf.ns, d), NULL, NULL, 0, &r);
    CHECK(r.status == 200 && r.len == 5000 && !memcmp(r.body, data, 5000),
          "the sha512 blob does not read back");
    cf_resp_free(&r);
    free(data);
}

static void t_resume_after_restart(void)
{
    char *data, d[160], loc[4096], v[64];
    struct cf_resp r;

    if (!cf.restart_cmd)
        cf_skip("set OCI_RESTART_CMD to a command that restarts the registry");
    data = cf_random(3000);
    cf_digest("sha256", data, 3000, d, sizeof(d));
    start_session(cf.ns, loc, sizeof(loc));
    patch_chunk(loc, data, 0, 1000, 202, loc, sizeof(loc));
    CHECK(system(cf.restart_cmd) == 0, "OCI_RESTART_CMD failed");
    cf_http("GET", loc, NULL, NULL, 0, &r);
    CHECK(r.status == 204, "after a restart: GET upload want 204, got %ld", r.status);
    CHECK(cf_header(&r, "Range", v, sizeof(v)) && !strcmp(v, "0-999"),
          "after a restart: Range should be 0-999");
    cf_resp_free(&r);
    patch_chunk(loc, data, 1000, 1000, 202, loc, sizeof(loc));
    cf_http("PUT", with_digest(loc, d), NULL, data + 2000, 1000, &r);
    CHECK(r.status == 201, "closing PUT after restart: want 201, got %ld", r.status);
    cf_resp_free(&r);
    free(data);
}

static void t_invalid_names(void)
{
    struct cf_resp r;

    cf_http("POST", "/v2/Invalid_UPPER/blobs/uploads/", NULL, NULL, 0, &r);
    expect_error(&r, 400, "NAME_INVALID");
    cf_resp_free(&r);
    cf_http("GET", "/v2/a//b/manifests/latest", NULL, NULL, 0, &r);
    CHECK(r.status == 400 || r.status == 404, "an empty path component: want 400 or 404, got %ld",
          r.status);
    cf_resp_free(&r);
}

static void t_invalid_digest(void)
{
    struct cf_resp r;

    cf_http("GET", path("/v2/%s/blobs/sha256:notahexdigest", cf.ns), NULL, NULL, 0, &r);
    expect_error(&r, 400, "DIGEST_INVALID");
    cf_resp_free(&r);
}

static void t_catalog(void)
{
    struct cf_resp r;

    prepare();
    cf_http("GET", "/v2/_catalog?n=1000", NULL, NULL, 0, &r);
    if (r.status == 404 || r.status == 405) {
        cf_resp_free(&r);
        cf_skip("no catalog endpoint");
    }
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    CHECK(strstr(r.body, path("\"%s\"", cf.ns)), "%s is not in the catalog", cf.ns);
    cf_resp_free(&r);
}

static void t_last_not_existing(void)
{
    struct cf_resp r;

    push_tags();
    cf_http("GET", path("/v2/%s/tags/list?n=10&last=tagtest1a", cf.ns), NULL, NULL, 0, &r);
    CHECK(r.status == 200, "want 200, got %ld", r.status);
    CHECK(strstr(r.body, "\"tagtest2\"") && !strstr(r.body, "\"tagtest1\""),
          "the list should continue after tagtest1a: %s", r.body);
    cf_resp_free(&r);
}

static void t_bad_n(void)
{
    long st = status_of("GET", path("/v2/%s/tags/list?n=-1", cf.ns), NULL, NULL, 0, NULL, 0);

    push_tags();
    CHECK(st == 400, "n=-1: want 400, got %ld", st);
}

static void t_api_version_header(void)
{
    struct cf_resp r;
    char v[64];

    cf_http("GET", "/v2/", NULL, NULL, 0, &r);
    CHECK(cf_header(&r, "Docker-Distribution-API-Version", v, sizeof(v)) &&
              !strcmp(v, "registry/2.0"),
          "Docker-Distribution-API-Version: registry/2.0 is missing");
    cf_resp_free(&r);
}

const struct cf_test cf_tests[] = {
    {CF_PULL, "GET /v2/ answers 200", t_base},
    {CF_PULL, "pull a manifest by tag: 200, the pushed bytes and media type", t_pull_manifest_tag},
    {CF_PULL, "pull a manifest by digest: 200, the pushed bytes", t_pull_manifest_digest},
    {CF_PULL, "HEAD a manifest by tag and digest: 200, Content-Length, Docker-Content-Digest",
     t_head_manifest},
    {CF_PULL, "pull an absent manifest: 404 MANIFEST_UNKNOWN", t_pull_missing_manifest},
    {CF_PULL, "pull a blob: 200, the pushed bytes", t_pull_blob},
    {CF_PULL, "HEAD a blob: 200 with its Content-Length", t_head_blob},
    {CF_PULL, "pull an absent blob: 404 BLOB_UNKNOWN", t_pull_missing_blob},
    {CF_PUSH, "upload with POST then PUT: 202, 201 with Location", t_push_post_put},
    {CF_PUSH, "monolithic upload in a single POST: 201", t_push_monolithic_post},
    {CF_PUSH, "chunked upload with PATCH and Content-Range, closed by PUT: 201", t_push_chunked},
    {CF_PUSH, "GET on an upload: 204 with Range", t_upload_status},
    {CF_PUSH, "a chunk out of order: 416", t_chunk_out_of_order},
    {CF_PUSH, "PUT with a digest that does not match: 400 DIGEST_INVALID", t_push_digest_mismatch},
    {CF_PUSH, "cross-repository mount from OCI_CROSSMOUNT_NAMESPACE: 201", t_cross_mount},
    {CF_PUSH, "mount of an absent blob opens a session: 202", t_mount_unknown},
    {CF_PUSH, "push a manifest by tag: 201, Location, Docker-Content-Digest", t_push_manifest_tag},
    {CF_PUSH, "push a manifest by digest: 201", t_push_manifest_digest},
    {CF_PUSH, "push a manifest naming an absent blob: 400 MANIFEST_BLOB_UNKNOWN",
     t_push_manifest_missing_blob},
    {CF_PUSH, "push an invalid manifest: 400 MANIFEST_INVALID", t_push_manifest_invalid},
    {CF_PUSH, "push an image index: 201", t_push_index},
    {CF_PUSH, "push a manifest with a subject: 201 with OCI-Subject", t_push_subject},
    {CF_PUSH, "cancel an upload: 204, then 404 BLOB_UPLOAD_UNKNOWN", t_cancel_upload},
    {CF_DISCOVERY, "tags list: 200 with every pushed tag", t_tags_list},
    {CF_DISCOVERY, "tags list is in lexical (case-insensitive) order", t_tags_sorted},
    {CF_DISCOVERY, "tags list with n: at most n tags, Link rel=next", t_tags_n},
    {CF_DISCOVERY, "tags list with n and last: the tags after last", t_tags_last},
    {CF_DISCOVERY, "tags list with n=0: empty, no Link", t_tags_n0},
    {CF_DISCOVERY, "tags list of an unknown repository: 404 NAME_UNKNOWN", t_tags_unknown_repo},
    {CF_DISCOVERY, "referrers: an image index with the referrer's descriptor", t_referrers},
    {CF_DISCOVERY, "referrers with artifactType: filtered, OCI-Filters-Applied",
     t_referrers_filter},
    {CF_DISCOVERY, "referrers of a digest without any: 200, empty index", t_referrers_empty},
    {CF_EXTRA, "blob Range request: 206 with Content-Range", t_range},
    {CF_EXTRA, "blob Range past the end: 416", t_range_unsatisfiable},
    {CF_EXTRA, "sha512 chunked upload: 201, reads back", t_sha512},
    {CF_EXTRA, "upload resumes after a registry restart", t_resume_after_restart},
    {CF_EXTRA, "invalid repository name: 400 NAME_INVALID", t_invalid_names},
    {CF_EXTRA, "malformed digest: 400 DIGEST_INVALID", t_invalid_digest},
    {CF_EXTRA, "catalog lists the namespace", t_catalog},
    {CF_EXTRA, "tags list after a last that does not exist continues lexically",
     t_last_not_existing},
    {CF_EXTRA, "tags list with n=-1: 400", t_bad_n},
    {CF_EXTRA, "responses carry Docker-Distribution-API-Version: registry/2.0",
     t_api_version_header},
    {CF_MANAGEMENT, "delete a tag: 202, the manifest stays", t_delete_tag},
    {CF_MANAGEMENT, "delete (first, per OCI_DELETE_MANIFEST_BEFORE_BLOBS): 202 then 404",
     t_delete_first},
    {CF_MANAGEMENT, "delete (second, per OCI_DELETE_MANIFEST_BEFORE_BLOBS): 202 then 404",
     t_delete_second},
    {CF_MANAGEMENT, "delete an absent manifest: 404 MANIFEST_UNKNOWN", t_delete_unknown_manifest},
    {0, NULL, NULL},
};
