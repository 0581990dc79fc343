/* GET /v2/NAME/referrers/DIGEST[?artifactType=] */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/err.h"
#include "../storage/digest.h"
#include "../storage/index.h"
#include "api.h"

struct filter {
    json_t *list;
    const char *artifact_type; /* NULL: no filter */
};

static int add_referrer(void *arg, const void *value, size_t len)
{
    struct filter *f = arg;
    json_t *d = json_loadb(value, len, 0, NULL);
    const char *at;

    if (!d)
        return 0; /* never written that way; skip rather than fail the list */
    at = json_string_value(json_object_get(d, "artifactType"));
    if (f->artifact_type && (!at || strcmp(at, f->artifact_type) != 0)) {
        json_decref(d);
        return 0;
    }
    return json_array_append_new(f->list, d) ? -1 : 0;
}

static int referrers_begin(struct req *r, const struct route *rt)
{
    struct registry *reg = req_registry(r);
    struct index_txn *t = NULL;
    struct filter f = {NULL, req_query(r, "artifactType")};
    struct digest d;
    json_t *body;
    char *s;
    int rc = digest_parse(rt->ref, strlen(rt->ref), &d);

    if (rc)
        return rc;
    if (f.artifact_type && !*f.artifact_type)
        f.artifact_type = NULL;
    f.list = json_array();
    body = json_pack("{s:i, s:s, s:o}", "schemaVersion", 2, "mediaType",
                     "application/vnd.oci.image.index.v1+json", "manifests", f.list);
    if (!body)
        return REG_E_NOMEM;
    rc = index_begin(reg->ix, 0, &t);
    if (!rc) {
        rc = index_list_referrers(t, rt->name, d.str, add_referrer, &f);
        index_abort(t);
    }
    s = rc ? NULL : json_dumps(body, JSON_COMPACT);
    if (!rc && !s)
        rc = REG_E_NOMEM;
    if (!rc) {
        if (f.artifact_type)
            req_set_header(r, "OCI-Filters-Applied", "artifactType");
        req_reply_buf(r, 200, "application/vnd.oci.image.index.v1+json", s, strlen(s));
    }
    free(s);
    json_decref(body);
    return rc;
}

const struct handler api_referrers_get = {referrers_begin, NULL, NULL};
