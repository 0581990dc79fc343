/* The file backend: blobs as files under <root>/blobs/<algo>/<2 hex>/<hex>,
 * session bytes under <root>/uploads/<id>.
 *
 * The only way a file enters blobs/ is commit: fsync the session file,
 * rename it into place (the commit point), fsync the directory. The 512
 * shard directories are made (and their names made durable) at open, so a
 * commit never creates a directory. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/err.h"
#include "../common/log.h"
#include "blobstore_backend.h"

/* Bytes between two writeback kicks while a session streams in. */
#define WRITEBACK_STEP (8u << 20)
/* Appends are gathered into writes of this size: the HTTP layer hands the
 * body over in pieces as small as its per-connection buffer. */
#define WRITE_BUF (256u << 10)

struct fstore {
    char root[PATH_MAX];
    char index_dir[PATH_MAX];
    char uploads[PATH_MAX];
};

struct fwriter {
    struct blob_writer base; /* first: the front end dispatches on it */
    struct fstore *fs;
    char path[PATH_MAX];
    int fd;
    int dir_synced;   /* the file's name is durable in uploads/ */
    uint64_t size;    /* bytes in the file */
    uint64_t flushed; /* offset up to which writeback has been started */
    char *buf;        /* appends not yet written, WRITE_BUF bytes; NULL until needed */
    size_t buffered;  /* bytes of buf in use */
};

static const struct blobstore_backend file_backend;

static int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    size_t len = strlen(path), i;

    if (len == 0 || len >= sizeof(buf))
        return REG_E_IO;
    memcpy(buf, path, len + 1);
    for (i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        buf[i] = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            log_error("mkdir %s: %s", buf, strerror(errno));
            return REG_E_IO;
        }
        if (i < len)
            buf[i] = '/';
    }
    return REG_OK;
}

/* All 256 shard directories of each algorithm exist, and their names are
 * durable, before the first commit: a commit never creates a directory
 * another commit could race with. Cheap after the first start (a stat per
 * directory, no walk of the blobs). */
static int make_shards(struct fstore *fs)
{
    static const char *const algos[] = {"sha256", "sha512"};
    char path[PATH_MAX + 32];
    size_t a;
    int i, rc, created;

    for (a = 0; a < 2; a++) {
        created = 0;
        for (i = 0; i < 256; i++) {
            struct stat st;

            snprintf(path, sizeof(path), "%s/blobs/%s/%02x", fs->root, algos[a], i);
            if (stat(path, &st) == 0)
                continue;
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return REG_E_IO;
            created = 1;
        }
        if (created) {
            snprintf(path, sizeof(path), "%s/blobs/%s", fs->root, algos[a]);
            rc = blobstore_sync_dir(path);
            if (rc)
                return rc;
        }
    }
    /* The top-level directories themselves. */
    snprintf(path, sizeof(path), "%s/blobs", fs->root);
    rc = blobstore_sync_dir(path);
    return rc ? rc : blobstore_sync_dir(fs->root);
}

/* <root>/blobs/<algo>/<2 hex> and the file inside it. */
static int blob_paths(struct fstore *fs, const struct digest *d, char *dir, char *file)
{
    const char *hex = digest_hex(d);
    int n = snprintf(dir, PATH_MAX, "%s/blobs/%s/%.2s", fs->root, digest_algo_name(d->algo), hex);

    if (n < 0 || n >= PATH_MAX)
        return REG_E_IO;
    n = snprintf(file, PATH_MAX, "%s/%s", dir, hex);
    return (n < 0 || n >= PATH_MAX) ? REG_E_IO : REG_OK;
}

static int f_open_read(void *be, const struct digest *d, int *fd, char **url, uint64_t *size)
{
    struct fstore *fs = be;
    char dir[PATH_MAX], file[PATH_MAX];
    struct stat st;
    int rc = blob_paths(fs, d, dir, file), f;

    (void)url;
    if (rc)
        return rc;
    f = open(file, O_RDONLY | O_CLOEXEC);
    if (f < 0) {
        if (errno == ENOENT)
            return REG_E_BLOB_UNKNOWN;
        log_error("open %s: %s", file, strerror(errno));
        return REG_E_IO;
    }
    if (fstat(f, &st) != 0) {
        close(f);
        return REG_E_IO;
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return REG_OK;
}

static int f_read(void *be, const struct digest *d, uint64_t off, uint64_t len,
                  blobstore_sink_fn fn, void *arg)
{
    static const size_t bufsize = 256u << 10;
    char *buf = NULL;
    int fd = -1, rc;
    uint64_t size, end;

    rc = f_open_read(be, d, &fd, NULL, &size);
    if (rc)
        return rc;
    end = len ? off + len : size;
    if (off > size || end > size || end < off) {
        rc = REG_E_RANGE;
        goto out;
    }
    buf = malloc(bufsize);
    if (!buf) {
        rc = REG_E_NOMEM;
        goto out;
    }
    while (!rc && off < end) {
        size_t want = end - off < bufsize ? (size_t)(end - off) : bufsize;
        ssize_t n = pread(fd, buf, want, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = REG_E_IO;
            break;
        }
        rc = fn(arg, buf, (size_t)n);
        off += (uint64_t)n;
    }
out:
    free(buf);
    close(fd);
    return rc;
}

static int f_size(void *be, const struct digest *d, uint64_t *size)
{
    struct fstore *fs = be;
    char dir[PATH_MAX], file[PATH_MAX];
    struct stat st;
    int rc = blob_paths(fs, d, dir, file);

    *size = 0;
    if (rc)
        return rc;
    if (stat(file, &st) != 0)
        return errno == ENOENT ? REG_E_BLOB_UNKNOWN : REG_E_IO;
    *size = (uint64_t)st.st_size;
    return REG_OK;
}

static int f_remove(void *be, const struct digest *d)
{
    struct fstore *fs = be;
    char dir[PATH_MAX], file[PATH_MAX];
    int rc = blob_paths(fs, d, dir, file);

    if (rc)
        return rc;
    if (unlink(file) != 0 && errno != ENOENT)
        return REG_E_IO;
    return REG_OK;
}

/* One shard directory: every file named like a digest of algo. */
static int each_in_shard(const char *dir, enum digest_algo algo, blobstore_each_fn fn, void *arg)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char name[DIGEST_STR_MAX + 300];
    struct digest dg;
    int rc = REG_OK;

    if (!d)
        return errno == ENOENT ? REG_OK : REG_E_IO;
    while (!rc && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strlen(e->d_name) > DIGEST_HEX_MAX ||
            (e->d_type != DT_REG && e->d_type != DT_UNKNOWN))
            continue;
        snprintf(name, sizeof(name), "%s:%s", digest_algo_name(algo), e->d_name);
        if (digest_parse(name, strlen(name), &dg) != REG_OK)
            continue; /* not ours */
        rc = fn(arg, &dg);
    }
    closedir(d);
    return rc;
}

static int f_each(void *be, blobstore_each_fn fn, void *arg)
{
    static const enum digest_algo algos[] = {DIGEST_SHA256, DIGEST_SHA512};
    struct fstore *fs = be;
    char dir[PATH_MAX + 32];
    size_t a;
    int i, rc = REG_OK;

    for (a = 0; !rc && a < sizeof(algos) / sizeof(algos[0]); a++)
        for (i = 0; !rc && i < 256; i++) {
            snprintf(dir, sizeof(dir), "%s/blobs/%s/%02x", fs->root, digest_algo_name(algos[a]), i);
            rc = each_in_shard(dir, algos[a], fn, arg);
        }
    return rc;
}

/* ---- writers ------------------------------------------------------------------ */

static int upload_path(struct fstore *fs, const char *id, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/%s", fs->uploads, id);

    return (n < 0 || (size_t)n >= size) ? REG_E_IO : REG_OK;
}

static struct fwriter *fwriter_new(struct fstore *fs, const char *id)
{
    struct fwriter *w = calloc(1, sizeof(*w));

    if (!w)
        return NULL;
    w->base.ops = &file_backend;
    w->fs = fs;
    w->fd = -1;
    if (upload_path(fs, id, w->path, sizeof(w->path))) {
        free(w);
        return NULL;
    }
    return w;
}

static int f_writer_create(void *be, const char *id, struct blob_writer **out)
{
    struct fwriter *w = fwriter_new(be, id);

    *out = NULL;
    if (!w)
        return REG_E_NOMEM;
    w->fd = open(w->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int rc = reg_errno(errno);

        log_error("create %s: %s", w->path, strerror(errno));
        free(w);
        return rc;
    }
    /* The name is made durable at the first checkpoint that holds data:
     * until then a lost file loses nothing (see reopen). */
    *out = &w->base;
    return REG_OK;
}

static int f_writer_reopen(void *be, const char *id, uint64_t keep, struct blob_writer **out)
{
    struct fwriter *w = fwriter_new(be, id);
    struct stat st;
    int rc = REG_OK;

    *out = NULL;
    if (!w)
        return REG_E_NOMEM;
    w->fd = open(w->path, O_RDWR | O_CLOEXEC);
    if (w->fd < 0 && errno == ENOENT && keep == 0) {
        /* A crash before the first checkpoint can lose the empty file's
         * name; nothing was acknowledged, so start it again. */
        w->fd = open(w->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    }
    if (w->fd < 0 || fstat(w->fd, &st) != 0) {
        log_error("upload %s: file lost: %s", id, strerror(errno));
        rc = REG_E_UPLOAD_UNKNOWN;
        goto out;
    }
    if ((uint64_t)st.st_size < keep) {
        log_error("upload %s: file shorter than its checkpoint", id);
        rc = REG_E_UPLOAD_UNKNOWN;
        goto out;
    }
    /* Bytes past the checkpoint were never acknowledged: drop them. */
    if ((uint64_t)st.st_size > keep && ftruncate(w->fd, (off_t)keep) != 0)
        rc = REG_E_IO;
    if (!rc && lseek(w->fd, (off_t)keep, SEEK_SET) < 0)
        rc = REG_E_IO;
    w->size = keep;
    w->flushed = keep;
    w->dir_synced = keep > 0;
out:
    if (rc) {
        if (w->fd >= 0)
            close(w->fd);
        free(w);
        return rc;
    }
    *out = &w->base;
    return REG_OK;
}

static int write_all(struct fwriter *w, const char *p, size_t left)
{
    while (left > 0) {
        ssize_t n = write(w->fd, p, left);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            log_error("write %s: %s", w->path, strerror(errno));
            return reg_errno(errno);
        }
        w->size += (uint64_t)n;
        p += n;
        left -= (size_t)n;
    }
    /* Start writeback as data arrives, so the fsync at commit has little
     * left to do. It only initiates I/O: durability still comes from the
     * fsync. */
    if (w->size - w->flushed >= WRITEBACK_STEP) {
        sync_file_range(w->fd, (off_t)w->flushed, (off_t)(w->size - w->flushed),
                        SYNC_FILE_RANGE_WRITE);
        w->flushed = w->size;
    }
    return REG_OK;
}

static int flush(struct fwriter *w)
{
    int rc;

    if (!w->buffered)
        return REG_OK;
    rc = write_all(w, w->buf, w->buffered);
    w->buffered = 0;
    return rc;
}

static int f_append(struct blob_writer *bw, const void *data, size_t len)
{
    struct fwriter *w = (struct fwriter *)bw;
    const char *p = data;
    size_t room;
    int rc;

    if (!w->buffered && len >= WRITE_BUF)
        return write_all(w, p, len); /* big enough already */
    if (!w->buf && (w->buf = malloc(WRITE_BUF)) == NULL)
        return write_all(w, p, len);
    while (len > 0) {
        room = WRITE_BUF - w->buffered;
        if (room > len)
            room = len;
        memcpy(w->buf + w->buffered, p, room);
        w->buffered += room;
        p += room;
        len -= room;
        if (w->buffered == WRITE_BUF) {
            rc = flush(w);
            if (rc)
                return rc;
        }
    }
    return REG_OK;
}

static int f_truncate(struct blob_writer *bw, uint64_t size)
{
    struct fwriter *w = (struct fwriter *)bw;

    if (size > w->size && flush(w) != REG_OK)
        return REG_E_IO;
    w->buffered = 0; /* what is past size goes */
    if (ftruncate(w->fd, (off_t)size) != 0 || lseek(w->fd, (off_t)size, SEEK_SET) < 0) {
        log_warn("truncate %s: %s", w->path, strerror(errno));
        return REG_E_IO;
    }
    w->size = size;
    if (w->flushed > size)
        w->flushed = size;
    return REG_OK;
}

static int f_checkpoint(struct blob_writer *bw)
{
    struct fwriter *w = (struct fwriter *)bw;
    int rc = flush(w);

    if (rc)
        return rc;
    if (fdatasync(w->fd) != 0) {
        log_error("fdatasync %s: %s", w->path, strerror(errno));
        return reg_errno(errno);
    }
    if (!w->dir_synced) {
        if (blobstore_sync_dir(w->fs->uploads) != REG_OK)
            return REG_E_IO;
        w->dir_synced = 1;
    }
    return REG_OK;
}

static int f_pread(struct blob_writer *bw, uint64_t off, void *buf, size_t len, size_t *n)
{
    struct fwriter *w = (struct fwriter *)bw;
    ssize_t r;

    if (flush(w) != REG_OK)
        return REG_E_IO;
    do
        r = pread(w->fd, buf, len, (off_t)off);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return REG_E_IO;
    *n = (size_t)r;
    return REG_OK;
}

static int f_commit(void *be, struct blob_writer *bw, const struct digest *d)
{
    struct fstore *fs = be;
    struct fwriter *w = (struct fwriter *)bw;
    char dir[PATH_MAX], file[PATH_MAX];
    struct stat st;
    int rc = blob_paths(fs, d, dir, file);

    if (!rc)
        rc = flush(w);
    if (rc)
        return rc;
    if (stat(file, &st) == 0) {
        /* Same digest, same bytes: keep the existing file, but make sure its
         * name is durable (a concurrent commit may not have synced yet). */
        unlink(w->path);
        return blobstore_sync_dir(dir);
    }
    if (fsync(w->fd) != 0) {
        log_error("fsync %s: %s", w->path, strerror(errno));
        return reg_errno(errno);
    }
    if (rename(w->path, file) != 0) {
        log_error("rename %s -> %s: %s", w->path, file, strerror(errno));
        return REG_E_IO;
    }
    return blobstore_sync_dir(dir);
}

static void f_writer_close(struct blob_writer *bw, int discard)
{
    struct fwriter *w = (struct fwriter *)bw;

    /* Buffered bytes were never checkpointed: nobody was told they are
     * here, and a reopen would drop them anyway. */
    if (w->fd >= 0)
        close(w->fd);
    if (discard && unlink(w->path) != 0 && errno != ENOENT)
        log_warn("remove %s: %s", w->path, strerror(errno));
    free(w->buf);
    free(w);
}

static int f_writer_size(void *be, const char *id, uint64_t *size)
{
    char path[PATH_MAX];
    struct stat st;
    int rc = upload_path(be, id, path, sizeof(path));

    *size = 0;
    if (rc)
        return rc;
    if (stat(path, &st) != 0)
        return errno == ENOENT ? REG_E_UPLOAD_UNKNOWN : REG_E_IO;
    *size = (uint64_t)st.st_size;
    return REG_OK;
}

static int f_writer_remove(void *be, const char *id, uint64_t *bytes)
{
    char path[PATH_MAX];
    int rc = upload_path(be, id, path, sizeof(path));

    *bytes = 0;
    if (rc)
        return rc;
    f_writer_size(be, id, bytes);
    if (unlink(path) != 0 && errno != ENOENT)
        return REG_E_IO;
    return REG_OK;
}

static int f_each_writer(void *be, blobstore_writer_fn fn, void *arg)
{
    struct fstore *fs = be;
    DIR *d = opendir(fs->uploads);
    struct dirent *e;
    int rc = REG_OK;

    if (!d)
        return REG_E_IO;
    while (!rc && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            rc = fn(arg, e->d_name);
    closedir(d);
    return rc;
}

/* ---- backup ------------------------------------------------------------------- */

/* Copy a file's bytes into a new file and make them durable. */
static int copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY | O_CLOEXEC), out = -1, rc = REG_OK;
    struct stat st;
    loff_t left;
    ssize_t n;

    if (in < 0)
        return errno == ENOENT ? REG_E_BLOB_UNKNOWN : REG_E_IO;
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0 || fstat(in, &st) != 0) {
        rc = reg_errno(errno);
        goto out;
    }
    for (left = st.st_size; left > 0; left -= n) {
        n = copy_file_range(in, NULL, out, NULL, (size_t)left, 0);
        if (n < 0 && errno == EINTR) {
            n = 0;
            continue;
        }
        if (n <= 0) {
            rc = n < 0 ? reg_errno(errno) : REG_E_IO;
            goto out;
        }
    }
    if (fsync(out) != 0)
        rc = reg_errno(errno);
out:
    close(in);
    if (out >= 0)
        close(out);
    if (rc && out >= 0)
        unlink(to);
    return rc;
}

static int f_export(void *be, void *dstbe, const struct digest *d, int *copied)
{
    char sdir[PATH_MAX], sfile[PATH_MAX], ddir[PATH_MAX], dfile[PATH_MAX];
    int rc = blob_paths(be, d, sdir, sfile);

    *copied = 0;
    if (!rc)
        rc = blob_paths(dstbe, d, ddir, dfile);
    if (rc)
        return rc;
    if (link(sfile, dfile) == 0 || errno == EEXIST)
        return REG_OK; /* blobs never change: sharing the inode is safe */
    if (errno == ENOENT)
        return REG_E_BLOB_UNKNOWN;
    if (errno != EXDEV && errno != EPERM && errno != EMLINK)
        return reg_errno(errno);
    *copied = 1;
    return copy_file(sfile, dfile);
}

static int f_sync(void *be)
{
    static const char *const algos[] = {"sha256", "sha512"};
    struct fstore *fs = be;
    char path[PATH_MAX + 32];
    size_t a;
    int i, rc = REG_OK;

    for (a = 0; !rc && a < 2; a++)
        for (i = 0; !rc && i < 256; i++) {
            snprintf(path, sizeof(path), "%s/blobs/%s/%02x", fs->root, algos[a], i);
            rc = blobstore_sync_dir(path);
        }
    return rc ? rc : make_shards(fs);
}

static void f_close(void *be)
{
    free(be);
}

static const char *f_index_dir(void *be)
{
    return ((struct fstore *)be)->index_dir;
}

static const struct blobstore_backend file_backend = {
    .name = "file",
    .close = f_close,
    .index_dir = f_index_dir,
    .open_read = f_open_read,
    .read = f_read,
    .size = f_size,
    .remove = f_remove,
    .each = f_each,
    .writer_create = f_writer_create,
    .writer_reopen = f_writer_reopen,
    .append = f_append,
    .truncate = f_truncate,
    .checkpoint = f_checkpoint,
    .pread = f_pread,
    .commit = f_commit,
    .writer_close = f_writer_close,
    .writer_remove = f_writer_remove,
    .writer_size = f_writer_size,
    .each_writer = f_each_writer,
    .export = f_export,
    .sync = f_sync,
};

int blobstore_file_open(const char *root, const struct blobstore_backend **ops, void **be)
{
    static const char *const subdirs[] = {"blobs/sha256", "blobs/sha512", "uploads", "index"};
    struct fstore *fs = calloc(1, sizeof(*fs));
    char path[PATH_MAX];
    int rc = REG_E_NOMEM;
    size_t i;

    if (!fs)
        goto out;
    rc = REG_E_CONFIG;
    if (snprintf(fs->root, sizeof(fs->root), "%s", root) >= (int)sizeof(fs->root) ||
        snprintf(fs->index_dir, sizeof(fs->index_dir), "%s/index", root) >=
            (int)sizeof(fs->index_dir) ||
        snprintf(fs->uploads, sizeof(fs->uploads), "%s/uploads", root) >= (int)sizeof(fs->uploads))
        goto out;
    for (i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", root, subdirs[i]);
        rc = mkdir_p(path);
        if (rc)
            goto out;
    }
    rc = make_shards(fs);
out:
    if (rc) {
        free(fs);
        fs = NULL;
    }
    *ops = &file_backend;
    *be = fs;
    return rc;
}
