/* Routes: which endpoint a path names, and the rights a request on it
 * needs. Repository names contain slashes, so the path is parsed from the
 * right. The route types, the router and the rights live here together;
 * api/base.c maps a route and a method to its handler. */
#ifndef REG_ROUTER_H
#define REG_ROUTER_H

enum route_kind {
    ROUTE_BASE,         /* /v2/ */
    ROUTE_CATALOG,      /* /v2/_catalog */
    ROUTE_BLOB,         /* /v2/<name>/blobs/<digest> */
    ROUTE_UPLOAD_START, /* /v2/<name>/blobs/uploads/ */
    ROUTE_UPLOAD,       /* /v2/<name>/blobs/uploads/<uuid> */
    ROUTE_MANIFEST,     /* /v2/<name>/manifests/<reference> */
    ROUTE_TAGS,         /* /v2/<name>/tags/list */
    ROUTE_REFERRERS,    /* /v2/<name>/referrers/<digest> */
    ROUTE_TOKEN,        /* /token: the built-in token service */
    ROUTE_HEALTHZ,      /* /healthz: the process answers */
    ROUTE_READYZ,       /* /readyz: it can serve (index, data root, free space) */
    ROUTE_METRICS,      /* /metrics: Prometheus metrics (served by server/metrics.c) */
};

#define ROUTE_NAME_MAX 255
#define ROUTE_REF_MAX 255

struct route {
    enum route_kind kind;
    char name[ROUTE_NAME_MAX + 1]; /* validated repository name */
    char ref[ROUTE_REF_MAX + 1];   /* digest, tag or uuid; not yet validated */
};

/* Parse path (already percent-decoded). REG_E_NOT_FOUND when it names no
 * endpoint, REG_E_NAME_INVALID when the repository name is bad. */
int router_match(const char *path, struct route *out);

/* The ACL_* rights (auth/acl.h) method on kind needs on the route's
 * repository; 0 for none. *registry_wide is set for the catalog, which
 * needs a registry-wide right (ACL_CATALOG) or filters its answer. */
unsigned router_rights(enum route_kind kind, const char *method, int *registry_wide);

#endif
