/* The byte ranges of HTTP headers: Range on a blob GET (RFC 9110 14.2)
 * and Content-Range on an upload chunk (the distribution spec's "a-b"
 * form, and RFC 9110's "bytes a-b/total"). Parsers only: no request. */
#ifndef REG_RANGE_H
#define REG_RANGE_H

#include <stdint.h>

/* Parse one "bytes=" range h (NULL: none) against size into *off and *len,
 * *partial set; without a usable Range, *partial is 0 and the whole blob is
 * meant. REG_E_RANGE: unsatisfiable. Malformed or multi-range headers are
 * ignored, as RFC 9110 allows. */
int range_parse(const char *h, uint64_t size, uint64_t *off, uint64_t *len, int *partial);

/* Parse "a-b", "bytes a-b/total" or "bytes=a-b" into the first byte and the
 * length (at least 1). REG_E_UPLOAD_INVALID when malformed. */
int content_range_parse(const char *h, uint64_t *start, uint64_t *len);

#endif
