/* The HTTP handlers of api/, run in-process against a stand-in for
 * api/req.h (as h2o's unit tests run its handlers on a loopback request):
 * no socket and no libmicrohttpd, a real store underneath. This binary
 * links api/ without server/http.o: the handlers depend on the request
 * interface, not on the server that implements it. Also the Range and
 * Content-Range parsers (api/range.h). */
#include <stdarg.h>

#include "fixture.h"

#include "../api/api.h"
#include "../api/range.h"

/* --- the stand-in request ---------------------------------------------------- */

#define MAX_PAIRS 16
#define MAX_POOL 64

struct pair {
    const char *name, *value;
};

struct req {
    const char *method;
    struct pair in[MAX_PAIRS];
    size_t nin;
    struct pair query[MAX_PAIRS];
    size_t nquery;
    struct registry *reg;
    struct route rt;
    void *pool[MAX_POOL];
    size_t npool;
    void *state;
    void (*done)(void *state, int aborted);
    /* The reply. */
    int replied;
    unsigned status;
    char ctype[128];
    struct pair out[MAX_PAIRS];
    size_t nout;
    char *body;
    size_t len; /* body bytes, or for a HEAD the length announced */
};

const char *req_method(const struct req *r)
{
    return r->method;
}

int req_is_head(const struct req *r)
{
    return !strcmp(r->method, "HEAD");
}

static const char *find(const struct pair *p, size_t n, const char *name)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!strcasecmp(p[i].name, name))
            return p[i].value;
    return NULL;
}

const char *req_header(struct req *r, const char *name)
{
    return find(r->in, r->nin, name);
}

const char *req_query(struct req *r, const char *name)
{
    return find(r->query, r->nquery, name);
}

size_t req_query_all(struct req *r, const char *name, const char **out, size_t max)
{
    size_t i, n = 0;

    for (i = 0; i < r->nquery && n < max; i++)
        if (!strcmp(r->query[i].name, name))
            out[n++] = r->query[i].value;
    return n;
}

struct registry *req_registry(struct req *r)
{
    return r->reg;
}

const char *req_client(struct req *r)
{
    (void)r;
    return "127.0.0.1";
}

/* Everything is allowed but repositories named secret/... and the
 * registry-wide catalog right: enough to see a handler ask. */
int req_may(struct req *r, const char *repo, unsigned action)
{
    (void)r;
    (void)action;
    return repo && strncmp(repo, "secret/", 7) != 0;
}

const struct route *req_route(struct req *r)
{
    return &r->rt;
}

void *req_alloc(struct req *r, size_t size)
{
    void *p;

    cr_assert_lt(r->npool, MAX_POOL);
    p = calloc(1, size);
    r->pool[r->npool++] = p;
    return p;
}

char *req_printf(struct req *r, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    cr_assert_lt(r->npool, MAX_POOL);
    r->pool[r->npool++] = s;
    return s;
}

void req_set_state(struct req *r, void *state, void (*done)(void *state, int aborted))
{
    r->state = state;
    r->done = done;
}

void *req_state(struct req *r)
{
    return r->state;
}

int req_set_header(struct req *r, const char *name, const char *value)
{
    if (!value)
        return REG_E_NOMEM;
    cr_assert_lt(r->nout, MAX_PAIRS);
    r->out[r->nout].name = req_printf(r, "%s", name);
    r->out[r->nout].value = req_printf(r, "%s", value);
    r->nout++;
    return REG_OK;
}

int req_replied(const struct req *r)
{
    return r->replied;
}

static void reply(struct req *r, unsigned status, const char *ctype)
{
    cr_assert_not(r->replied, "a request is answered exactly once");
    r->replied = 1;
    r->status = status;
    snprintf(r->ctype, sizeof(r->ctype), "%s", ctype ? ctype : "");
}

void req_reply_buf(struct req *r, unsigned status, const char *content_type, const void *buf,
                   size_t len)
{
    reply(r, status, content_type);
    r->body = malloc(len + 1);
    memcpy(r->body, buf, len);
    r->body[len] = '\0';
    r->len = len;
}

void req_reply(struct req *r, unsigned status)
{
    req_reply_buf(r, status, NULL, "", 0);
}

void req_reply_take(struct req *r, unsigned status, const char *content_type, void *buf, size_t len)
{
    req_reply_buf(r, status, content_type, buf, len);
    free(buf);
}

void req_reply_head(struct req *r, unsigned status, const char *content_type, uint64_t len)
{
    cr_assert(req_is_head(r));
    reply(r, status, content_type);
    r->len = len;
}

void req_reply_fd(struct req *r, unsigned status, const char *content_type, int fd, uint64_t off,
                  uint64_t len)
{
    reply(r, status, content_type);
    r->len = len;
    r->body = calloc(1, len + 1);
    if (!req_is_head(r))
        cr_assert_eq(pread(fd, r->body, len, (off_t)off), (ssize_t)len);
    close(fd);
}

/* The handlers under test never wait for a pull-through fetch. */
void req_suspend(struct req *r)
{
    (void)r;
    cr_assert_fail("req_suspend without a pull-through cache");
}

void req_resume(struct req *r)
{
    (void)r;
    cr_assert_fail("req_resume without a pull-through cache");
}

int req_reply_stream(struct req *r, unsigned status, const char *content_type, uint64_t len,
                     size_t block, req_stream_fn read, void *arg, void (*done)(void *arg))
{
    size_t cap = block;
    long n;

    reply(r, status, content_type);
    r->body = malloc(cap + 1);
    r->len = 0;
    while (!req_is_head(r)) {
        if (r->len + block > cap) {
            cap *= 2;
            r->body = realloc(r->body, cap + 1);
        }
        n = read(arg, r->len, r->body + r->len, block);
        if (n == REQ_STREAM_END)
            break;
        cr_assert_gt(n, 0, "a stream read fails or says nothing");
        r->len += (size_t)n;
    }
    r->body[r->len] = '\0';
    if (len != REQ_STREAM_UNKNOWN && !req_is_head(r))
        cr_assert_eq(r->len, len, "the stream is as long as it said");
    if (done)
        done(arg);
    return REG_OK;
}

/* --- driving a handler, as server/http.c does ---------------------------------- */

static struct registry reg;

static void setup(void)
{
    fixture_open(1);
    memset(&reg, 0, sizeof(reg));
    reg.svc = fx.svc;
    reg.max_manifest_size = 4 << 20;
    reg.manifest_budget = 64 << 20;
}

static void teardown(void)
{
    fixture_close();
}

TestSuite(api, .init = setup, .fini = teardown);
TestSuite(range);

/* A request: method, route, then "name: value" headers and "?name=value"
 * query parameters, NULL-terminated. */
static struct req *request(const char *method, enum route_kind kind, const char *name,
                           const char *ref, ...)
{
    struct req *r = calloc(1, sizeof(*r));
    const char *a;
    va_list ap;

    r->method = method;
    r->reg = &reg;
    r->rt.kind = kind;
    snprintf(r->rt.name, sizeof(r->rt.name), "%s", name ? name : "");
    snprintf(r->rt.ref, sizeof(r->rt.ref), "%s", ref ? ref : "");
    va_start(ap, ref);
    while ((a = va_arg(ap, const char *)) != NULL) {
        const char *sep = a[0] == '?' ? strchr(a, '=') : strchr(a, ':');
        struct pair *p = a[0] == '?' ? &r->query[r->nquery++] : &r->in[r->nin++];

        cr_assert_not_null(sep);
        p->name = req_printf(r, "%.*s", (int)(sep - a - (a[0] == '?')), a + (a[0] == '?'));
        p->value = sep + 1 + (a[0] != '?' && sep[1] == ' ');
    }
    va_end(ap);
    return r;
}

/* Run the handler with body (NULL: none) fed in pieces of at most piece. */
static void run(struct req *r, const char *body, size_t len, size_t piece)
{
    const struct handler *h = api_handler(r->rt.kind, r->method);
    size_t off = 0;
    int rc;

    cr_assert_not_null(h, "no handler for %s", r->method);
    rc = h->begin(r, &r->rt);
    while (!rc && !r->replied && h->body && body && off < len) {
        size_t n = len - off < piece ? len - off : piece;

        rc = h->body(r, body + off, n);
        off += n;
    }
    if (rc && !r->replied)
        api_error(r, rc, NULL);
    else if (!r->replied && h->end)
        h->end(r);
    cr_assert(r->replied, "the handler answered");
    if (r->done)
        r->done(r->state, 0);
}

static void finish(struct req *r)
{
    size_t i;

    for (i = 0; i < r->npool; i++)
        free(r->pool[i]);
    free(r->body);
    free(r);
}

static const char *out_header(struct req *r, const char *name)
{
    return find(r->out, r->nout, name);
}

/* The code of an error reply's first error. */
static const char *error_code(struct req *r)
{
    static char code[64];
    json_t *j = json_loadb(r->body, r->len, 0, NULL);

    cr_assert_not_null(j, "an error reply is JSON: %s", r->body);
    snprintf(code, sizeof(code), "%s",
             json_string_value(
                 json_object_get(json_array_get(json_object_get(j, "errors"), 0), "code")));
    json_decref(j);
    return code;
}

/* --- blobs -------------------------------------------------------------------- */

Test(api, a_blob_get_sends_the_bytes_and_a_range_sends_part_of_them)
{
    struct digest d;
    struct req *r;

    fixture_blob("app", "hello", 5, &d);
    r = request("GET", ROUTE_BLOB, "app", d.str, NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_eq(r->len, 5);
    cr_assert_str_eq(r->body, "hello");
    cr_assert_str_eq(out_header(r, "Docker-Content-Digest"), d.str);
    cr_assert_str_eq(out_header(r, "Accept-Ranges"), "bytes");
    finish(r);

    r = request("GET", ROUTE_BLOB, "app", d.str, "Range: bytes=1-3", NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 206);
    cr_assert_str_eq(out_header(r, "Content-Range"), "bytes 1-3/5");
    cr_assert_str_eq(r->body, "ell");
    finish(r);

    r = request("GET", ROUTE_BLOB, "app", d.str, "Range: bytes=9-", NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 416);
    cr_assert_str_eq(out_header(r, "Content-Range"), "bytes */5");
    finish(r);
}

Test(api, a_blob_of_another_repository_is_unknown)
{
    struct digest d;
    struct req *r;

    fixture_blob("app", "hello", 5, &d);
    r = request("HEAD", ROUTE_BLOB, "other", d.str, NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 404);
    cr_assert_str_eq(error_code(r), "BLOB_UNKNOWN");
    finish(r);
}

/* A store without descriptors (S3): the handler pulls a reader through the
 * service, one GET per body, and answers HEAD from the index. */
static void setup_s3(void)
{
    fixture_open_s3(1);
    memset(&reg, 0, sizeof(reg));
    reg.svc = fx.svc;
    reg.max_manifest_size = 4 << 20;
    reg.manifest_budget = 64 << 20;
}

TestSuite(api_s3, .fini = teardown);

Test(api_s3, a_blob_streams_whole_and_by_range_with_one_request_and_head_sends_none)
{
    size_t len = 700000, i;
    char *data = malloc(len);
    struct digest d;
    struct req *r;
    uint64_t before;

    setup_s3();
    cr_assert_not_null(data);
    for (i = 0; i < len; i++)
        data[i] = (char)(i % 251);
    fixture_blob("app", data, len, &d);

    before = blobstore_requests(fx.bs);
    r = request("HEAD", ROUTE_BLOB, "app", d.str, NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_eq(r->len, len, "HEAD says the index's size");
    finish(r);
    cr_assert_eq(blobstore_requests(fx.bs), before, "a HEAD sends nothing to S3");

    r = request("GET", ROUTE_BLOB, "app", d.str, NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_eq(r->len, len);
    cr_assert(memcmp(r->body, data, len) == 0, "the bytes");
    cr_assert_str_eq(out_header(r, "Docker-Content-Digest"), d.str);
    finish(r);
    cr_assert_eq(blobstore_requests(fx.bs), before + 1, "one GET for the whole body");

    r = request("GET", ROUTE_BLOB, "app", d.str, "Range: bytes=300000-300099", NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 206);
    cr_assert_eq(r->len, 100);
    cr_assert(memcmp(r->body, data + 300000, 100) == 0, "the range's bytes");
    cr_assert_str_eq(out_header(r, "Content-Range"), "bytes 300000-300099/700000");
    finish(r);
    cr_assert_eq(blobstore_requests(fx.bs), before + 2, "a range is one ranged GET");
    free(data);
}

/* --- uploads ------------------------------------------------------------------ */

Test(api, a_chunked_upload_goes_post_patch_put_and_refuses_a_gap)
{
    struct digest d;
    struct req *r;
    char uuid[64], *q;
    const char *loc;

    r = request("POST", ROUTE_UPLOAD_START, "app", NULL, NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 202);
    loc = out_header(r, "Location");
    cr_assert_not_null(loc);
    snprintf(uuid, sizeof(uuid), "%s", strrchr(loc, '/') + 1);
    finish(r);

    r = request("PATCH", ROUTE_UPLOAD, "app", uuid, "Content-Range: 0-2", NULL);
    run(r, "abc", 3, 2);
    cr_assert_eq(r->status, 202);
    cr_assert_str_eq(out_header(r, "Range"), "0-2");
    finish(r);

    r = request("PATCH", ROUTE_UPLOAD, "app", uuid, "Content-Range: 5-6", NULL);
    run(r, "xy", 2, 2);
    cr_assert_eq(r->status, 416);
    cr_assert_str_eq(out_header(r, "Range"), "0-2", "the reply says where the upload stands");
    finish(r);

    digest_of(DIGEST_SHA256, "abcde", 5, &d);
    q = NULL;
    cr_assert_geq(asprintf(&q, "?digest=%s", d.str), 0);
    r = request("PUT", ROUTE_UPLOAD, "app", uuid, q, NULL);
    run(r, "de", 2, 1);
    cr_assert_eq(r->status, 201);
    cr_assert_str_eq(out_header(r, "Docker-Content-Digest"), d.str);
    finish(r);
    free(q);

    r = request("GET", ROUTE_BLOB, "app", d.str, NULL);
    run(r, NULL, 0, 0);
    cr_assert_str_eq(r->body, "abcde");
    finish(r);
}

Test(api, a_monolithic_upload_with_the_wrong_digest_stores_nothing)
{
    struct digest d;
    struct req *r;
    char *q = NULL;

    digest_of(DIGEST_SHA256, "something else", 14, &d);
    cr_assert_geq(asprintf(&q, "?digest=%s", d.str), 0);
    r = request("POST", ROUTE_UPLOAD_START, "app", NULL, q, NULL);
    run(r, "hello", 5, 5);
    cr_assert_eq(r->status, 400);
    cr_assert_str_eq(error_code(r), "DIGEST_INVALID");
    finish(r);
    free(q);
    r = request("GET", ROUTE_BLOB, "app", d.str, NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 404);
    finish(r);
}

/* --- manifests ------------------------------------------------------------------ */

static char *manifest_for(const struct digest *cfg, const struct digest *layer)
{
    char *s = NULL;

    cr_assert_geq(asprintf(&s,
                           "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
                           "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
                           "\"size\":2},\"layers\":[{\"mediaType\":\"application/"
                           "vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":5}]}",
                           "application/vnd.oci.image.manifest.v1+json", cfg->str, layer->str),
                  0);
    return s;
}

Test(api, a_manifest_put_then_get_and_head)
{
    struct digest c, l, md;
    struct req *r;
    char *body;

    fixture_blob("app", "{}", 2, &c);
    fixture_blob("app", "hello", 5, &l);
    body = manifest_for(&c, &l);
    digest_of(DIGEST_SHA256, body, strlen(body), &md);
    r = request("PUT", ROUTE_MANIFEST, "app", "v1",
                "Content-Type: application/vnd.oci.image.manifest.v1+json", NULL);
    run(r, body, strlen(body), 7);
    cr_assert_eq(r->status, 201, "got %u: %s", r->status, r->body);
    cr_assert_str_eq(out_header(r, "Docker-Content-Digest"), md.str);
    finish(r);

    r = request("GET", ROUTE_MANIFEST, "app", "v1", NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->ctype, "application/vnd.oci.image.manifest.v1+json");
    cr_assert_str_eq(r->body, body);
    finish(r);

    r = request("HEAD", ROUTE_MANIFEST, "app", md.str, NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_eq(r->len, strlen(body));
    cr_assert_str_eq(out_header(r, "Docker-Content-Digest"), md.str);
    finish(r);

    /* The layer is in use: refused with the manifest named. */
    r = request("DELETE", ROUTE_BLOB, "app", l.str, NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 405);
    cr_assert_str_eq(error_code(r), "UNSUPPORTED");
    cr_assert_not_null(strstr(r->body, md.str));
    finish(r);
    free(body);
}

Test(api, broken_manifests_get_manifest_invalid_with_a_reason)
{
    struct req *r = request("PUT", ROUTE_MANIFEST, "app", "v1", NULL);

    run(r, "{\"schemaVersion\":", 17, 17);
    cr_assert_eq(r->status, 400);
    cr_assert_str_eq(error_code(r), "MANIFEST_INVALID");
    cr_assert_not_null(strstr(r->body, "invalid JSON"));
    finish(r);

    r = request("PUT", ROUTE_MANIFEST, "app", "bad tag!", NULL);
    run(r, "{}", 2, 2);
    cr_assert_eq(r->status, 400);
    finish(r);
}

Test(api, the_catalog_lists_only_what_the_caller_may_pull)
{
    struct digest d;
    struct req *r;

    fixture_blob("public/a", "x", 1, &d);
    fixture_blob("secret/b", "x", 1, &d);
    r = request("GET", ROUTE_CATALOG, NULL, NULL, "?n=10", NULL);
    run(r, NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "{\"repositories\":[\"public/a\"]}");
    finish(r);
}

/* --- Range and Content-Range ------------------------------------------------------ */

Test(range, satisfiable_ranges_are_cut_to_the_blob)
{
    static const struct {
        const char *h;
        uint64_t off, len;
    } ok[] = {
        {"bytes=0-0", 0, 1},  {"bytes=2-", 2, 8},   {"bytes=-3", 7, 3},
        {"bytes=-30", 0, 10}, {"bytes=5-99", 5, 5}, {"bytes=9-9", 9, 1},
    };
    uint64_t off, len;
    size_t i;
    int partial;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_eq(range_parse(ok[i].h, 10, &off, &len, &partial), REG_OK, "%s", ok[i].h);
        cr_assert(partial, "%s", ok[i].h);
        cr_assert_eq(off, ok[i].off, "%s", ok[i].h);
        cr_assert_eq(len, ok[i].len, "%s", ok[i].h);
    }
}

Test(range, unsatisfiable_and_ignored_ranges)
{
    static const char *const ignored[] = {NULL,        "bytes=0-1,3-4", "items=0-1", "bytes=5-2",
                                          "bytes=a-b", "bytes=-",       "bytes=1-2x"};
    uint64_t off, len;
    size_t i;
    int partial;

    cr_assert_eq(range_parse("bytes=10-", 10, &off, &len, &partial), REG_E_RANGE);
    cr_assert_eq(range_parse("bytes=-0", 10, &off, &len, &partial), REG_E_RANGE);
    cr_assert_eq(range_parse("bytes=-1", 0, &off, &len, &partial), REG_E_RANGE);
    for (i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        cr_assert_eq(range_parse(ignored[i], 10, &off, &len, &partial), REG_OK);
        cr_assert_not(partial, "%s means the whole blob", ignored[i] ? ignored[i] : "(none)");
    }
}

Test(range, content_range_forms)
{
    static const char *const bad[] = {"",
                                      "-1",
                                      "1-",
                                      "5-2",
                                      "a-b",
                                      "bytes 1-2x",
                                      "0-18446744073709551615",
                                      "99999999999999999999-1"};
    uint64_t start, len;
    size_t i;

    cr_assert_eq(content_range_parse("0-2", &start, &len), REG_OK);
    cr_assert_eq(start, 0);
    cr_assert_eq(len, 3);
    cr_assert_eq(content_range_parse("bytes 3-4/10", &start, &len), REG_OK);
    cr_assert_eq(start, 3);
    cr_assert_eq(len, 2);
    cr_assert_eq(content_range_parse("bytes=7-7", &start, &len), REG_OK);
    cr_assert_eq(len, 1);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(content_range_parse(bad[i], &start, &len), REG_E_UPLOAD_INVALID, "%s", bad[i]);
}
