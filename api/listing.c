/* Shared by the tag and catalog listings: n and last, and the Link header. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/err.h"
#include "api.h"
#include "listing.h"

int listing_params(struct req *r, size_t default_n, size_t *n, const char **last)
{
    const char *s = req_query(r, "n");
    unsigned long long v;
    char *end;

    *last = req_query(r, "last");
    if (*last && !**last)
        *last = NULL;
    *n = default_n;
    if (!s)
        return REG_OK;
    if (*s < '0' || *s > '9' || strlen(s) > 12)
        return REG_E_PAGINATION;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end)
        return REG_E_PAGINATION;
    *n = v > LISTING_MAX ? LISTING_MAX : (size_t)v;
    return REG_OK;
}

int listing_link(struct req *r, const char *path, size_t n, const char *last)
{
    char *v = req_printf(r, "<%s?n=%zu&last=%s>; rel=\"next\"", path, n, last);

    return v ? req_set_header(r, "Link", v) : REG_E_NOMEM;
}
