/* Range and Content-Range headers (range.h). */
#include "range.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/err.h"

int range_parse(const char *h, uint64_t size, uint64_t *off, uint64_t *len, int *partial)
{
    unsigned long long a = 0, b = 0;
    const char *p, *dash;
    char *end;
    int has_a, has_b;

    *partial = 0;
    if (!h || strncmp(h, "bytes=", 6) != 0 || strchr(h, ','))
        return REG_OK;
    p = h + 6;
    dash = strchr(p, '-');
    if (!dash)
        return REG_OK;
    has_a = dash != p;
    has_b = dash[1] != '\0';
    if (has_a) {
        if (*p < '0' || *p > '9')
            return REG_OK;
        errno = 0;
        a = strtoull(p, &end, 10);
        if (errno || end != dash)
            return REG_OK;
    }
    if (has_b) {
        if (dash[1] < '0' || dash[1] > '9')
            return REG_OK;
        errno = 0;
        b = strtoull(dash + 1, &end, 10);
        if (errno || *end != '\0')
            return REG_OK;
    }
    if (!has_a && !has_b)
        return REG_OK;
    if (!has_a) { /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return REG_E_RANGE;
        if (b > size)
            b = size;
        *off = size - b;
        *len = b;
        *partial = 1;
        return REG_OK;
    }
    if (has_b && b < a)
        return REG_OK;
    if (a >= size)
        return REG_E_RANGE;
    if (!has_b || b >= size)
        b = size - 1;
    *off = a;
    *len = b - a + 1;
    *partial = 1;
    return REG_OK;
}

int content_range_parse(const char *h, uint64_t *start, uint64_t *len)
{
    unsigned long long a, b;
    char *end;

    if (strncmp(h, "bytes", 5) == 0) {
        h += 5;
        if (*h == ' ' || *h == '=')
            h++;
    }
    if (*h < '0' || *h > '9')
        return REG_E_UPLOAD_INVALID;
    errno = 0;
    a = strtoull(h, &end, 10);
    if (errno || *end != '-' || end[1] < '0' || end[1] > '9')
        return REG_E_UPLOAD_INVALID;
    errno = 0;
    b = strtoull(end + 1, &end, 10);
    /* 0-18446744073709551615 is 2^64 bytes: its length would wrap to 0. */
    if (errno || (*end != '\0' && *end != '/') || b < a || b - a == UINT64_MAX)
        return REG_E_UPLOAD_INVALID;
    *start = a;
    *len = b - a + 1;
    return REG_OK;
}
