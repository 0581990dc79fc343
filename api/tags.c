/* GET /v2/NAME/tags/list and GET /v2/_catalog: range scans of the index. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../auth/acl.h"
#include "../common/err.h"
#include "../storage/index.h"
#include "api.h"
#include "listing.h"

struct collect {
    json_t *arr;
    char last[ROUTE_NAME_MAX + 1]; /* the last name added */
    struct req *filter;            /* catalog: list only what this caller may pull */
};

/* Repositories in one catalog page when the client does not say (n). */
#define CATALOG_PAGE 1000

static int add_name(void *arg, const char *name, size_t len)
{
    struct collect *c = arg;

    if (len > ROUTE_NAME_MAX)
        return INDEX_SKIP;
    memcpy(c->last, name, len);
    c->last[len] = '\0';
    if (c->filter && !req_may(c->filter, c->last, ACL_PULL))
        return INDEX_SKIP;
    return json_array_append_new(c->arr, json_stringn(name, len)) ? -1 : 0;
}

static void reply_json(struct req *r, json_t *body)
{
    char *s = json_dumps(body, JSON_COMPACT);

    if (!s) {
        api_error(r, REG_E_NOMEM, NULL);
        return;
    }
    req_reply_buf(r, 200, "application/json", s, strlen(s));
    free(s);
}

static int tags_begin(struct req *r, const struct route *rt)
{
    struct registry *reg = req_registry(r);
    struct index_txn *t = NULL;
    struct collect c = {NULL, "", NULL};
    json_t *body = NULL;
    const char *last;
    size_t n;
    int rc, more = 0;

    rc = listing_params(r, SIZE_MAX, &n, &last);
    if (rc)
        return rc;
    c.arr = json_array();
    body = json_pack("{s:s, s:o}", "name", rt->name, "tags", c.arr);
    if (!body)
        return REG_E_NOMEM;
    rc = index_begin(reg->ix, 0, &t);
    if (rc)
        goto out;
    rc = index_repo_exists(t, rt->name);
    if (!rc)
        rc = index_list_tags(t, rt->name, last, n, add_name, &c, &more);
    index_abort(t);
    if (rc)
        goto out;
    if (more && c.last[0])
        rc = listing_link(r, req_printf(r, "/v2/%s/tags/list", rt->name), n, c.last);
    if (!rc)
        reply_json(r, body);
out:
    json_decref(body);
    return rc;
}

static int catalog_begin(struct req *r, const struct route *rt)
{
    struct registry *reg = req_registry(r);
    struct index_txn *t = NULL;
    struct collect c = {NULL, "", NULL};
    json_t *body = NULL;
    const char *last;
    size_t n;
    int rc, more = 0;

    (void)rt;
    if (!req_may(r, NULL, ACL_CATALOG))
        c.filter = r;
    rc = listing_params(r, CATALOG_PAGE, &n, &last);
    if (rc)
        return rc;
    c.arr = json_array();
    body = json_pack("{s:o}", "repositories", c.arr);
    if (!body)
        return REG_E_NOMEM;
    rc = index_begin(reg->ix, 0, &t);
    if (!rc) {
        rc = index_list_repos(t, last, n, add_name, &c, &more);
        index_abort(t);
    }
    if (!rc && more && c.last[0])
        rc = listing_link(r, "/v2/_catalog", n, c.last);
    if (!rc)
        reply_json(r, body);
    json_decref(body);
    return rc;
}

const struct handler api_tags_get = {tags_begin, NULL, NULL};
const struct handler api_catalog_get = {catalog_begin, NULL, NULL};
