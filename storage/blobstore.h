/* Content-addressed blob files under <root>/blobs/<algo>/<2 hex>/<hex>,
 * and the upload files under <root>/uploads/ they are made from.
 *
 * The only way a file enters blobs/ is blobstore_commit(): fsync the file,
 * rename it into place (the commit point), fsync the directory. Callers
 * record the blob in the index only after it returns. This is the one
 * interface a second backend (S3) would implement. */
#ifndef REG_BLOBSTORE_H
#define REG_BLOBSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "digest.h"

struct blobstore;

/* Open the store at root, creating its directories. */
int blobstore_open(const char *root, struct blobstore **out);
void blobstore_close(struct blobstore *bs);

/* Open a blob for reading. On success *fd is owned by the caller.
 * REG_E_BLOB_UNKNOWN when the file is absent. */
int blobstore_open_read(struct blobstore *bs, const struct digest *d, int *fd, uint64_t *size);

/* Make the upload file at upload_path (open as fd) the blob d. When the
 * blob already exists the upload file is simply removed (deduplication). */
int blobstore_commit(struct blobstore *bs, int fd, const char *upload_path, const struct digest *d);

/* Remove a blob file; absent is not an error. */
int blobstore_delete(struct blobstore *bs, const struct digest *d);

/* A commit and the index record that makes it known hold the store shared;
 * a removal (GC, fsck --repair) holds it exclusive. So a removal that finds
 * a file without a record, or a record it may drop, never races a commit of
 * the same digest: a push either keeps its bytes or was never acknowledged. */
void blobstore_lock_shared(struct blobstore *bs);
void blobstore_lock_exclusive(struct blobstore *bs);
void blobstore_unlock(struct blobstore *bs);

/* Every blob file (a directory walk, no stat); fn returns REG_OK to go on.
 * Files whose names are not digests are skipped. */
typedef int (*blobstore_each_fn)(void *arg, const struct digest *d);
int blobstore_each(struct blobstore *bs, blobstore_each_fn fn, void *arg);
/* The size of blob d's file; REG_E_BLOB_UNKNOWN when there is none. */
int blobstore_size(struct blobstore *bs, const struct digest *d, uint64_t *size);

/* Path of the upload file for uuid (which must already be validated). */
int blobstore_upload_path(struct blobstore *bs, const char *uuid, char *buf, size_t size);

/* Directory that holds the LMDB index. */
const char *blobstore_index_dir(struct blobstore *bs);

/* fsync a directory by path. */
int blobstore_sync_dir(const char *dir);

/* Put blob d of bs into dst: a hard link when both are on one file system,
 * else a copy (*copied set), fsynced. The caller syncs dst's directories
 * (blobstore_sync) once at the end. REG_E_BLOB_UNKNOWN when bs lacks it. */
int blobstore_export(struct blobstore *bs, struct blobstore *dst, const struct digest *d,
                     int *copied);
/* fsync every directory of the store. */
int blobstore_sync(struct blobstore *bs);

#endif
