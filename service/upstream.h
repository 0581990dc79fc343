/* A client for one upstream registry (the pull-through cache's source), on
 * libcurl: manifests by tag or digest (GET or HEAD), blobs streamed into a
 * callback, through the upstream's auth: anonymous, Basic, or the Docker
 * token flow (a 401 with `WWW-Authenticate: Bearer realm=...,service=...`
 * sends us to the realm for a token with scope repository:NAME:pull, with
 * our credentials as Basic when we have them). Tokens are kept per
 * repository until they expire. Thread-safe: each call uses its own
 * handle; the token cache has a lock.
 *
 * Errors: not_found (the caller's code: REG_E_MANIFEST_UNKNOWN or
 * REG_E_BLOB_UNKNOWN) when the upstream says 404, or 401/403 after the auth
 * flow (a repository the upstream will not show us is one it does not have,
 * as far as our clients are concerned) unless it refuses the configured
 * credentials themselves (a 401 to our Basic, or from the token service):
 * that is REG_E_UPSTREAM, a configuration to fix; REG_E_UPSTREAM when it cannot be
 * reached, times out, answers 5xx or 429, or sends what it should not (a
 * manifest whose bytes do not hash to its digest). reg_detail() says
 * which. */
#ifndef REG_UPSTREAM_H
#define REG_UPSTREAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "../storage/digest.h"

struct upstream;

struct upstream_opts {
    const char *url;      /* scheme://host[:port], no trailing slash */
    const char *username; /* NULL or "": anonymous */
    const char *password;
    const char *ca;         /* PEM CA bundle, NULL or "": the system's */
    long connect_timeout;   /* seconds */
    long manifest_timeout;  /* seconds for a whole manifest or token request */
    long stall_timeout;     /* seconds a blob may deliver nothing before it is dropped */
    const atomic_int *stop; /* NULL, or set when every transfer must end now */
};

int upstream_new(const struct upstream_opts *o, struct upstream **out);
void upstream_free(struct upstream *u);
const char *upstream_url(const struct upstream *u);

struct upstream_manifest {
    char digest[DIGEST_STR_MAX]; /* verified against the bytes (GET) */
    char media_type[128];
    uint64_t len;
    void *data; /* GET: the bytes, malloc'd, the caller frees; HEAD: NULL */
};

/* GET (head = 0) or HEAD manifest ref (a tag or a digest) of repo, at most
 * max bytes. A GET checks the bytes against ref when it is a digest, and
 * against Docker-Content-Digest when the upstream sends one; a HEAD needs
 * Docker-Content-Digest (or a digest ref). */
int upstream_manifest(struct upstream *u, const char *repo, const char *ref, int head, size_t max,
                      struct upstream_manifest *out);

/* Receives a blob's bytes as they arrive; nonzero stops the transfer and
 * is returned by upstream_blob. */
typedef int (*upstream_data_fn)(void *arg, const void *data, size_t len);

/* GET blob digest of repo into fn. *size gets Content-Length when the
 * upstream sent one (else UINT64_MAX) before the first byte reaches fn:
 * size_fn (may be NULL) is told it then. The bytes are not verified here. */
typedef void (*upstream_size_fn)(void *arg, uint64_t size);
int upstream_blob(struct upstream *u, const char *repo, const char *digest,
                  upstream_size_fn size_fn, upstream_data_fn fn, void *arg);

#endif
