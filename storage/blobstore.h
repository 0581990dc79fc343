/* The blob store: the bytes of blobs, content-addressed, and of the upload
 * sessions they are made from. Which repository sees which blob is the
 * index's business; the store only holds bytes, so a second backend (an S3
 * bucket) implements struct blobstore_backend (blobstore_backend.h) and
 * nothing above this header changes. Today's backend keeps files under the
 * data root (blobstore_file.c).
 *
 * Durability: bytes become a blob only through blobstore_commit, which
 * makes them durable under the digest before it returns; callers record the
 * blob in the index only after that. */
#ifndef REG_BLOBSTORE_H
#define REG_BLOBSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct blobstore;
struct blob_writer;

/* Open the file-backed store at root, creating its directories. */
int blobstore_open(const char *root, struct blobstore **out);
struct blobstore_s3_config;
/* Open the S3-backed store (blobstore_s3.h): blobs in the bucket, the index
 * and the upload sessions' unsent tails under root. REG_E_CONFIG (logged)
 * when the settings are unusable or the bucket unreachable. */
int blobstore_open_s3(const char *root, const struct blobstore_s3_config *cfg,
                      struct blobstore **out);
void blobstore_close(struct blobstore *bs);
/* Which backend this is ("file"), for logs. */
const char *blobstore_backend_name(const struct blobstore *bs);

/* Directory that holds the LMDB index (metadata stays local whatever the
 * backend). */
const char *blobstore_index_dir(struct blobstore *bs);

/* ---- blobs ---------------------------------------------------------------- */

/* Open blob d for reading: either *fd (owned by the caller, for sendfile)
 * or, for a backend that serves bytes itself, *url (malloc'd, owned by the
 * caller; *fd is then -1) to redirect the client to. *size is the blob's
 * length. REG_E_BLOB_UNKNOWN when the store lacks it. url may be NULL when
 * the caller cannot redirect; a backend then returns an fd or fails
 * (REG_E_UNSUPPORTED: the S3 backend has no descriptor to give; pull with
 * blobstore_reader_open instead). The S3 backend answers both without a
 * request: it neither checks that d is there nor knows its size (*size 0;
 * the index has it), and a missing object shows when it is read. */
int blobstore_open_read(struct blobstore *bs, const struct digest *d, int *fd, char **url,
                        uint64_t *size);
/* Receives a blob's bytes in order; anything but REG_OK stops the read and
 * is returned by blobstore_read. */
typedef int (*blobstore_sink_fn)(void *arg, const void *data, size_t len);
/* Stream len bytes of blob d from off (len 0: to the end) into fn: every
 * backend can, whether or not open_read gives a descriptor.
 * REG_E_BLOB_UNKNOWN when the store lacks d, REG_E_RANGE past its end. */
int blobstore_read(struct blobstore *bs, const struct digest *d, uint64_t off, uint64_t len,
                   blobstore_sink_fn fn, void *arg);
/* A reader the caller pulls from: len bytes of blob d from off (len 0: to
 * the end). Every backend has one (a file: pread on its descriptor; S3: one
 * GET kept open across reads). Opening starts the read, so REG_E_BLOB_UNKNOWN
 * and REG_E_RANGE show here, before any byte is handed out. */
struct blob_reader;
int blobstore_reader_open(struct blobstore *bs, const struct digest *d, uint64_t off, uint64_t len,
                          struct blob_reader **out);
/* Up to max bytes into buf, waiting for at least one; *n 0 at the end. An
 * error leaves the reader good only for close. */
int blob_reader_read(struct blob_reader *r, void *buf, size_t max, size_t *n);
/* NULL is fine. */
void blob_reader_close(struct blob_reader *r);
/* S3 requests sent so far; 0 for a backend that sends none. */
uint64_t blobstore_requests(struct blobstore *bs);
/* The size of blob d; REG_E_BLOB_UNKNOWN when there is none. */
int blobstore_size(struct blobstore *bs, const struct digest *d, uint64_t *size);
/* Remove blob d; absent is not an error. */
int blobstore_delete(struct blobstore *bs, const struct digest *d);
/* Every blob (no per-blob stat); fn returns REG_OK to go on. */
typedef int (*blobstore_each_fn)(void *arg, const struct digest *d);
int blobstore_each(struct blobstore *bs, blobstore_each_fn fn, void *arg);

/* A commit and the index record that makes it known hold the store shared;
 * a removal (GC, fsck --repair) holds it exclusive. So a removal that finds
 * a blob without a record, or a record it may drop, never races a commit of
 * the same digest: a push either keeps its bytes or was never acknowledged. */
void blobstore_lock_shared(struct blobstore *bs);
void blobstore_lock_exclusive(struct blobstore *bs);
void blobstore_unlock(struct blobstore *bs);

/* ---- writers: the bytes of an upload session ------------------------------ */

/* Start the bytes of session id (which must already be validated). */
int blobstore_writer_create(struct blobstore *bs, const char *id, struct blob_writer **out);
/* Take up session id again, keeping its first keep bytes (what was last
 * checkpointed) and dropping the rest. REG_E_UPLOAD_UNKNOWN when its bytes
 * are gone or shorter than keep (an empty session is simply started again). */
int blobstore_writer_reopen(struct blobstore *bs, const char *id, uint64_t keep,
                            struct blob_writer **out);
/* Append; REG_E_NOSPC when the store is full. */
int blob_writer_append(struct blob_writer *w, const void *data, size_t len);
/* Cut the bytes back to size (give back what was not acknowledged). */
int blob_writer_truncate(struct blob_writer *w, uint64_t size);
/* Make every byte appended so far durable. */
int blob_writer_checkpoint(struct blob_writer *w);
/* Read back (a rehash): *n bytes at off, 0 at the end. */
int blob_writer_pread(struct blob_writer *w, uint64_t off, void *buf, size_t len, size_t *n);
/* Make the bytes blob d (or, when the store has d already, drop them:
 * deduplication). The writer is spent either way; close it after. */
int blobstore_commit(struct blobstore *bs, struct blob_writer *w, const struct digest *d);
/* Free the writer; discard: remove its bytes too. NULL is fine. */
void blob_writer_close(struct blob_writer *w, int discard);

/* Remove the bytes of session id (absent is fine); *bytes says how many. */
int blobstore_writer_remove(struct blobstore *bs, const char *id, uint64_t *bytes);
/* Bytes held for session id; REG_E_UPLOAD_UNKNOWN when none. */
int blobstore_writer_size(struct blobstore *bs, const char *id, uint64_t *size);
/* Every session id the store holds bytes for. */
typedef int (*blobstore_writer_fn)(void *arg, const char *id);
int blobstore_each_writer(struct blobstore *bs, blobstore_writer_fn fn, void *arg);

/* ---- backup ---------------------------------------------------------------- */

/* Put blob d of bs into dst (same backend): a hard link where the backend
 * can, else a durable copy (*copied set). REG_E_BLOB_UNKNOWN when bs lacks
 * it. Call blobstore_sync(dst) once at the end. */
int blobstore_export(struct blobstore *bs, struct blobstore *dst, const struct digest *d,
                     int *copied);
/* Make everything exported so far durable. */
int blobstore_sync(struct blobstore *bs);

/* fsync a directory by path (also used for the index's own files). */
int blobstore_sync_dir(const char *dir);

#endif
