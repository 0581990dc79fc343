/* Growable arrays: one way to make room, instead of a doubling loop in
 * every module. */
#ifndef REG_ARRAY_H
#define REG_ARRAY_H

#include <stddef.h>

/* Make *v (an array of elements of size bytes, *cap of them allocated)
 * hold at least n + 1; doubles, starting at 64. REG_E_NOMEM on failure
 * (*v and *cap unchanged). */
int array_reserve(void *v, size_t *cap, size_t n, size_t size);

#endif
