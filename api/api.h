/* The OCI distribution API: one handler per (resource, method). The router
 * in server/ picks the handler; a handler decodes the request, calls the
 * service layer (service/service.h) and encodes its answer through
 * api/req.h. */
#ifndef REG_API_H
#define REG_API_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "req.h"
#include "router.h"

struct service;
struct auth;

/* What handlers need, shared by every request. The atomic fields may be
 * changed by a reload (SIGHUP) while requests run; the rest are fixed
 * once serving. */
struct registry {
    struct service *svc;             /* the registry's operations (service/service.h) */
    atomic_int read_only;            /* [storage] read_only: writes get 405 */
    size_t max_manifest_size;        /* bytes */
    atomic_size_t manifest_budget;   /* bytes all manifest bodies in flight may hold together */
    atomic_size_t manifest_buffered; /* bytes they hold now */
    struct auth *auth;               /* never NULL; mode none lets everything through */
    int tls;                         /* serving HTTPS */
    const char *root;                /* data directory (readiness checks) */
    _Atomic uint64_t ready_min_free; /* bytes free on root below which /readyz says no */
};

/* A handler. begin runs when the headers are in and may already reply;
 * body gets each piece of the request body; end runs when the body is
 * complete and must reply unless begin did. An error from begin or body
 * is answered with the error JSON. */
struct handler {
    int (*begin)(struct req *r, const struct route *rt);
    int (*body)(struct req *r, const char *data, size_t len);
    void (*end)(struct req *r);
};

/* The handler for method on kind; NULL when the method is not allowed. */
const struct handler *api_handler(enum route_kind kind, const char *method);

/* Answer with the OCI error JSON for err; detail may be NULL. */
void api_error(struct req *r, int err, const char *detail);

/* Repository name grammar of the distribution spec. */
int api_name_valid(const char *s, size_t len);
/* Tag grammar: [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}. */
int api_tag_valid(const char *s, size_t len);

/* Handlers, one file each. */
struct svc_wait;
/* How a handler waits for something on its way without holding a thread:
 * w suspends r and resumes it (req_suspend/req_resume). */
void api_wait_init(struct svc_wait *w, struct req *r);
/* r's svc_wait for its begin, made on the first call (begin runs again
 * after a wait) and let go of when the request ends. NULL without memory. */
struct svc_wait *api_begin_wait(struct req *r);

extern const struct handler api_base_get;
extern const struct handler api_blob_get, api_blob_delete;
extern const struct handler api_upload_start, api_upload_patch, api_upload_put, api_upload_get,
    api_upload_delete;
extern const struct handler api_manifest_put, api_manifest_get, api_manifest_delete;
extern const struct handler api_tags_get, api_catalog_get, api_referrers_get;
extern const struct handler api_token_get, api_token_post;
extern const struct handler api_healthz_get, api_readyz_get;

#endif
