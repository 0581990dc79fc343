/* libcurl plumbing shared by the black-box tests and the conformance
 * suite: collecting a body and the final response's headers, and reading
 * them back. */
#ifndef CF_HTTPC_H
#define CF_HTTPC_H

#include <stddef.h>

struct httpc_buf {
    char *p; /* NUL-terminated when not NULL */
    size_t len;
};

/* CURLOPT_WRITEFUNCTION for a struct httpc_buf. */
size_t httpc_on_data(char *ptr, size_t size, size_t n, void *user);
/* CURLOPT_HEADERFUNCTION: keeps only the last response's headers (after a
 * 100 Continue or a redirect). */
size_t httpc_on_header(char *ptr, size_t size, size_t n, void *user);

/* A header's value (case-insensitive name) from a raw header block, into
 * buf; NULL when absent. */
const char *httpc_header(const char *headers, const char *name, char *buf, size_t size);
/* The first error code of an OCI error body, "" when it is not one. */
const char *httpc_error_code(const char *body, size_t len, char *buf, size_t size);

#endif
