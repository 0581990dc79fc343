/* GET /v2/ and the table of handlers. */
#include <string.h>

#include "../common/err.h"
#include "api.h"

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
