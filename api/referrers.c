/* GET /v2/NAME/referrers/DIGEST[?artifactType=] */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/err.h"
#include "../service/service.h"
#include "api.h"

static int referrers_begin(struct req *r, const struct route *rt)
{
    const char *at = req_query(r, "artifactType");
    json_t *list = NULL, *body;
    struct digest d;
    char *s = NULL;
    int rc = digest_parse(rt->ref, strlen(rt->ref), &d);

    if (at && !*at)
        at = NULL;
    if (!rc)
        rc = svc_referrers(req_registry(r)->svc, rt->name, &d, at, &list);
    if (rc)
        return rc;
    body = json_pack("{s:i, s:s, s:o}", "schemaVersion", 2, "mediaType",
                     "application/vnd.oci.image.index.v1+json", "manifests", list);
    if (body)
        s = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!s)
        return REG_E_NOMEM;
    if (at)
        req_set_header(r, "OCI-Filters-Applied", "artifactType");
    req_reply_take(r, 200, "application/vnd.oci.image.index.v1+json", s, strlen(s));
    return REG_OK;
}

const struct handler api_referrers_get = {referrers_begin, NULL, NULL};
