/* PUT/GET/HEAD/DELETE /v2/NAME/manifests/REFERENCE */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/err.h"
#include "../service/service.h"
#include "api.h"

struct mbody {
    struct registry *reg;
    char *buf; /* the manifest bytes, at most max_manifest_size */
    size_t len, cap;
    size_t reserved; /* bytes of the registry's manifest budget held */
};

/* Hold n more bytes of the budget every manifest body in flight shares;
 * REG_E_TOOMANY when it is spent (the client retries later). */
static int reserve(struct mbody *b, size_t n)
{
    size_t was = atomic_fetch_add(&b->reg->manifest_buffered, n);

    if (was + n > b->reg->manifest_budget) {
        atomic_fetch_sub(&b->reg->manifest_buffered, n);
        return REG_E_TOOMANY;
    }

    b->reserved += n;
    return REG_OK;
}

static void mbody_done(void *p, int aborted)
{
    struct mbody *b = p;

    (void)aborted;
    free(b->buf);
    b->buf = NULL;
    atomic_fetch_sub(&b->reg->manifest_buffered, b->reserved);
    b->reserved = 0;
}

/* A reference is a digest when it has a colon, else a tag. */
static int parse_reference(const char *ref, struct svc_ref *out)
{
    memset(out, 0, sizeof(*out));
    if (strchr(ref, ':'))
        return digest_parse(ref, strlen(ref), &out->d);
    out->tag = ref;
    return api_tag_valid(ref, strlen(ref)) ? REG_OK : REG_E_TAG_INVALID;
}

static int put_begin(struct req *r, const struct route *rt)
{
    struct registry *reg = req_registry(r);
    const char *cl = req_header(r, "Content-Length");
    struct mbody *b;
    struct svc_ref ref;
    unsigned long long declared = 0;
    int rc = parse_reference(rt->ref, &ref);

    if (rc)
        return rc;
    rc = svc_writable(reg->svc, rt->name);
    if (rc) {
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    if (cl) {
        char *end;

        errno = 0;
        declared = strtoull(cl, &end, 10);
        if (errno || end == cl || *end || *cl == '-')
            return REG_E_BAD_REQUEST;
    }
    if (declared > reg->max_manifest_size)
        return REG_E_TOO_LARGE;
    b = req_alloc(r, sizeof(*b));
    if (!b)
        return REG_E_NOMEM;
    memset(b, 0, sizeof(*b));
    b->reg = reg;
    req_set_state(r, b, mbody_done);
    /* A declared length is held at once, so a refusal comes before the body. */
    rc = cl ? reserve(b, (size_t)declared) : REG_OK;
    if (rc == REG_E_TOOMANY)
        req_set_header(r, "Retry-After", "1");
    return rc;
}

static int put_body(struct req *r, const char *data, size_t len)
{
    struct registry *reg = req_registry(r);
    struct mbody *b = req_state(r);

    if (len > reg->max_manifest_size - b->len)
        return REG_E_TOO_LARGE;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        char *p;

        while (cap < b->len + len)
            cap *= 2;
        if (cap > reg->max_manifest_size)
            cap = reg->max_manifest_size;
        if (cap > b->reserved && reserve(b, cap - b->reserved) != REG_OK) {
            req_set_header(r, "Retry-After", "1");
            return REG_E_TOOMANY;
        }
        p = realloc(b->buf, cap);
        if (!p)
            return REG_E_NOMEM;
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    return REG_OK;
}

/* The media type in a Content-Type header, without parameters. */
static const char *bare_content_type(struct req *r)
{
    const char *ct = req_header(r, "Content-Type");
    char *s;

    if (!ct)
        return NULL;
    s = req_printf(r, "%s", ct);
    if (s)
        s[strcspn(s, "; \t")] = '\0';
    return s;
}

static void put_end(struct req *r)
{
    struct mbody *b = req_state(r);
    const struct route *rt = req_route(r);
    struct svc_manifest m;
    struct svc_ref ref;
    int rc = parse_reference(rt->ref, &ref);

    if (!rc)
        rc = svc_manifest_put(req_registry(r)->svc, rt->name, &ref, bare_content_type(r),
                              b->buf ? b->buf : "", b->len, &m);
    if (rc) {
        api_error(r, rc, reg_detail());
        return;
    }
    req_set_header(r, "Location", req_printf(r, "/v2/%s/manifests/%s", rt->name, m.digest));
    req_set_header(r, "Docker-Content-Digest", m.digest);
    if (m.subject[0])
        req_set_header(r, "OCI-Subject", m.subject);
    req_reply(r, 201);
}

static int get_begin(struct req *r, const struct route *rt)
{
    struct svc_wait *w = api_begin_wait(r);
    struct svc_manifest m;
    struct svc_ref ref;
    int rc = parse_reference(rt->ref, &ref);

    /* A reference that is neither a tag nor a digest names no manifest
     * (what the conformance suite and Distribution answer). */
    if (rc)
        return REG_E_MANIFEST_UNKNOWN;
    if (!w)
        return REG_E_NOMEM;
    rc = svc_manifest_get(req_registry(r)->svc, rt->name, &ref, !req_is_head(r), w, &m);
    if (rc == REG_E_PENDING)
        return REG_OK;          /* begin runs again once the upstream has answered */
    if (rc == REG_E_UPSTREAM) { /* the detail names what the operator must fix */
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    if (rc)
        return rc;
    req_set_header(r, "Docker-Content-Digest", m.digest);
    req_set_header(r, "ETag", req_printf(r, "\"%s\"", m.digest));
    if (m.stale) /* RFC 7234's words for a cache that could not revalidate */
        req_set_header(r, "Warning", "110 - \"Response is Stale\"");
    if (m.data)
        req_reply_take(r, 200, m.media_type, m.data, m.len);
    else
        req_reply_head(r, 200, m.media_type, m.len);
    return REG_OK;
}

static int delete_begin(struct req *r, const struct route *rt)
{
    struct service *svc = req_registry(r)->svc;
    struct svc_ref ref;
    int rc;

    if (!svc_delete_enabled(svc))
        return REG_E_UNSUPPORTED;
    rc = svc_writable(svc, rt->name);
    if (rc) {
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    rc = parse_reference(rt->ref, &ref);
    if (rc)
        return REG_E_MANIFEST_UNKNOWN; /* an invalid reference names nothing */
    rc = svc_manifest_delete(svc, rt->name, &ref);
    if (rc == REG_E_IN_USE) {
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    if (rc)
        return rc;
    req_reply(r, 202);
    return REG_OK;
}

const struct handler api_manifest_put = {put_begin, put_body, put_end};
const struct handler api_manifest_get = {get_begin, NULL, NULL};
const struct handler api_manifest_delete = {delete_begin, NULL, NULL};
