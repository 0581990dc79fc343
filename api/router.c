#include "router.h"

#include <string.h>

#include "../auth/acl.h"
#include "../common/err.h"
#include "api.h"

static int ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);

    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

static int set_name(struct route *out, const char *s, size_t len)
{
    if (!api_name_valid(s, len))
        return REG_E_NAME_INVALID;
    memcpy(out->name, s, len);
    out->name[len] = '\0';
    return REG_OK;
}

int router_match(const char *path, struct route *out)
{
    const char *rest, *slash, *last;
    size_t len, restlen, lastlen;

    memset(out, 0, sizeof(*out));
    if (strcmp(path, "/token") == 0) {
        out->kind = ROUTE_TOKEN;
        return REG_OK;
    }
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/readyz") == 0) {
        out->kind = path[1] == 'h' ? ROUTE_HEALTHZ : ROUTE_READYZ;
        return REG_OK;
    }
    if (strcmp(path, "/metrics") == 0) {
        out->kind = ROUTE_METRICS;
        return REG_OK;
    }
    if (strncmp(path, "/v2", 3) != 0)
        return REG_E_NOT_FOUND;
    if (strcmp(path, "/v2") == 0 || strcmp(path, "/v2/") == 0) {
        out->kind = ROUTE_BASE;
        return REG_OK;
    }
    if (path[3] != '/')
        return REG_E_NOT_FOUND;
    rest = path + 4;
    len = strlen(rest);
    if (strcmp(rest, "_catalog") == 0) {
        out->kind = ROUTE_CATALOG;
        return REG_OK;
    }
    if (ends_with(rest, len, "/tags/list")) {
        out->kind = ROUTE_TAGS;
        return set_name(out, rest, len - strlen("/tags/list"));
    }
    /* <prefix>/<last>: last may be empty (a trailing slash). */
    slash = memrchr(rest, '/', len);
    if (!slash)
        return REG_E_NOT_FOUND;
    last = slash + 1;
    lastlen = len - (size_t)(last - rest);
    restlen = (size_t)(slash - rest);
    if (lastlen > ROUTE_REF_MAX)
        return REG_E_NOT_FOUND;
    if (ends_with(rest, restlen, "/blobs/uploads")) {
        out->kind = lastlen ? ROUTE_UPLOAD : ROUTE_UPLOAD_START;
        restlen -= strlen("/blobs/uploads");
    } else if (lastlen == 7 && memcmp(last, "uploads", 7) == 0 &&
               ends_with(rest, restlen, "/blobs")) {
        out->kind = ROUTE_UPLOAD_START; /* no trailing slash */
        lastlen = 0;
        restlen -= strlen("/blobs");
    } else if (ends_with(rest, restlen, "/blobs")) {
        out->kind = ROUTE_BLOB;
        restlen -= strlen("/blobs");
    } else if (ends_with(rest, restlen, "/manifests")) {
        out->kind = ROUTE_MANIFEST;
        restlen -= strlen("/manifests");
    } else if (ends_with(rest, restlen, "/referrers")) {
        out->kind = ROUTE_REFERRERS;
        restlen -= strlen("/referrers");
    } else {
        return REG_E_NOT_FOUND;
    }
    if (out->kind != ROUTE_UPLOAD_START && lastlen == 0)
        return REG_E_NOT_FOUND;
    memcpy(out->ref, last, lastlen);
    out->ref[lastlen] = '\0';
    return set_name(out, rest, restlen);
}

unsigned router_rights(enum route_kind kind, const char *method, int *registry_wide)
{
    *registry_wide = 0;
    switch (kind) {
    case ROUTE_BASE:
    case ROUTE_TOKEN:
    case ROUTE_HEALTHZ:
    case ROUTE_READYZ:
    case ROUTE_METRICS:
        return 0;
    case ROUTE_CATALOG:
        *registry_wide = 1;
        return 0;
    case ROUTE_UPLOAD_START:
    case ROUTE_UPLOAD:
        return ACL_PUSH;
    case ROUTE_BLOB:
    case ROUTE_MANIFEST:
        if (!strcmp(method, "DELETE"))
            return ACL_DELETE;
        if (!strcmp(method, "PUT"))
            return ACL_PUSH;
        return ACL_PULL;
    case ROUTE_TAGS:
    case ROUTE_REFERRERS:
        return ACL_PULL;
    }
    return ACL_ALL;
}
