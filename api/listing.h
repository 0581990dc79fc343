#ifndef REG_LISTING_H
#define REG_LISTING_H

#include <stddef.h>

#include "req.h"

/* Largest page served; a larger n is clamped to it. */
#define LISTING_MAX 10000

/* Read ?n= and ?last=. n absent: default_n. REG_E_PAGINATION when n is not
 * a non-negative integer. */
int listing_params(struct req *r, size_t default_n, size_t *n, const char **last);

/* Link: <path?n=N&last=LAST>; rel="next" */
int listing_link(struct req *r, const char *path, size_t n, const char *last);

#endif
