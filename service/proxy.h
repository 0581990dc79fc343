/* The pull-through cache: upstream registries mirrored under local
 * prefixes (or, with an empty prefix, for every repository not found
 * locally). Owns the upstreams (upstream.h) and answers the service's
 * misses: a manifest or blob a proxied repository lacks is fetched from
 * its upstream, verified, stored as ordinary content, and served; a cached
 * tag is revalidated with a HEAD once its tag_ttl has passed, and served
 * stale (svc_manifest.stale) when the upstream cannot say.
 *
 * Reference counts: a cached manifest is stored before its blobs; the
 * index counts its references to blobs not yet stored as pending and hands
 * them to each blob when it is fetched (index.h), so GC and fsck see cached
 * content exactly as pushed content.
 *
 * A blob is fetched on a thread of its own, once however many ask for it
 * at the same time (single-flight), and streams to all of them while it is
 * written. Requests wait for it without holding a thread (svc_wait). */
#ifndef REG_PROXY_H
#define REG_PROXY_H

#include <stddef.h>
#include <stdint.h>

#include "../storage/digest.h"

struct blobstore;
struct index;
struct uploads;
struct proxy;
struct svc_manifest;
struct svc_ref;
struct svc_wait;

/* One upstream, as configured ([proxy.NAME]). Strings are copied. */
struct proxy_conf {
    const char *name, *url, *prefix, *username, *password, *ca;
    long tag_ttl; /* seconds */
};

/* Over the stores (borrowed); max_manifest is the largest manifest taken
 * from an upstream. REG_E_CONFIG when two prefixes collide. */
int proxy_new(const struct proxy_conf *v, size_t n, struct blobstore *bs, struct index *ix,
              struct uploads *us, size_t max_manifest, struct proxy **out);
void proxy_free(struct proxy *p);

/* REG_E_MIRRORED (with reg_detail) when repo lies under a non-empty
 * prefix: writes there are refused; REG_OK otherwise. */
int proxy_writable(struct proxy *p, const char *repo);

/* Resolve ref in repo through the cache. REG_E_NOT_FOUND when no upstream
 * covers repo and the caller answers alone (then out is untouched);
 * otherwise what svc_manifest_get returns. What needs the upstream is asked
 * on a thread of its own, once for everyone asking the same meanwhile:
 * REG_E_PENDING (svc_wait) until it has answered. */
int proxy_manifest_get(struct proxy *p, const char *repo, const struct svc_ref *ref, int with_data,
                       struct svc_wait *w, struct svc_manifest *out);

/* Blob d is not visible in repo: make it so from the cache or the
 * upstream. REG_E_NOT_FOUND when no upstream covers repo; REG_OK with
 * *tap NULL when it is visible now; REG_OK with *tap (the caller's, to
 * close) when it is on its way: the tap reads it as it arrives, all of it
 * unless narrowed. REG_E_PENDING (svc_wait) until the upstream has said
 * its size; REG_E_BLOB_UNKNOWN, REG_E_UPSTREAM, REG_E_TOOMANY (too many
 * fetches at once), ... */
struct proxy_tap;
int proxy_blob_open(struct proxy *p, const char *repo, const struct digest *d, struct svc_wait *w,
                    struct proxy_tap **tap);
/* The blob's size (before any proxy_tap_range). */
uint64_t proxy_tap_size(const struct proxy_tap *t);
/* Read len bytes from off (len 0: to the end) instead; before any read.
 * REG_E_RANGE. */
int proxy_tap_range(struct proxy_tap *t, uint64_t off, uint64_t len);
/* Up to max bytes, *n 0 at the end, REG_E_PENDING while none has arrived
 * (svc_wait); the error of a fetch that failed. Once the blob has landed
 * the tap reads the store. The last byte comes only after the digest
 * matched. */
int proxy_tap_read(struct proxy_tap *t, void *buf, size_t max, size_t *n, struct svc_wait *w);
/* NULL is fine. */
void proxy_tap_close(struct proxy_tap *t);

/* End every fetch now (their waiters get an error) and wait for them; new
 * ones fail. Before the HTTP server stops: it must not stop with a request
 * suspended. proxy_free does it too. */
void proxy_stop(struct proxy *p);

/* What the cache did, for /metrics: per kind of object, how requests went.
 * hit: served from the store without asking the upstream; miss: the upstream
 * was asked for it (and had it or said it has not); revalidated: a cached
 * tag checked with a HEAD after its tag_ttl; stale: a cached tag served
 * because the upstream could not be asked; error: the upstream failed and
 * nothing was served. Content pushed here (under an empty prefix) is no
 * cache event. */
enum proxy_kind { PROXY_MANIFEST, PROXY_BLOB, PROXY__KINDS };
enum proxy_result {
    PROXY_HIT,
    PROXY_MISS,
    PROXY_REVALIDATED,
    PROXY_STALE,
    PROXY_ERROR,
    PROXY__RESULTS
};
struct proxy_stats {
    uint64_t n[PROXY__KINDS][PROXY__RESULTS];
};

/* Blob d was visible in repo and served: a hit when the cache brought it. */
void proxy_blob_served(struct proxy *p, const char *repo);

/* The counts so far. */
void proxy_stats(struct proxy *p, struct proxy_stats *out);

#endif
