/* The LMDB index: every piece of metadata, in named databases with ordered
 * keys (parts joined by '\0') so that listings are range scans.
 *
 *   blob        digest              -> struct index_blob
 *   repo_blob   repo \0 digest      -> ""   (blob visible in repo)
 *   repo        repo                -> creation time
 *   upload      uuid                -> upload record (see index_upload)
 *   manifest, manifest_data, tag, referrer: filled by the manifest API.
 *
 * Reads run in read transactions that never block writers (MVCC); all
 * writes of one operation happen in one write transaction. */
#ifndef REG_INDEX_H
#define REG_INDEX_H

#include <stddef.h>
#include <stdint.h>

struct index;
struct index_txn;

struct index_blob {
    uint64_t size;     /* bytes */
    uint64_t refcount; /* manifests that reference the blob */
    int64_t created;   /* unix seconds */
};

#define INDEX_HASH_STATE_MAX 256

struct index_upload {
    char repo[256];      /* repository the session belongs to */
    uint64_t offset;     /* bytes received, fsynced and hashed */
    int64_t updated;     /* unix seconds of last activity */
    uint32_t algo;       /* enum digest_algo of the running hash */
    uint32_t state_len;  /* bytes of state[] in use; 0 = rehash the file */
    unsigned char state[INDEX_HASH_STATE_MAX];
};

/* Open (creating) the environment in dir. map_size caps the index. */
int index_open(const char *dir, size_t map_size, struct index **out);
void index_close(struct index *ix);

/* Begin a transaction; writable ones serialise. Every begin is matched by
 * exactly one commit or abort, which frees the txn. */
int index_begin(struct index *ix, int writable, struct index_txn **out);
int index_commit(struct index_txn *t);
void index_abort(struct index_txn *t);

/* Blobs. get: REG_E_BLOB_UNKNOWN when absent. */
int index_get_blob(struct index_txn *t, const char *digest, struct index_blob *out);
/* Record a stored blob of size bytes if it is not already known. */
int index_add_blob(struct index_txn *t, const char *digest, uint64_t size);

/* Visibility of a blob in a repository; link also records the repo. */
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

#endif
