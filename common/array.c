#include "array.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

int array_reserve(void *v, size_t *cap, size_t n, size_t size)
{
    void **pv = v;
    size_t want = *cap ? *cap : 64;
    void *p;

    if (n < *cap)
        return REG_OK;
    while (want <= n) {
        if (want > SIZE_MAX / 2 / size)
            return REG_E_NOMEM;
        want *= 2;
    }
    p = realloc(*pv, want * size);
    if (!p)
        return REG_E_NOMEM;
    *pv = p;
    *cap = want;
    return REG_OK;
}
