/* The registry's operations over plain values: what api/ calls once it has
 * decoded a request. Each operation is one metadata transaction, begun and
 * ended here; callers never see a transaction, a file or a path, and
 * nothing here knows HTTP. Errors are enum reg_err; where there is more to
 * say (which blob a manifest lacks, which manifest uses a blob) the
 * operation also sets reg_detail().
 *
 * Upload sessions (uploads.h), GC (gc.h), fsck and backup are the other
 * modules of this layer. */
#ifndef REG_SERVICE_H
#define REG_SERVICE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../storage/digest.h"

struct service;
struct blobstore;
struct index;
struct uploads;

/* Longest repository name (the distribution spec's limit). */
#define SVC_NAME_MAX 255

/* Over the stores (borrowed: they outlive the service). delete_enabled is
 * [storage] delete: without it every delete is REG_E_UNSUPPORTED. */
int svc_new(struct blobstore *bs, struct index *ix, struct uploads *us, int delete_enabled,
            struct service **out);
void svc_free(struct service *s);
/* The upload sessions (uploads.h) of this service. */
struct uploads *svc_uploads(struct service *s);
/* Turn deletes on or off while serving (a reload). */
void svc_set_delete(struct service *s, int enabled);
int svc_delete_enabled(struct service *s);
/* Read-only ([storage] read_only): the pull-through cache serves what it
 * holds, as local content, and neither fetches nor records anything. */
void svc_set_read_only(struct service *s, int on);
/* REG_OK when the metadata can be read. */
int svc_check(struct service *s);
struct proxy;
/* The pull-through cache (proxy.h; borrowed, NULL: none): misses in the
 * repositories it covers are fetched from their upstream. */
void svc_set_proxy(struct service *s, struct proxy *p);
struct evict;
/* Eviction of cached repositories (evict.h; borrowed, NULL: none): every
 * pull the cache serves is reported to it. */
void svc_set_evict(struct service *s, struct evict *e);
/* The pull-through cache's counts (proxy.h); REG_E_NOT_FOUND without one. */
struct proxy_stats;
int svc_proxy_stats(struct service *s, struct proxy_stats *out);
/* REG_E_MIRRORED (reg_detail says why) when repo lies in a mirrored
 * namespace, where pushes and deletes are refused. */
int svc_writable(struct service *s, const char *repo);

/* Stored totals for monitoring (/metrics), cheap at any size. */
struct svc_stats {
    uint64_t blobs;            /* blobs stored, each digest once */
    uint64_t blob_bytes;       /* their bytes */
    uint64_t repos;            /* repositories in the catalog */
    uint64_t uploads;          /* upload sessions open */
    uint64_t index_used_bytes; /* metadata written so far (high-water mark) */
    uint64_t index_limit;      /* index_max_size */
    uint64_t index_map_bytes;  /* the limit plus the headroom kept for deletes */
};
int svc_stats(struct service *s, struct svc_stats *out);

/* A manifest reference: a tag, or a digest. */
struct svc_wait;

struct svc_ref {
    const char *tag; /* NULL when by digest */
    struct digest d; /* when tag is NULL */
};

/* ---- manifests --------------------------------------------------------------- */

struct svc_manifest {
    char digest[DIGEST_STR_MAX];
    char media_type[128];
    char subject[DIGEST_STR_MAX]; /* put: the subject it refers to, "" when none */
    void *data;                   /* get with data: the bytes, malloc'd, the caller frees */
    size_t len;                   /* bytes */
    int stale; /* get: a cached tag served because its upstream could not revalidate it */
};

/* Validate and store the manifest body (len bytes) in repo under ref, in one
 * transaction with its references, tag and referrer entry. content_type is
 * the client's media type without parameters (NULL: none). By digest, the
 * body must hash to it (REG_E_DIGEST_INVALID). REG_E_MANIFEST_INVALID,
 * REG_E_MANIFEST_BLOB_UNKNOWN: reg_detail() says why. Fills digest and
 * subject of out. */
int svc_manifest_put(struct service *s, const char *repo, const struct svc_ref *ref,
                     const char *content_type, const void *body, size_t len,
                     struct svc_manifest *out);
/* Resolve ref in repo; with_data also copies the bytes out (a GET; a HEAD
 * needs only digest, type and length). REG_E_MANIFEST_UNKNOWN; in a
 * proxied repository also REG_E_UPSTREAM, out->stale, and REG_E_PENDING
 * while the upstream is asked (svc_wait; NULL: block). */
int svc_manifest_get(struct service *s, const char *repo, const struct svc_ref *ref, int with_data,
                     struct svc_wait *w, struct svc_manifest *out);
/* By digest: remove the manifest with its tags (REG_E_IN_USE while an index
 * of repo lists it); by tag: remove the tag only. */
int svc_manifest_delete(struct service *s, const char *repo, const struct svc_ref *ref);

/* ---- blobs -------------------------------------------------------------------- */

struct svc_blob_reader;
struct svc_blob {
    uint64_t size;              /* bytes */
    int fd;                     /* to read from, or -1 */
    char *url;                  /* or where to send the client (malloc'd), or NULL */
    int stream;                 /* or neither: pull the bytes with svc_blob_reader_open */
    struct svc_blob_reader *rd; /* a fetch under way that stream reads */
};
/* Let go of what svc_blob_open handed out and svc_blob_reader_open did not
 * take (fd, url, a fetch's reader). */
void svc_blob_close(struct svc_blob *b);

/* How a caller that must not block (a libmicrohttpd thread) waits for bytes
 * on their way (a blob the pull-through cache is fetching). An operation
 * that would wait calls suspend(arg) under its own lock and returns
 * REG_E_PENDING; later, from another thread, it calls wake(arg) exactly
 * once, and the caller repeats the operation with the same svc_wait.
 * held is the service's (what w waits on): zero it before the first call,
 * and hand w to svc_wait_drop when the caller gives up on it. A NULL
 * svc_wait makes the operation block instead. */
struct svc_wait {
    void (*suspend)(void *arg);
    void (*wake)(void *arg);
    void *arg;
    void *held;                          /* the service's, with release */
    void (*release)(struct svc_wait *w); /* lets go of held */
};
/* Let go of what w waits on, if anything. NULL is fine. */
void svc_wait_drop(struct service *s, struct svc_wait *w);

/* Open blob d of repo for reading: an fd, a URL when the backend serves the
 * bytes itself and can_redirect, or (stream) neither. Without an fd the
 * size is the index's and the store is not asked: a HEAD costs no request
 * to S3. REG_E_BLOB_UNKNOWN when repo does not link d, checked before
 * any URL is signed. The pull right on repo must be checked before the
 * call (the server does it before any handler): a URL lets whoever holds it
 * read the object. A blob the pull-through cache is fetching is a stream as
 * soon as the upstream has said its size (REG_E_PENDING until then, see
 * svc_wait). */
int svc_blob_open(struct service *s, const char *repo, const struct digest *d, int can_redirect,
                  struct svc_wait *w, struct svc_blob *out);

/* A blob's bytes pulled as they are sent: len bytes from off (len 0: to the
 * end) of the blob b (svc_blob_open said stream). Open starts the read (S3:
 * the GET), so REG_E_BLOB_UNKNOWN (the bytes are missing from the store)
 * and REG_E_RANGE show before any byte goes out; it takes b's reader of a
 * fetch under way. Read hands out up to max bytes, at least one (*n 0: the
 * end). With no byte at hand it waits: S3 on the calling thread; a blob
 * the cache is still fetching through w (REG_E_PENDING). Such a blob's last
 * byte is handed out only once the whole blob matched its digest. */
int svc_blob_reader_open(struct service *s, struct svc_blob *b, const struct digest *d,
                         uint64_t off, uint64_t len, struct svc_blob_reader **out);
int svc_blob_reader_read(struct svc_blob_reader *r, void *buf, size_t max, size_t *n,
                         struct svc_wait *w);
/* NULL is fine. */
void svc_blob_reader_close(struct svc_blob_reader *r);
/* Unlink blob d from repo (GC removes its bytes once nothing needs them).
 * REG_E_IN_USE while a manifest of repo uses it (reg_detail() names it). */
int svc_blob_delete(struct service *s, const char *repo, const struct digest *d);

/* May the caller read repository repo? For mounts and the catalog. */
typedef int (*svc_may_fn)(void *arg, const char *repo);
/* Make blob d visible in repo when from holds it, or, with from NULL, when a
 * repository may() allows holds it. *mounted says whether it was. */
int svc_blob_mount(struct service *s, const char *repo, const struct digest *d, const char *from,
                   svc_may_fn may, void *arg, int *mounted);

/* ---- listings ----------------------------------------------------------------- */

/* A page of names: tags of a repository, or repositories. */
struct svc_page {
    json_t *names;               /* JSON array of strings (a new reference; the caller decrefs) */
    int more;                    /* further names follow */
    char last[SVC_NAME_MAX + 1]; /* the last name the page covers: the next page's ?last= */
};

/* Tags of repo after last (NULL: from the start), at most n, in byte order.
 * REG_E_NAME_UNKNOWN when repo does not exist. */
int svc_tags(struct service *s, const char *repo, const char *last, size_t n, struct svc_page *out);
/* Repositories after last, at most n; with may, only those it allows (it
 * may be NULL: all). */
int svc_catalog(struct service *s, const char *last, size_t n, svc_may_fn may, void *arg,
                struct svc_page *out);
/* Descriptors of the manifests of repo whose subject is subject, only those
 * of artifact_type when it is not NULL: a JSON array (a new reference). */
int svc_referrers(struct service *s, const char *repo, const struct digest *subject,
                  const char *artifact_type, json_t **out);

#endif
