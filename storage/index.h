/* The LMDB index: every piece of metadata, in named databases with ordered
 * keys (parts joined by '\0') so that listings are range scans.
 *
 *   blob        digest              -> struct index_blob
 *   repo_blob   repo \0 digest      -> ""   (blob visible in repo)
 *   repo        repo                -> creation time
 *   blob_repo   digest \0 repo      -> ""   (reverse of repo_blob)
 *   upload      uuid                -> upload record (see index_upload)
 *   manifest    repo \0 digest      -> media type, size, artifactType,
 *                                      subject and the digests it references
 *   manifest_data digest            -> refcount + the manifest bytes
 *   tag         repo \0 tag         -> digest
 *   referrer    repo \0 subject \0 digest -> descriptor JSON
 *   repo_ref    repo \0 digest      -> how many manifests of repo reference
 *                                      digest (a blob, or an index child)
 *   blob_pending digest             -> references to digest from manifests
 *                                      while it has no blob record
 *   cached      repo \0 tag         -> when the pull-through cache last
 *                                      fetched or revalidated the tag
 *               repo \0 ""          -> the repository holds cached content:
 *                                      when it was last pulled through the cache
 *               repo \0 "#pushed"   -> a client pushed a manifest into it
 *   meta        "version"           -> schema version
 *               "blob_bytes"        -> sum of the blob records' sizes
 *
 * A blob's refcount counts the (repository, manifest) pairs that reference
 * it; garbage collection deletes blobs whose count is zero. References to
 * a digest that has no blob record yet (an index's children; a layer of a
 * cached manifest not fetched yet) are counted in blob_pending, and a blob
 * record created later starts with that count, so a blob that arrives
 * after its manifest is counted exactly as one pushed before it. repo_ref is the
 * same count per repository: a DELETE that would break a manifest is
 * refused by it, in the same write transaction as every manifest PUT.
 *
 * Reads run in read transactions that never block writers (MVCC); all
 * writes of one operation happen in one write transaction. */
#ifndef REG_INDEX_H
#define REG_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

/* Longest repository name (the distribution spec's limit). */
#define INDEX_NAME_MAX 255

struct index;
struct index_txn;

struct index_blob {
    uint64_t size;     /* bytes */
    uint64_t refcount; /* manifests that reference the blob */
    int64_t touched;   /* unix seconds of the last push or mount of it; GC's grace
                          period counts from here */
};

#define INDEX_HASH_STATE_MAX 256

struct index_upload {
    char repo[INDEX_NAME_MAX + 1]; /* repository the session belongs to */
    uint64_t offset;               /* bytes received, fsynced and hashed */
    int64_t updated;               /* unix seconds of last activity */
    uint32_t algo;                 /* enum digest_algo of the running hash */
    uint32_t state_len;            /* bytes of state[] in use; 0 = rehash the file */
    unsigned char state[INDEX_HASH_STATE_MAX];
};

/* Open (creating, and upgrading an older schema) the environment in dir.
 * Writes that add data stop at max_size (REG_E_INDEX_FULL); deletes go on
 * beyond it, so that space can always be freed. */
int index_open(const char *dir, size_t max_size, struct index **out);
/* Open an existing index only to read it, beside a live server. */
int index_open_readonly(const char *dir, struct index **out);
/* 0 for an index an older version wrote, opened read-only before any serve
 * upgraded it: it can be copied (backup), not checked. */
int index_current(const struct index *ix);
void index_close(struct index *ix);

/* Transaction modes. INDEX_WRITE may add data: it is refused with
 * REG_E_INDEX_FULL past max_size, or REG_E_NOSPC when the disk cannot hold
 * the index's next growth. INDEX_WRITE_FREEING only removes (DELETEs, GC)
 * and is never refused for space. */
enum index_mode { INDEX_READ = 0, INDEX_WRITE = 1, INDEX_WRITE_FREEING = 2 };

/* Begin a transaction (enum index_mode); writable ones serialise. Every
 * begin is matched by exactly one commit or abort, which frees the txn. */
int index_begin(struct index *ix, int mode, struct index_txn **out);
int index_commit(struct index_txn *t);
void index_abort(struct index_txn *t);
/* Commit when rc is REG_OK, else abort; returns the outcome. */
int index_end(struct index_txn *t, int rc);

/* Blobs. get: REG_E_BLOB_UNKNOWN when absent. */
int index_get_blob(struct index_txn *t, const char *digest, struct index_blob *out);
/* Record a stored blob of size bytes if it is not already known; either
 * way its touched time becomes now. */
int index_add_blob(struct index_txn *t, const char *digest, uint64_t size);

/* Visibility of a blob in a repository; link also records the repo and
 * touches the blob. */
int index_link_blob(struct index_txn *t, const char *repo, const char *digest);
int index_unlink_blob(struct index_txn *t, const char *repo, const char *digest);
/* REG_OK when linked, REG_E_BLOB_UNKNOWN when not. */
int index_repo_has_blob(struct index_txn *t, const char *repo, const char *digest);

/* Repositories. */
int index_add_repo(struct index_txn *t, const char *repo);
/* REG_OK when it exists, REG_E_NAME_UNKNOWN when not. */
int index_repo_exists(struct index_txn *t, const char *repo);

/* Upload sessions. get: REG_E_UPLOAD_UNKNOWN when absent. */
int index_put_upload(struct index_txn *t, const char *uuid, const struct index_upload *u);
int index_get_upload(struct index_txn *t, const char *uuid, struct index_upload *out);
int index_del_upload(struct index_txn *t, const char *uuid);

/* Manifests. */
struct index_manifest {
    char media_type[128];
    char artifact_type[128];      /* "" when none */
    char subject[DIGEST_STR_MAX]; /* subject digest, "" when none */
    uint64_t size;
    int64_t created;
};

/* Store a manifest in repo: its record, its bytes (shared between repos)
 * and, the first time it enters repo, a reference on each of refs (blob
 * digests; absent blobs are not counted). *created is set to 1 when the
 * manifest is new in repo; when it is not, its created time becomes now
 * (GC's grace for untagged manifests counts from there). */
int index_put_manifest(struct index_txn *t, const char *repo, const char *digest,
                       const struct index_manifest *m, const char *const *refs, size_t nrefs,
                       const void *data, size_t len, int *created);
/* REG_E_MANIFEST_UNKNOWN when repo has no such manifest. */
int index_get_manifest(struct index_txn *t, const char *repo, const char *digest,
                       struct index_manifest *out);
/* The stored bytes; valid until the transaction ends. */
int index_get_manifest_data(struct index_txn *t, const char *digest, const void **data,
                            size_t *len);
/* Remove a manifest from repo with its tags and its referrer entry, and drop
 * its references. REG_E_MANIFEST_UNKNOWN when absent. */
int index_delete_manifest(struct index_txn *t, const char *repo, const char *digest);

/* Tags. get: REG_E_MANIFEST_UNKNOWN when absent; out holds DIGEST_STR_MAX. */
int index_put_tag(struct index_txn *t, const char *repo, const char *tag, const char *digest);
int index_get_tag(struct index_txn *t, const char *repo, const char *tag, char *out, size_t size);
int index_del_tag(struct index_txn *t, const char *repo, const char *tag);

/* Referrers: desc is the descriptor JSON of the referring manifest. */
int index_put_referrer(struct index_txn *t, const char *repo, const char *subject,
                       const char *digest, const char *desc, size_t len);

/* Listing callbacks return 0 to go on, INDEX_SKIP to go on without counting
 * the entry against n, anything else to stop. Negative, so that it is never
 * one of enum reg_err. */
#define INDEX_SKIP (-2)
typedef int (*index_name_cb)(void *arg, const char *name, size_t len);
typedef int (*index_value_cb)(void *arg, const void *value, size_t len);

/* Tags of repo after last (NULL: from the start), in byte order, at most
 * n; *more is set when further tags remain. */
int index_list_tags(struct index_txn *t, const char *repo, const char *last, size_t n,
                    index_name_cb cb, void *arg, int *more);
/* Repositories after last, at most n, like index_list_tags. */
int index_list_repos(struct index_txn *t, const char *last, size_t n, index_name_cb cb, void *arg,
                     int *more);
/* Every referrer descriptor of subject in repo. */
int index_list_referrers(struct index_txn *t, const char *repo, const char *subject,
                         index_value_cb cb, void *arg);
/* Digests of the manifests of repo, and of the blobs visible in it, in
 * order, until cb stops. */
int index_repo_manifests(struct index_txn *t, const char *repo, index_name_cb cb, void *arg);
int index_repo_blobs(struct index_txn *t, const char *repo, index_name_cb cb, void *arg);
/* Repositories in which the blob is visible, in order, until cb stops. */
int index_blob_repos(struct index_txn *t, const char *digest, index_name_cb cb, void *arg);

/* REG_E_IN_USE when a manifest of repo references digest (a blob, or a
 * child of an index), one of them named in out; REG_OK when none does. */
int index_in_use(struct index_txn *t, const char *repo, const char *digest, char *out, size_t size);
/* REG_OK when a tag of repo points at digest, else REG_E_MANIFEST_UNKNOWN. */
int index_manifest_tagged(struct index_txn *t, const char *repo, const char *digest);

/* Whole-index walks, for GC and fsck. A callback returns REG_OK to go on,
 * anything else stops the walk and is returned. Strings are valid during
 * the call only; the walk's txn must not be written meanwhile. refs holds
 * the manifest's references as NUL-terminated strings, refs_len bytes. */
typedef int (*index_manifest_fn)(void *arg, const char *repo, const char *digest,
                                 const struct index_manifest *m, const char *refs, size_t refs_len);
typedef int (*index_blob_fn)(void *arg, const char *digest, const struct index_blob *b);
typedef int (*index_upload_fn)(void *arg, const char *uuid, const struct index_upload *u);
/* a and b are the two parts of a key; value is the record. */
typedef int (*index_pair_fn)(void *arg, const char *a, const char *b, const void *value,
                             size_t len);
int index_each_manifest(struct index_txn *t, index_manifest_fn fn, void *arg);
int index_each_blob(struct index_txn *t, index_blob_fn fn, void *arg);
/* The same from the first digest after after (NULL: from the start). */
int index_each_blob_after(struct index_txn *t, const char *after, index_blob_fn fn, void *arg);
int index_each_upload(struct index_txn *t, index_upload_fn fn, void *arg);
/* (repo, tag, digest) */
int index_each_tag(struct index_txn *t, index_pair_fn fn, void *arg);
/* (repo, "", creation time) */
int index_each_repo(struct index_txn *t, index_pair_fn fn, void *arg);

/* Reference counts recomputed from the manifest records and compared with
 * the stored ones; fn gets one line per difference, *bad their number. */
typedef void (*index_problem_fn)(void *arg, const char *what);
int index_check_counts(struct index_txn *t, index_problem_fn fn, void *arg, size_t *bad);
/* Rewrite every reference count from the manifest records. */
int index_recount(struct index_txn *t);

/* The pull-through cache's record of what it fetched: (repo, tag) -> when
 * the tag was last fetched or revalidated (unix seconds); tag NULL is the
 * repository's own mark (it holds cached content). get: REG_E_NOT_FOUND. */
int index_set_cached(struct index_txn *t, const char *repo, const char *tag, int64_t when);
int index_get_cached(struct index_txn *t, const char *repo, const char *tag, int64_t *when);
int index_del_cached(struct index_txn *t, const char *repo, const char *tag);
/* A client pushed a manifest into repo, which then never counts as only
 * cached (eviction). get: REG_OK when one did, REG_E_NOT_FOUND when not. */
int index_set_pushed(struct index_txn *t, const char *repo);
int index_get_pushed(struct index_txn *t, const char *repo);

/* Forget a blob: its record and its links in every repository; references
 * manifests still hold on it become pending again. */
int index_remove_blob(struct index_txn *t, const char *digest);
/* REG_OK when repo holds no manifest, tag or blob, else REG_E_NOT_FOUND. */
int index_repo_empty(struct index_txn *t, const char *repo);
/* Drop repo from the catalog, with the cache's marks on it (check
 * index_repo_empty first). */
int index_drop_repo(struct index_txn *t, const char *repo);
/* Forget every upload session (a backup holds no upload files). */
int index_drop_uploads(struct index_txn *t);
/* A compact, consistent copy of the whole index into the directory dir. */
int index_copy(struct index *ix, const char *dir);

/* Totals for monitoring, from one read transaction: counts come from the
 * databases' headers and blob_bytes from a running total, so the cost does
 * not grow with the store. */
struct index_stats {
    uint64_t blobs;       /* blob records */
    uint64_t blob_bytes;  /* their sizes together */
    uint64_t repos;       /* repositories in the catalog */
    uint64_t uploads;     /* upload sessions open (until they finish or expire) */
    uint64_t used_bytes;  /* index pages written so far (high-water mark, free pages included) */
    uint64_t map_bytes;   /* LMDB map size: index_max_size plus the headroom kept for deletes */
    uint64_t limit_bytes; /* index_max_size */
};
int index_stats(struct index *ix, struct index_stats *out);

#endif
