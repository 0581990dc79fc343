/* The blob store's front end: dispatch to the backend's table, and the
 * commit/removal lock every backend shares. */
#include "blobstore.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../common/err.h"
#include "../common/log.h"
#include "blobstore_backend.h"

struct blobstore {
    const struct blobstore_backend *ops;
    void *be;                 /* the backend's own state */
    pthread_rwlock_t commits; /* shared: commit + index record; exclusive: removal */
};

/* cfg NULL: the file backend. */
static int open_backend(const char *root, const struct blobstore_s3_config *cfg,
                        struct blobstore **out)
{
    struct blobstore *bs = calloc(1, sizeof(*bs));
    pthread_rwlockattr_t a;
    int rc;

    *out = NULL;
    if (!bs)
        return REG_E_NOMEM;
    rc = cfg ? blobstore_s3_open(root, cfg, &bs->ops, &bs->be)
             : blobstore_file_open(root, &bs->ops, &bs->be);
    if (rc) {
        free(bs);
        return rc;
    }
    /* Removals (GC) must not starve behind a steady stream of pushes. */
    pthread_rwlockattr_init(&a);
    pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&bs->commits, &a);
    pthread_rwlockattr_destroy(&a);
    *out = bs;
    return REG_OK;
}

int blobstore_open(const char *root, struct blobstore **out)
{
    return open_backend(root, NULL, out);
}

int blobstore_open_s3(const char *root, const struct blobstore_s3_config *cfg,
                      struct blobstore **out)
{
    return open_backend(root, cfg, out);
}

void blobstore_close(struct blobstore *bs)
{
    if (!bs)
        return;
    bs->ops->close(bs->be);
    pthread_rwlock_destroy(&bs->commits);
    free(bs);
}

const char *blobstore_backend_name(const struct blobstore *bs)
{
    return bs->ops->name;
}

const char *blobstore_index_dir(struct blobstore *bs)
{
    return bs->ops->index_dir(bs->be);
}

int blobstore_open_read(struct blobstore *bs, const struct digest *d, int *fd, char **url,
                        uint64_t *size)
{
    *fd = -1;
    if (url)
        *url = NULL;
    return bs->ops->open_read(bs->be, d, fd, url, size);
}

int blobstore_read(struct blobstore *bs, const struct digest *d, uint64_t off, uint64_t len,
                   blobstore_sink_fn fn, void *arg)
{
    return bs->ops->read(bs->be, d, off, len, fn, arg);
}

/* The reader of a backend that gives descriptors. */
struct fd_reader {
    struct blob_reader base; /* ops NULL */
    int fd;
    uint64_t pos, end; /* next offset; end of the range */
};

int blobstore_reader_open(struct blobstore *bs, const struct digest *d, uint64_t off, uint64_t len,
                          struct blob_reader **out)
{
    struct fd_reader *r;
    uint64_t size = 0;
    int fd = -1, rc;

    *out = NULL;
    if (bs->ops->reader_open)
        return bs->ops->reader_open(bs->be, d, off, len, out);
    rc = bs->ops->open_read(bs->be, d, &fd, NULL, &size);
    if (rc)
        return rc;
    if (off > size || (len && len > size - off)) {
        close(fd);
        return REG_E_RANGE;
    }
    r = calloc(1, sizeof(*r));
    if (!r) {
        close(fd);
        return REG_E_NOMEM;
    }
    r->fd = fd;
    r->pos = off;
    r->end = len ? off + len : size;
    *out = &r->base;
    return REG_OK;
}

int blob_reader_read(struct blob_reader *br, void *buf, size_t max, size_t *n)
{
    struct fd_reader *r = (struct fd_reader *)br;
    ssize_t got;

    if (br->ops)
        return br->ops->reader_read(br, buf, max, n);
    *n = 0;
    if (max > r->end - r->pos)
        max = (size_t)(r->end - r->pos);
    if (max == 0)
        return REG_OK;
    do
        got = pread(r->fd, buf, max, (off_t)r->pos);
    while (got < 0 && errno == EINTR);
    if (got <= 0) /* a blob does not shrink: an end before ours is an error */
        return REG_E_IO;
    r->pos += (uint64_t)got;
    *n = (size_t)got;
    return REG_OK;
}

void blob_reader_close(struct blob_reader *br)
{
    if (!br)
        return;
    if (br->ops) {
        br->ops->reader_close(br);
        return;
    }
    close(((struct fd_reader *)br)->fd);
    free(br);
}

uint64_t blobstore_requests(struct blobstore *bs)
{
    return strcmp(bs->ops->name, "s3") == 0 ? blobstore_s3_requests(bs->be) : 0;
}

int blobstore_size(struct blobstore *bs, const struct digest *d, uint64_t *size)
{
    return bs->ops->size(bs->be, d, size);
}

int blobstore_delete(struct blobstore *bs, const struct digest *d)
{
    return bs->ops->remove(bs->be, d);
}

int blobstore_each(struct blobstore *bs, blobstore_each_fn fn, void *arg)
{
    return bs->ops->each(bs->be, fn, arg);
}

void blobstore_lock_shared(struct blobstore *bs)
{
    pthread_rwlock_rdlock(&bs->commits);
}

void blobstore_lock_exclusive(struct blobstore *bs)
{
    pthread_rwlock_wrlock(&bs->commits);
}

void blobstore_unlock(struct blobstore *bs)
{
    pthread_rwlock_unlock(&bs->commits);
}

int blobstore_writer_create(struct blobstore *bs, const char *id, struct blob_writer **out)
{
    return bs->ops->writer_create(bs->be, id, out);
}

int blobstore_writer_reopen(struct blobstore *bs, const char *id, uint64_t keep,
                            struct blob_writer **out)
{
    return bs->ops->writer_reopen(bs->be, id, keep, out);
}

int blob_writer_append(struct blob_writer *w, const void *data, size_t len)
{
    return w->ops->append(w, data, len);
}

int blob_writer_truncate(struct blob_writer *w, uint64_t size)
{
    return w->ops->truncate(w, size);
}

int blob_writer_checkpoint(struct blob_writer *w)
{
    return w->ops->checkpoint(w);
}

int blob_writer_pread(struct blob_writer *w, uint64_t off, void *buf, size_t len, size_t *n)
{
    return w->ops->pread(w, off, buf, len, n);
}

int blobstore_commit(struct blobstore *bs, struct blob_writer *w, const struct digest *d)
{
    return bs->ops->commit(bs->be, w, d);
}

void blob_writer_close(struct blob_writer *w, int discard)
{
    if (w)
        w->ops->writer_close(w, discard);
}

int blobstore_writer_remove(struct blobstore *bs, const char *id, uint64_t *bytes)
{
    return bs->ops->writer_remove(bs->be, id, bytes);
}

int blobstore_writer_size(struct blobstore *bs, const char *id, uint64_t *size)
{
    return bs->ops->writer_size(bs->be, id, size);
}

int blobstore_each_writer(struct blobstore *bs, blobstore_writer_fn fn, void *arg)
{
    return bs->ops->each_writer(bs->be, fn, arg);
}

int blobstore_export(struct blobstore *bs, struct blobstore *dst, const struct digest *d,
                     int *copied)
{
    if (bs->ops != dst->ops)
        return REG_E_UNSUPPORTED;
    return bs->ops->export(bs->be, dst->be, d, copied);
}

int blobstore_sync(struct blobstore *bs)
{
    return bs->ops->sync(bs->be);
}

int blobstore_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = REG_OK;

    if (fd < 0)
        return REG_E_IO;
    if (fsync(fd) != 0) {
        log_error("fsync %s: %s", dir, strerror(errno));
        rc = REG_E_IO;
    }
    close(fd);
    return rc;
}
