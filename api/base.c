/* GET /v2/ and the table of handlers. */
#include <string.h>

#include "../common/err.h"
#include "../service/service.h"
#include "api.h"

static void wait_suspend(void *arg)
{
    req_suspend(arg);
}

static void wait_wake(void *arg)
{
    req_resume(arg);
}

void api_wait_init(struct svc_wait *w, struct req *r)
{
    *w = (struct svc_wait){wait_suspend, wait_wake, r, NULL, NULL};
}

/* A begin's wait, as the request's state. */
struct begin_wait {
    struct service *svc;
    struct svc_wait w;
};

static void begin_wait_done(void *state, int aborted)
{
    struct begin_wait *b = state;

    (void)aborted;
    svc_wait_drop(b->svc, &b->w); /* b is the request's memory */
}

struct svc_wait *api_begin_wait(struct req *r)
{
    struct begin_wait *b = req_state(r);

    if (b)
        return &b->w;
    b = req_alloc(r, sizeof(*b));
    if (!b)
        return NULL;
    b->svc = req_registry(r)->svc;
    api_wait_init(&b->w, r);
    req_set_state(r, b, begin_wait_done);
    return &b->w;
}

static int base_begin(struct req *r, const struct route *rt)
{
    (void)rt;
    req_reply_buf(r, 200, "application/json", "{}", 2);
    return REG_OK;
}

const struct handler api_base_get = {base_begin, NULL, NULL};

struct method_handler {
    enum route_kind kind;
    const char *method;
    const struct handler *h;
};

static const struct method_handler handlers[] = {
    {ROUTE_BASE, "GET", &api_base_get},           {ROUTE_BASE, "HEAD", &api_base_get},
    {ROUTE_BLOB, "GET", &api_blob_get},           {ROUTE_BLOB, "HEAD", &api_blob_get},
    {ROUTE_BLOB, "DELETE", &api_blob_delete},     {ROUTE_UPLOAD_START, "POST", &api_upload_start},
    {ROUTE_UPLOAD, "PATCH", &api_upload_patch},   {ROUTE_UPLOAD, "PUT", &api_upload_put},
    {ROUTE_UPLOAD, "GET", &api_upload_get},       {ROUTE_UPLOAD, "DELETE", &api_upload_delete},
    {ROUTE_MANIFEST, "GET", &api_manifest_get},   {ROUTE_MANIFEST, "HEAD", &api_manifest_get},
    {ROUTE_MANIFEST, "PUT", &api_manifest_put},   {ROUTE_MANIFEST, "DELETE", &api_manifest_delete},
    {ROUTE_TAGS, "GET", &api_tags_get},           {ROUTE_CATALOG, "GET", &api_catalog_get},
    {ROUTE_REFERRERS, "GET", &api_referrers_get}, {ROUTE_TOKEN, "GET", &api_token_get},
    {ROUTE_TOKEN, "POST", &api_token_post},       {ROUTE_HEALTHZ, "GET", &api_healthz_get},
    {ROUTE_HEALTHZ, "HEAD", &api_healthz_get},    {ROUTE_READYZ, "GET", &api_readyz_get},
    {ROUTE_READYZ, "HEAD", &api_readyz_get},
};

const struct handler *api_handler(enum route_kind kind, const char *method)
{
    size_t i;

    for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++)
        if (handlers[i].kind == kind && strcmp(handlers[i].method, method) == 0)
            return handlers[i].h;
    return NULL;
}
