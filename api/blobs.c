/* GET/HEAD/DELETE /v2/NAME/blobs/DIGEST */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/err.h"
#include "../service/service.h"
#include "api.h"
#include "range.h"

static int blob_get_begin(struct req *r, const struct route *rt)
{
    struct svc_blob b;
    struct digest d;
    uint64_t off = 0, len;
    char buf[96];
    int rc, partial;

    rc = digest_parse(rt->ref, strlen(rt->ref), &d);
    if (rc)
        return rc;
    rc = svc_blob_open(req_registry(r)->svc, rt->name, &d, 1, &b);
    if (rc)
        return rc;
    req_set_header(r, "Docker-Content-Digest", d.str);
    if (b.url) { /* a backend that serves the bytes itself */
        rc = req_set_header(r, "Location", b.url);
        free(b.url);
        if (!rc)
            req_reply(r, 307);
        return rc;
    }
    len = b.size;
    req_set_header(r, "ETag", req_printf(r, "\"%s\"", d.str));
    req_set_header(r, "Accept-Ranges", "bytes");
    rc = range_parse(req_header(r, "Range"), b.size, &off, &len, &partial);
    if (rc == REG_E_RANGE) {
        close(b.fd);
        snprintf(buf, sizeof(buf), "bytes */%" PRIu64, b.size);
        req_set_header(r, "Content-Range", buf);
        return REG_E_RANGE;
    }
    if (partial) {
        snprintf(buf, sizeof(buf), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off, off + len - 1,
                 b.size);
        req_set_header(r, "Content-Range", buf);
    }
    req_reply_fd(r, partial ? 206 : 200, "application/octet-stream", b.fd, off, len);
    return REG_OK;
}

static int blob_delete_begin(struct req *r, const struct route *rt)
{
    struct service *svc = req_registry(r)->svc;
    struct digest d;
    int rc;

    if (!svc_delete_enabled(svc))
        return REG_E_UNSUPPORTED;
    rc = svc_writable(svc, rt->name);
    if (rc) {
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    rc = digest_parse(rt->ref, strlen(rt->ref), &d);
    if (rc)
        return rc;
    rc = svc_blob_delete(svc, rt->name, &d);
    if (rc == REG_E_IN_USE) {
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    if (rc)
        return rc;
    /* Garbage collection removes the file once no manifest needs it. */
    req_set_header(r, "Docker-Content-Digest", d.str);
    req_reply(r, 202);
    return REG_OK;
}

const struct handler api_blob_get = {blob_get_begin, NULL, NULL};
const struct handler api_blob_delete = {blob_delete_begin, NULL, NULL};
