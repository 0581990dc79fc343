/* registry serve with [storage] driver = s3, against the throw-away Ceph RADOS
 * Gateway that scripts/with-ceph.sh starts (REGISTRY_S3_ENV names its
 * settings; without it the tests that need a gateway skip). The bucket is
 * inspected with plain libcurl requests signed by libcurl (CURLOPT_AWS_SIGV4),
 * not with the registry's own S3 client. Each test has its own key prefix. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "harness.h"

#define BUCKET "registry-blackbox"
#define MIB (1024 * 1024)

static struct server srv;

static struct {
    char endpoint[256], region[64], access[128], secret[128];
} gw;
static char prefix[64];

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(s3, .fini = teardown, .timeout = 180);

/* ---- the bucket, seen from outside -------------------------------------------- */

struct buf {
    char *p;
    size_t n;
};

static size_t buf_write(char *d, size_t size, size_t nmemb, void *arg)
{
    struct buf *b = arg;
    size_t len = size * nmemb;
    char *p = realloc(b->p, b->n + len + 1);

    if (!p)
        return 0;
    memcpy(p + b->n, d, len);
    b->p = p;
    b->n += len;
    b->p[b->n] = '\0';
    return len;
}

/* One signed request to the gateway: path after the endpoint ("/bucket/key?q").
 * Returns the status; *body (may be NULL) gets the reply (free it). */
static long s3_call(const char *method, const char *path, const void *data, size_t len, char **body)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    struct buf b = {NULL, 0};
    char url[1024], sig[128], user[300];
    long status = 0;
    CURLcode cc;

    cr_assert(c && h);
    snprintf(url, sizeof(url), "%s%s", gw.endpoint, path);
    snprintf(sig, sizeof(sig), "aws:amz:%s:s3", gw.region);
    snprintf(user, sizeof(user), "%s:%s", gw.access, gw.secret);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, sig);
    curl_easy_setopt(c, CURLOPT_USERPWD, user);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (data) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (strcmp(method, "PUT") == 0) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    cc = curl_easy_perform(c);
    cr_assert_eq(cc, CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(cc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (body)
        *body = b.p ? b.p : strdup("");
    else
        free(b.p);
    return status;
}

static int count_of(const char *s, const char *needle)
{
    int n = 0;

    while ((s = strstr(s, needle)) != NULL) {
        n++;
        s += strlen(needle);
    }
    return n;
}

/* This test's prefix + sub, '/' encoded for a query (libcurl signs the
 * query as given). */
static const char *qprefix(const char *sub)
{
    static char out[256];
    char in[200];
    size_t i, o = 0;

    snprintf(in, sizeof(in), "%s%s", prefix, sub);
    for (i = 0; in[i] && o + 4 < sizeof(out); i++) {
        if (in[i] == '/') {
            memcpy(out + o, "%2F", 3);
            o += 3;
        } else {
            out[o++] = in[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* Objects under this test's prefix + sub ("blobs/", "uploads/"). */
static int objects(const char *sub)
{
    char path[512], *body;
    int n;

    snprintf(path, sizeof(path), "/%s?list-type=2&prefix=%s", BUCKET, qprefix(sub));
    cr_assert_eq(s3_call("GET", path, NULL, 0, &body), 200, "list: %s", body);
    n = count_of(body, "<Key>");
    free(body);
    return n;
}

/* Multipart uploads in progress under this test's prefix. */
static int multipart_uploads(void)
{
    char path[512], *body;
    int n;

    snprintf(path, sizeof(path), "/%s?prefix=%s&uploads=", BUCKET, qprefix(""));
    cr_assert_eq(s3_call("GET", path, NULL, 0, &body), 200, "list uploads: %s", body);
    n = count_of(body, "<UploadId>");
    free(body);
    return n;
}

static void object_path(const char *digest, char *out, size_t size)
{
    snprintf(out, size, "/%s/%sblobs/sha256/%s", BUCKET, prefix, digest + 7);
}

/* The gateway's settings; skips the test when there is none. Makes the
 * bucket and a fresh prefix. */
static void need_gateway(void)
{
    const char *path = getenv("REGISTRY_S3_ENV");
    char line[512], *v;
    long status;
    FILE *f;

    if (!path || !(f = fopen(path, "r")))
        cr_skip_test("no Ceph RADOS Gateway (REGISTRY_S3_ENV unset)");
    memset(&gw, 0, sizeof(gw));
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        v = strchr(line, '=');
        if (!v)
            continue;
        *v++ = '\0';
        if (!strcmp(line, "S3_ENDPOINT"))
            snprintf(gw.endpoint, sizeof(gw.endpoint), "%s", v);
        else if (!strcmp(line, "S3_REGION"))
            snprintf(gw.region, sizeof(gw.region), "%s", v);
        else if (!strcmp(line, "S3_ACCESS_KEY"))
            snprintf(gw.access, sizeof(gw.access), "%s", v);
        else if (!strcmp(line, "S3_SECRET_KEY"))
            snprintf(gw.secret, sizeof(gw.secret), "%s", v);
    }
    fclose(f);
    cr_assert(gw.endpoint[0] && gw.access[0], "%s lacks settings", path);
    status = s3_call("PUT", "/" BUCKET, NULL, 0, NULL);
    cr_assert(status == 200 || status == 409, "create bucket: HTTP %ld", status);
    snprintf(prefix, sizeof(prefix), "bb%ld-%u/", (long)getpid(), (unsigned)rand());
}

/* The configuration of a server on the gateway's bucket with secret, with
 * extra lines in [gc]. */
static const char *s3_conf_of(const char *bucket, const char *secret, const char *extra)
{
    static char conf[4096];

    snprintf(conf, sizeof(conf),
             "[storage]\ndriver = s3\ndelete = true\n[gc]\ninterval = 0\n%s\n"
             "[s3]\nendpoint = %s\nregion = %s\nbucket = %s\nprefix = %s\n"
             "access_key = %s\nsecret_key = %s\npath_style = true\npart_size = 5M\n",
             extra, gw.endpoint, gw.region, bucket, prefix, gw.access, secret);
    return conf;
}

static const char *s3_conf(const char *extra)
{
    return s3_conf_of(BUCKET, gw.secret, extra);
}

/* GET path whole; asserts 200 and the bytes. */
static void get_equals(const char *repo, const char *digest, const void *data, size_t len)
{
    char path[512], v[200];
    struct resp r;

    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", digest, r.status, r.body);
    cr_assert_eq(r.len, len, "GET %s: %zu bytes, want %zu", digest, r.len, len);
    cr_assert(memcmp(r.body, data, len) == 0, "GET %s: wrong bytes", digest);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), digest);
    resp_free(&r);
}

/* PATCH data at off into the upload at loc (updated from the reply). */
static void patch(char *loc, size_t locsize, const char *data, size_t off, size_t len)
{
    char cr[96];
    const char *h[] = {cr, "Content-Type: application/octet-stream", NULL};
    struct resp r;

    snprintf(cr, sizeof(cr), "Content-Range: %zu-%zu", off, off + len - 1);
    http(&srv, "PATCH", loc, data + off, len, h, &r);
    cr_assert_eq(r.status, 202, "PATCH %zu+%zu: %ld %s", off, len, r.status, r.body);
    cr_assert(resp_header(&r, "Location", loc, locsize));
    resp_free(&r);
}

static void finish(const char *loc, const char *digest)
{
    char path[1024];
    struct resp r;

    snprintf(path, sizeof(path), "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", digest);
    http(&srv, "PUT", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 201, "finish: %ld %s", r.status, r.body);
    resp_free(&r);
}

/* ---- start-up ------------------------------------------------------------------- */

/* serve with conf exits at once (status 1) and says want. */
static void refuses(const char *conf, const char *want)
{
    char dir[] = "/tmp/regs3-XXXXXX", path[300], args[900], out[8192];
    FILE *f;
    int rc;

    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/registry.conf", dir);
    f = fopen(path, "w");
    cr_assert(f);
    fputs(conf, f);
    fclose(f);
    snprintf(args, sizeof(args), "serve --listen 127.0.0.1:0 --root %s/data --config %s", dir,
             path);
    rc = registry_run(args, out, sizeof(out));
    cr_assert_neq(rc, 0, "serve started with a bad [s3] setting: %s", out);
    cr_assert_neq(rc, 128, "serve did not stop by itself: %s", out);
    cr_assert(strstr(out, want), "serve's message does not say '%s': %s", want, out);
    snprintf(args, sizeof(args), "rm -rf %s", dir);
    cr_assert_eq(system(args), 0);
}

Test(s3, bad_or_unreachable_settings_stop_serve_at_start_with_a_clear_message)
{
    unsetenv("AWS_ACCESS_KEY_ID");
    unsetenv("AWS_SECRET_ACCESS_KEY");
    refuses("[storage]\ndriver = s3\n", "driver = s3 needs [s3] endpoint and bucket");
    refuses("[storage]\ndriver = s3\n[s3]\nendpoint = 127.0.0.1:9000\n",
            "endpoint: expected http://host[:port]");
    refuses("[storage]\ndriver = s3\n[s3]\nendpoint = http://127.0.0.1:1\nbucket = b-1\n",
            "no credentials");
    refuses("[storage]\ndriver = s3\n[s3]\nendpoint = http://127.0.0.1:1\nbucket = b-1\n"
            "access_key = a\nsecret_key = b\n",
            "cannot reach bucket b-1 at http://127.0.0.1:1");

    need_gateway();
    refuses(s3_conf_of("no-such-bucket", gw.secret, ""), "bucket no-such-bucket does not exist");
    refuses(s3_conf_of(BUCKET, "wrong", ""), "refuses access to bucket " BUCKET);
}

/* ---- reads -------------------------------------------------------------------------- */

Test(s3, blobs_go_to_content_addressed_objects_and_come_back_whole_by_range_and_head)
{
    size_t big = 12 * MIB + 12345, small = 1000, off;
    char *a = rand_bytes(big), *b = rand_bytes(small), da[200], db[200], loc[1024], path[600];
    char v[200], *body;
    const char *range[] = {"Range: bytes=5242870-5242889", NULL};
    struct resp r;

    need_gateway();
    server_start(&srv, s3_conf(""));
    /* Chunked, across part boundaries (part_size 5M): a multipart upload. */
    digest_str("sha256", a, big, da, sizeof(da));
    start_upload(&srv, "s3/read", loc, sizeof(loc));
    for (off = 0; off < big; off += 4 * MIB)
        patch(loc, sizeof(loc), a, off, big - off < 4 * MIB ? big - off : 4 * MIB);
    finish(loc, da);
    /* Monolithic and small: one PUT. */
    push_blob(&srv, "s3/read", b, small, db, sizeof(db));

    cr_assert_eq(objects("blobs/"), 2, "two blobs, two objects");
    cr_assert_eq(objects("uploads/"), 0, "the staging object is gone after the commit");
    cr_assert_eq(multipart_uploads(), 0);
    object_path(da, path, sizeof(path));
    cr_assert_eq(s3_call("HEAD", path, NULL, 0, NULL), 200, "the object is at its digest's key");

    get_equals("s3/read", da, a, big);
    get_equals("s3/read", db, b, small);

    snprintf(path, sizeof(path), "/v2/s3/read/blobs/%s", da);
    http(&srv, "GET", path, NULL, 0, range, &r);
    cr_assert_eq(r.status, 206, "%ld", r.status);
    cr_assert_eq(r.len, 20);
    cr_assert(memcmp(r.body, a + 5242870, 20) == 0, "the range's bytes");
    snprintf(path, sizeof(path), "bytes 5242870-5242889/%zu", big);
    cr_assert_str_eq(resp_header(&r, "Content-Range", v, sizeof(v)), path);
    resp_free(&r);

    /* HEAD from the index alone: it answers even once the object is gone,
     * which a GET then reports as BLOB_UNKNOWN before sending any byte. */
    object_path(da, path, sizeof(path));
    cr_assert_eq(s3_call("DELETE", path, NULL, 0, &body), 204, "%s", body);
    free(body);
    snprintf(path, sizeof(path), "/v2/s3/read/blobs/%s", da);
    http(&srv, "HEAD", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    snprintf(path, sizeof(path), "%zu", big);
    cr_assert_str_eq(resp_header(&r, "Content-Length", v, sizeof(v)), path);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/s3/read/blobs/%s", da);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 404, "%ld", r.status);
    cr_assert_str_eq(resp_error_code(&r, v, sizeof(v)), "BLOB_UNKNOWN");
    resp_free(&r);
    free(a);
    free(b);
}

Test(s3, redirect_mode_answers_307_to_a_presigned_url_that_serves_the_blob)
{
    size_t len = 6 * MIB + 7;
    char *a = rand_bytes(len), da[200], path[600], loc[2048];
    struct resp r;
    CURL *c;
    struct buf got = {NULL, 0};
    long status = 0;

    need_gateway();
    server_start(&srv, s3_conf("[s3]\nredirect = true\n"));
    push_blob(&srv, "s3/redir", a, len, da, sizeof(da));
    snprintf(path, sizeof(path), "/v2/s3/redir/blobs/%s", da);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 307, "%ld %s", r.status, r.body);
    cr_assert(resp_header(&r, "Location", loc, sizeof(loc)));
    resp_free(&r);
    cr_assert(strncmp(loc, gw.endpoint, strlen(gw.endpoint)) == 0, "%s", loc);
    cr_assert(strstr(loc, "X-Amz-Signature="), "%s", loc);

    /* Followed with no credentials at all, as a client would. */
    c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, loc);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    cr_assert_eq(status, 200, "presigned GET: %ld %s", status, got.p);
    cr_assert_eq(got.n, len);
    cr_assert(memcmp(got.p, a, len) == 0, "the presigned URL's bytes");
    free(got.p);

    /* The signature covers the key: another key with it is refused. */
    *strstr(loc, "/blobs/sha256/") = '\0';
    strcat(loc, "/blobs/sha256/0000");
    got.p = NULL;
    got.n = 0;
    c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, loc);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    cr_assert_eq(status, 403, "a tampered URL: %ld", status);
    free(got.p);

    /* HEAD needs no redirect: the index has the size. */
    http(&srv, "HEAD", strstr(path, "/v2/"), NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "%ld", r.status);
    resp_free(&r);
    free(a);
}

/* ---- crash and resume ------------------------------------------------------------------ */

Test(s3, sigkill_in_the_middle_of_a_multipart_upload_then_resume_completes_with_the_right_digest)
{
    size_t len = 14 * MIB + 999, half = 7 * MIB;
    char *a = rand_bytes(len), da[200], loc[1024], v[200], have[64];
    struct resp r;

    need_gateway();
    server_start(&srv, s3_conf(""));
    digest_str("sha256", a, len, da, sizeof(da));
    start_upload(&srv, "s3/crash", loc, sizeof(loc));
    /* One 5 MiB part is in S3, the other 2 MiB in the session's local tail. */
    patch(loc, sizeof(loc), a, 0, half);
    cr_assert_eq(multipart_uploads(), 1, "a multipart upload is in progress");
    server_kill9(&srv);
    server_restart(&srv);

    http(&srv, "GET", loc, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 204, "upload status after the restart: %ld %s", r.status, r.body);
    snprintf(v, sizeof(v), "0-%zu", half - 1);
    cr_assert_str_eq(resp_header(&r, "Range", have, sizeof(have)), v, "acknowledged bytes kept");
    resp_free(&r);
    patch(loc, sizeof(loc), a, half, len - half);
    finish(loc, da);
    get_equals("s3/crash", da, a, len);
    cr_assert_eq(multipart_uploads(), 0, "no multipart upload is left behind");
    cr_assert_eq(objects("uploads/"), 0);
    cr_assert_eq(objects("blobs/"), 1);
    free(a);
}

/* ---- GC and fsck ------------------------------------------------------------------------- */

static void gc_now(void)
{
    int before = server_log_find(&srv, "gc: freed ", NULL, 0), i;

    kill(srv.pid, SIGUSR1);
    for (i = 0; i < 3000 && server_log_find(&srv, "gc: freed ", NULL, 0) == before; i++)
        usleep(10000);
    cr_assert_gt(server_log_find(&srv, "gc: freed ", NULL, 0), before, "no GC run logged");
}

Test(s3, gc_deletes_unreferenced_objects_orphans_and_stale_multipart_uploads)
{
    size_t len = 300000;
    char *a = rand_bytes(len), *b = rand_bytes(6 * MIB), *o = rand_bytes(100), da[200], db[200];
    char dor[200], loc[1024], path[600], line[1024];

    need_gateway();
    server_start(&srv, s3_conf("grace = 0\nupload_ttl = 1s\n"));
    push_blob(&srv, "s3/gc", a, len, da, sizeof(da)); /* no manifest needs it */
    push_blob(&srv, "s3/gc", b, 6 * MIB, db, sizeof(db));
    /* An object no index entry names (a crash between commit and record). */
    digest_str("sha256", o, 100, dor, sizeof(dor));
    object_path(dor, path, sizeof(path));
    cr_assert_eq(s3_call("PUT", path, o, 100, NULL), 200);
    /* An upload left half-way, with a part in S3. */
    start_upload(&srv, "s3/gc", loc, sizeof(loc));
    patch(loc, sizeof(loc), b, 0, 6 * MIB);
    cr_assert_eq(objects("blobs/"), 3);
    cr_assert_eq(multipart_uploads(), 1);

    sleep(2); /* past upload_ttl */
    gc_now();
    cr_assert_eq(objects("blobs/"), 0, "GC removed the unreferenced and the orphan objects");
    cr_assert_eq(multipart_uploads(), 0, "GC aborted the expired session's multipart upload");
    cr_assert_eq(objects("uploads/"), 0);
    cr_assert(server_log_find(&srv, "1 orphan blob files", line, sizeof(line)) > 0,
              "the orphan object is counted");
    free(a);
    free(b);
    free(o);
}

Test(s3, fsck_rehashes_objects_and_lists_the_bucket_against_the_index)
{
    char *a = rand_bytes(200000), *b = rand_bytes(300000), *o = rand_bytes(100);
    char da[200], db[200], dor[200], path[600], args[1200], out[16384], *conf;
    int rc;

    need_gateway();
    server_start(&srv, s3_conf(""));
    push_blob(&srv, "s3/fsck", a, 200000, da, sizeof(da));
    push_blob(&srv, "s3/fsck", b, 300000, db, sizeof(db));
    conf = srv.config;
    snprintf(args, sizeof(args), "fsck --root %s/data --config %s", srv.root, conf);
    rc = registry_run(args, out, sizeof(out));
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "0 problems (clean)"), "%s", out);
    cr_assert(strstr(out, "rehashed 2 blobs"), "%s", out);

    /* Corrupt one object, delete the other, add one the index lacks. */
    object_path(da, path, sizeof(path));
    cr_assert_eq(s3_call("PUT", path, b, 200000, NULL), 200);
    object_path(db, path, sizeof(path));
    cr_assert_eq(s3_call("DELETE", path, NULL, 0, NULL), 204);
    digest_str("sha256", o, 100, dor, sizeof(dor));
    object_path(dor, path, sizeof(path));
    cr_assert_eq(s3_call("PUT", path, o, 100, NULL), 200);
    rc = registry_run(args, out, sizeof(out));
    cr_assert_neq(rc, 0, "fsck passed a damaged bucket: %s", out);
    cr_assert(strstr(out, da) && strstr(out, "corrupt"), "the corrupt object: %s", out);
    cr_assert(strstr(out, db) && strstr(out, "missing"), "the missing object: %s", out);
    cr_assert(strstr(out, dor) && strstr(out, "not in the index"), "the stray object: %s", out);
    free(a);
    free(b);
    free(o);
}

/* ---- redirect mode behind access control ------------------------------------------- */

/* A presigned URL is a bearer credential for one object: whoever holds it
 * reads the blob, with no further check. So the registry must decide who
 * may read, and whether the repository asked holds the blob, before it
 * signs. These tests run redirect mode with authentication on and look for
 * a URL in every refused answer. alice may do anything; bob may pull the
 * repositories under s3a/ only. */

static int token_mode; /* the server under test runs [auth] mode = token */

static void start_guarded(const char *mode)
{
    char extra[1400], cmd[800];

    need_gateway();
    token_mode = !strcmp(mode, "token");
    server_prepare(&srv);
    write_users(&srv);
    snprintf(cmd, sizeof(cmd),
             "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
             "-out %s 2>/dev/null",
             server_file(&srv, "key.pem", NULL));
    cr_assert_eq(system(cmd), 0, "openssl genpkey");
    snprintf(extra, sizeof(extra),
             "grace = 0\n[auth]\nmode = %s\nhtpasswd = %s\nkey = %s\n"
             "rule = user:alice * *\nrule = user:bob pull s3a/*\n[s3]\nredirect = true\n",
             mode, server_file(&srv, "htpasswd", NULL), server_file(&srv, "key.pem", NULL));
    server_launch(&srv, s3_conf(extra));
}

/* The Authorization header user (NULL: anonymous, which gives NULL) sends
 * for repo: Basic credentials, or in token mode a token the registry's
 * token service granted for pull, push and delete on repo (the rules cut
 * it down). Valid until the fourth next call. */
static const char *as(const char *user, const char *repo)
{
    static char h[4][8192];
    static int next;
    char *out = h[next++ % 4], creds[64], path[512];
    const char *pass = user && !strcmp(user, "alice") ? "secret" : "pw2";
    const char *basic[] = {out, NULL};
    unsigned char enc[128];
    struct resp r;
    json_t *j;

    if (!user)
        return NULL;
    snprintf(creds, sizeof(creds), "%s:%s", user, pass);
    EVP_EncodeBlock(enc, (unsigned char *)creds, (int)strlen(creds));
    snprintf(out, sizeof(h[0]), "Authorization: Basic %s", enc);
    if (!token_mode)
        return out;
    snprintf(path, sizeof(path), "/token?service=registry&scope=repository:%s:pull,push,delete",
             repo);
    http(&srv, "GET", path, NULL, 0, basic, &r);
    cr_assert_eq(r.status, 200, "token for %s on %s: %ld %s", user, repo, r.status, r.body);
    j = json_loadb(r.body, r.len, 0, NULL);
    cr_assert(j && json_is_string(json_object_get(j, "token")), "%s", r.body);
    snprintf(out, sizeof(h[0]), "Authorization: Bearer %s",
             json_string_value(json_object_get(j, "token")));
    json_decref(j);
    resp_free(&r);
    return out;
}

/* method on repo's blob digest as user, with extra header hdr (may be NULL). */
static void blob_req(const char *method, const char *user, const char *repo, const char *digest,
                     const char *hdr, struct resp *r)
{
    const char *hdrs[3] = {NULL, NULL, NULL};
    char path[512];
    int n = 0;

    if (user)
        hdrs[n++] = as(user, repo);
    if (hdr)
        hdrs[n++] = hdr;
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    http(&srv, method, path, NULL, 0, hdrs, r);
}

/* Nothing in the answer points at the store: no 307, no Location, and no
 * signature anywhere in the headers or the body. */
static void no_url(const struct resp *r, const char *what)
{
    char v[2048];

    cr_assert_neq(r->status, 307, "%s: redirected", what);
    cr_assert_null(resp_header(r, "Location", v, sizeof(v)), "%s: Location %s", what, v);
    cr_assert_null(strstr(r->headers, "X-Amz-"), "%s: %s", what, r->headers);
    cr_assert_null(strstr(r->body, "X-Amz-"), "%s: %s", what, r->body);
    cr_assert_null(strstr(r->body, gw.endpoint), "%s: the store in the body: %s", what, r->body);
}

/* A refused read: status want, code (NULL: not checked), nothing signed. */
static void refused(const char *method, const char *user, const char *repo, const char *digest,
                    long want, const char *code, const char *what)
{
    char v[512];
    struct resp r;

    blob_req(method, user, repo, digest, NULL, &r);
    cr_assert_eq(r.status, want, "%s: %ld %s", what, r.status, r.body);
    no_url(&r, what);
    if (want == 401)
        cr_assert(resp_header(&r, "WWW-Authenticate", v, sizeof(v)), "%s: no challenge", what);
    if (code && strcmp(method, "HEAD"))
        cr_assert_str_eq(resp_error_code(&r, v, sizeof(v)), code, "%s", what);
    resp_free(&r);
}

/* GET url with no credentials (and hdr, may be NULL), as a client following
 * the redirect; the status, the bytes into *got (free them). */
static long follow(const char *url, const char *hdr, struct buf *got)
{
    struct curl_slist *h = hdr ? curl_slist_append(NULL, hdr) : NULL;
    CURL *c = curl_easy_init();
    long status = 0;

    got->p = NULL;
    got->n = 0;
    cr_assert(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, buf_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, got);
    cr_assert_eq(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    return status;
}

/* user's GET of repo's blob (with hdr, may be NULL) is a 307 to a presigned
 * URL of the store; followed, it gives want_status and data. The URL into
 * loc (2048 bytes; may be NULL). */
static void redirected(const char *user, const char *repo, const char *digest, const char *hdr,
                       long want_status, const void *data, size_t len, char *url)
{
    char loc[2048];
    struct resp r;
    struct buf got;
    long status;

    blob_req("GET", user, repo, digest, hdr, &r);
    cr_assert_eq(r.status, 307, "%s GET %s: %ld %s", user, repo, r.status, r.body);
    cr_assert(resp_header(&r, "Location", loc, sizeof(loc)));
    resp_free(&r);
    cr_assert(strncmp(loc, gw.endpoint, strlen(gw.endpoint)) == 0, "%s", loc);
    cr_assert(strstr(loc, "X-Amz-Signature="), "%s", loc);
    status = follow(loc, hdr, &got);
    cr_assert_eq(status, want_status, "presigned GET: %ld %s", status, got.p);
    if (data) {
        cr_assert_eq(got.n, len, "presigned GET: %zu bytes, want %zu", got.n, len);
        cr_assert(memcmp(got.p, data, len) == 0, "the presigned URL's bytes");
    }
    free(got.p);
    if (url)
        memcpy(url, loc, sizeof(loc));
}

/* Push data to repo as user (one POST); its digest into digest. */
static void push_as(const char *user, const char *repo, const void *data, size_t len, char *digest)
{
    const char *hdrs[] = {as(user, repo), NULL};
    char path[512];
    struct resp r;

    digest_str("sha256", data, len, digest, 200);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, digest);
    http(&srv, "POST", path, data, len, hdrs, &r);
    cr_assert_eq(r.status, 201, "push to %s: %ld %s", repo, r.status, r.body);
    resp_free(&r);
}

static void send_as(const char *method, const char *user, const char *repo, const char *path,
                    const char *body, const char *ct, long want)
{
    const char *hdrs[] = {as(user, repo), ct, NULL};
    struct resp r;

    http(&srv, method, path, body, body ? strlen(body) : 0, hdrs, &r);
    cr_assert_eq(r.status, want, "%s %s: %ld %s", method, path, r.status, r.body);
    resp_free(&r);
}

static void redirect_only_after_access_control(void)
{
    size_t len = 300000;
    char *x = rand_bytes(len), *y = rand_bytes(1000), *z = rand_bytes(5000);
    char dx[200], dy[200], dz[200], dc[200], dm[200], dnone[200], body[1500], path[600];
    char url[2048];
    struct buf got;
    long status;
    const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    const char *denied = token_mode ? NULL : "DENIED";
    long deny = token_mode ? 401 : 403;

    push_as("alice", "s3a/app", x, len, dx); /* x is linked in both repositories */
    push_as("alice", "s3b/app", x, len, dx);
    push_as("alice", "s3a/app", y, 1000, dy); /* y only in s3a/app */
    digest_str("sha256", "not pushed", 10, dnone, sizeof(dnone));

    /* Who may not read: no URL, whatever the blob. */
    refused("GET", NULL, "s3a/app", dx, 401, "UNAUTHORIZED", "anonymous GET");
    refused("HEAD", NULL, "s3a/app", dx, 401, NULL, "anonymous HEAD");
    refused("GET", NULL, "s3a/app", dnone, 401, "UNAUTHORIZED", "anonymous GET, no such blob");
    refused("GET", "bob", "s3b/app", dx, deny, denied, "bob through s3b/app");
    refused("HEAD", "bob", "s3b/app", dx, deny, NULL, "bob's HEAD through s3b/app");
    if (token_mode) { /* bob's token for s3a/app, shown on s3b/app */
        const char *hdrs[] = {as("bob", "s3a/app"), NULL};
        struct resp r;

        snprintf(path, sizeof(path), "/v2/s3b/app/blobs/%s", dx);
        http(&srv, "GET", path, NULL, 0, hdrs, &r);
        cr_assert_eq(r.status, 401, "an s3a/app token on s3b/app: %ld", r.status);
        no_url(&r, "an s3a/app token on s3b/app");
        resp_free(&r);
    }

    /* May read, but the repository asked does not hold the blob. */
    refused("GET", "bob", "s3a/other", dy, 404, "BLOB_UNKNOWN", "y through s3a/other");
    refused("GET", "alice", "s3b/app", dy, 404, "BLOB_UNKNOWN", "y through s3b/app");
    refused("GET", "bob", "s3a/app", dnone, 404, "BLOB_UNKNOWN", "a blob in no repository");

    /* Allowed: the URL serves the blob, whole or by the range the client
     * sends on to the store. HEAD is answered here. */
    redirected("bob", "s3a/app", dx, NULL, 200, x, len, NULL);
    redirected("alice", "s3b/app", dx, NULL, 200, x, len, NULL);
    redirected("bob", "s3a/app", dx, "Range: bytes=100000-100099", 206, x + 100000, 100, NULL);
    /* The range is the store's to check: one past the end goes out too. */
    snprintf(body, sizeof(body), "Range: bytes=%zu-", len);
    redirected("bob", "s3a/app", dx, body, 416, NULL, 0, NULL);
    {
        struct resp r;
        char v[64];

        blob_req("HEAD", "bob", "s3a/app", dx, NULL, &r);
        cr_assert_eq(r.status, 200, "HEAD: %ld", r.status);
        no_url(&r, "HEAD");
        snprintf(path, sizeof(path), "%zu", len);
        cr_assert_str_eq(resp_header(&r, "Content-Length", v, sizeof(v)), path);
        resp_free(&r);
    }

    /* A removed link: s3b/app no longer holds x, s3a/app still does. */
    snprintf(path, sizeof(path), "/v2/s3b/app/blobs/%s", dx);
    send_as("DELETE", "alice", "s3b/app", path, NULL, NULL, 202);
    refused("GET", "alice", "s3b/app", dx, 404, "BLOB_UNKNOWN", "x after its link is removed");
    refused("HEAD", "alice", "s3b/app", dx, 404, NULL, "HEAD of x after its link is removed");
    redirected("bob", "s3a/app", dx, NULL, 200, x, len, NULL);

    /* A layer of a deleted manifest, once GC has freed it. */
    push_as("alice", "s3a/img", cfg, strlen(cfg), dc);
    push_as("alice", "s3a/img", z, 5000, dz);
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
             "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":5000}]}",
             dc, strlen(cfg), dz);
    digest_str("sha256", body, strlen(body), dm, sizeof(dm));
    send_as("PUT", "alice", "s3a/img", "/v2/s3a/img/manifests/v1", body,
            "Content-Type: application/vnd.oci.image.manifest.v1+json", 201);
    redirected("bob", "s3a/img", dz, NULL, 200, z, 5000, url);
    snprintf(path, sizeof(path), "/v2/s3a/img/manifests/%s", dm);
    send_as("DELETE", "alice", "s3a/img", path, NULL, NULL, 202);
    gc_now();
    refused("GET", "bob", "s3a/img", dz, 404, "BLOB_UNKNOWN", "a layer of a deleted manifest");
    status = follow(url, NULL, &got); /* signed before: the object is gone */
    cr_assert_eq(status, 404, "a URL of a freed object: %ld %s", status, got.p);
    free(got.p);
    refused("GET", "bob", "s3a/img", dc, 404, "BLOB_UNKNOWN", "the config of a deleted manifest");
    refused("GET", "bob", "s3a/app", dx, 404, "BLOB_UNKNOWN", "x once GC freed it");
    free(x);
    free(y);
    free(z);
}

Test(s3, redirect_mode_with_basic_auth_signs_a_url_only_for_a_reader_of_a_linked_blob)
{
    start_guarded("basic");
    redirect_only_after_access_control();
}

Test(s3, redirect_mode_with_tokens_signs_a_url_only_for_a_reader_of_a_linked_blob)
{
    start_guarded("token");
    redirect_only_after_access_control();
}
