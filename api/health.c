/* GET /healthz (the process answers) and GET /readyz (it can serve: the
 * index reads, the data root is writable, the disk has room). Neither needs
 * credentials; both are cheap enough for a probe every second. */
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../common/err.h"
#include "../service/service.h"
#include "api.h"

static int healthz_begin(struct req *r, const struct route *rt)
{
    (void)rt;
    req_reply_buf(r, 200, "text/plain", "ok\n", 3);
    return REG_OK;
}

/* Why the registry cannot serve, or NULL when it can. */
static const char *not_ready(struct registry *reg)
{
    struct statvfs v;

    if (svc_check(reg->svc) != REG_OK)
        return "the index cannot be read";
    if (access(reg->root, W_OK) != 0)
        return "the data root is not writable";
    if (statvfs(reg->root, &v) != 0)
        return "the data root's file system cannot be read";
    if ((uint64_t)v.f_bavail * v.f_frsize < reg->ready_min_free)
        return "free space on the data root is below ready_min_free";
    return NULL;
}

static int readyz_begin(struct req *r, const struct route *rt)
{
    const char *why = not_ready(req_registry(r));
    char body[160];
    int n;

    (void)rt;
    if (!why) {
        req_reply_buf(r, 200, "text/plain", "ready\n", 6);
        return REG_OK;
    }
    n = snprintf(body, sizeof(body), "not ready: %s\n", why);
    req_reply_buf(r, 503, "text/plain", body, (size_t)n);
    return REG_OK;
}

const struct handler api_healthz_get = {healthz_begin, NULL, NULL};
const struct handler api_readyz_get = {readyz_begin, NULL, NULL};
