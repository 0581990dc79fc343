/* GET /v2/NAME/tags/list and GET /v2/_catalog: a page of names each. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../auth/acl.h"
#include "../common/err.h"
#include "../service/service.h"
#include "api.h"
#include "listing.h"

/* Repositories in one catalog page when the client does not say (n). */
#define CATALOG_PAGE 1000

/* Answer with body (taken) and, when the page has a successor, its Link. */
static int reply_page(struct req *r, json_t *body, const struct svc_page *p, const char *path,
                      size_t n)
{
    char *s = NULL;
    int rc = body ? REG_OK : REG_E_NOMEM;

    if (!rc && p->more && p->last[0])
        rc = listing_link(r, path, n, p->last);
    if (!rc) {
        s = json_dumps(body, JSON_COMPACT);
        rc = s ? REG_OK : REG_E_NOMEM;
    }
    if (!rc)
        req_reply_take(r, 200, "application/json", s, strlen(s));
    json_decref(body);
    return rc;
}

static int tags_begin(struct req *r, const struct route *rt)
{
    struct svc_page p;
    const char *last;
    size_t n;
    int rc;

    rc = listing_params(r, SIZE_MAX, &n, &last);
    if (!rc)
        rc = svc_tags(req_registry(r)->svc, rt->name, last, n, &p);
    if (rc)
        return rc;
    return reply_page(r, json_pack("{s:s, s:o}", "name", rt->name, "tags", p.names), &p,
                      req_printf(r, "/v2/%s/tags/list", rt->name), n);
}

static int may_pull(void *arg, const char *repo)
{
    return req_may(arg, repo, ACL_PULL);
}

static int catalog_begin(struct req *r, const struct route *rt)
{
    struct svc_page p;
    const char *last;
    size_t n;
    int rc;

    (void)rt;
    rc = listing_params(r, CATALOG_PAGE, &n, &last);
    /* Without the catalog right, list what the caller may pull. */
    if (!rc)
        rc = svc_catalog(req_registry(r)->svc, last, n,
                         req_may(r, NULL, ACL_CATALOG) ? NULL : may_pull, r, &p);
    if (rc)
        return rc;
    return reply_page(r, json_pack("{s:o}", "repositories", p.names), &p, "/v2/_catalog", n);
}

const struct handler api_tags_get = {tags_begin, NULL, NULL};
const struct handler api_catalog_get = {catalog_begin, NULL, NULL};
