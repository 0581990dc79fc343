#include "blobstore.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/err.h"
#include "../common/log.h"

struct blobstore {
    char root[PATH_MAX];
    char index_dir[PATH_MAX];
    pthread_rwlock_t commits; /* shared: commit + index record; exclusive: removal */
};

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
static int make_shards(struct blobstore *bs)
{
    static const char *const algos[] = {"sha256", "sha512"};
    char path[PATH_MAX + 32];
    size_t a;
    int i, rc, created;

    for (a = 0; a < 2; a++) {
        created = 0;
        for (i = 0; i < 256; i++) {
            struct stat st;

            snprintf(path, sizeof(path), "%s/blobs/%s/%02x", bs->root, algos[a], i);
            if (stat(path, &st) == 0)
                continue;
            if (mkdir(path, 0755) != 0 && errno != EEXIST)
                return REG_E_IO;
            created = 1;
        }
        if (created) {
            snprintf(path, sizeof(path), "%s/blobs/%s", bs->root, algos[a]);
            rc = blobstore_sync_dir(path);
            if (rc)
                return rc;
        }
    }
    /* The top-level directories themselves. */
    snprintf(path, sizeof(path), "%s/blobs", bs->root);
    rc = blobstore_sync_dir(path);
    return rc ? rc : blobstore_sync_dir(bs->root);
}

int blobstore_open(const char *root, struct blobstore **out)
{
    static const char *const subdirs[] = {"blobs/sha256", "blobs/sha512", "uploads", "index"};
    struct blobstore *bs = calloc(1, sizeof(*bs));
    char path[PATH_MAX];
    int rc = REG_E_NOMEM;
    size_t i;

    if (!bs)
        goto out;
    {
        pthread_rwlockattr_t a;

        /* Removals (GC) must not starve behind a steady stream of pushes. */
        pthread_rwlockattr_init(&a);
        pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&bs->commits, &a);
        pthread_rwlockattr_destroy(&a);
    }
    rc = REG_E_CONFIG;
    if (snprintf(bs->root, sizeof(bs->root), "%s", root) >= (int)sizeof(bs->root))
        goto out;
    if (snprintf(bs->index_dir, sizeof(bs->index_dir), "%s/index", root) >=
        (int)sizeof(bs->index_dir))
        goto out;
    for (i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", root, subdirs[i]);
        rc = mkdir_p(path);
        if (rc)
            goto out;
    }
    rc = make_shards(bs);
out:
    if (rc && bs) {
        pthread_rwlock_destroy(&bs->commits);
        free(bs);
        bs = NULL;
    }
    *out = bs;
    return rc;
}

void blobstore_close(struct blobstore *bs)
{
    if (!bs)
        return;
    pthread_rwlock_destroy(&bs->commits);
    free(bs);
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

const char *blobstore_index_dir(struct blobstore *bs)
{
    return bs->index_dir;
}

/* <root>/blobs/<algo>/<2 hex> and the file inside it. */
static int blob_paths(struct blobstore *bs, const struct digest *d, char *dir, char *file)
{
    const char *hex = digest_hex(d);
    int n = snprintf(dir, PATH_MAX, "%s/blobs/%s/%.2s", bs->root, digest_algo_name(d->algo), hex);

    if (n < 0 || n >= PATH_MAX)
        return REG_E_IO;
    n = snprintf(file, PATH_MAX, "%s/%s", dir, hex);
    return (n < 0 || n >= PATH_MAX) ? REG_E_IO : REG_OK;
}

int blobstore_open_read(struct blobstore *bs, const struct digest *d, int *fd, uint64_t *size)
{
    char dir[PATH_MAX], file[PATH_MAX];
    struct stat st;
    int rc = blob_paths(bs, d, dir, file), f;

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

int blobstore_commit(struct blobstore *bs, int fd, const char *upload_path, const struct digest *d)
{
    char dir[PATH_MAX], file[PATH_MAX];
    struct stat st;
    int rc = blob_paths(bs, d, dir, file);

    if (rc)
        return rc;
    if (stat(file, &st) == 0) {
        /* Same digest, same bytes: keep the existing file, but make sure its
         * name is durable (a concurrent commit may not have synced yet). */
        unlink(upload_path);
        return blobstore_sync_dir(dir);
    }
    if (fsync(fd) != 0) {
        log_error("fsync %s: %s", upload_path, strerror(errno));
        return reg_errno(errno);
    }
    if (stat(dir, &st) != 0) {
        /* A new shard directory: its own name must be durable too. */
        char parent[PATH_MAX];

        rc = mkdir_p(dir);
        if (rc)
            return rc;
        snprintf(parent, sizeof(parent), "%s", dir);
        *strrchr(parent, '/') = '\0';
        rc = blobstore_sync_dir(parent);
        if (rc)
            return rc;
    }
    if (rename(upload_path, file) != 0) {
        log_error("rename %s -> %s: %s", upload_path, file, strerror(errno));
        return REG_E_IO;
    }
    return blobstore_sync_dir(dir);
}

int blobstore_delete(struct blobstore *bs, const struct digest *d)
{
    char dir[PATH_MAX], file[PATH_MAX];
    int rc = blob_paths(bs, d, dir, file);

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

int blobstore_size(struct blobstore *bs, const struct digest *d, uint64_t *size)
{
    char dir[PATH_MAX], file[PATH_MAX];
    struct stat st;
    int rc = blob_paths(bs, d, dir, file);

    *size = 0;
    if (rc)
        return rc;
    if (stat(file, &st) != 0)
        return errno == ENOENT ? REG_E_BLOB_UNKNOWN : REG_E_IO;
    *size = (uint64_t)st.st_size;
    return REG_OK;
}

int blobstore_each(struct blobstore *bs, blobstore_each_fn fn, void *arg)
{
    static const enum digest_algo algos[] = {DIGEST_SHA256, DIGEST_SHA512};
    char dir[PATH_MAX + 32];
    size_t a;
    int i, rc = REG_OK;

    for (a = 0; !rc && a < sizeof(algos) / sizeof(algos[0]); a++)
        for (i = 0; !rc && i < 256; i++) {
            snprintf(dir, sizeof(dir), "%s/blobs/%s/%02x", bs->root, digest_algo_name(algos[a]), i);
            rc = each_in_shard(dir, algos[a], fn, arg);
        }
    return rc;
}

int blobstore_upload_path(struct blobstore *bs, const char *uuid, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/uploads/%s", bs->root, uuid);

    return (n < 0 || (size_t)n >= size) ? REG_E_IO : REG_OK;
}

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

int blobstore_export(struct blobstore *bs, struct blobstore *dst, const struct digest *d,
                     int *copied)
{
    char sdir[PATH_MAX], sfile[PATH_MAX], ddir[PATH_MAX], dfile[PATH_MAX];
    int rc = blob_paths(bs, d, sdir, sfile);

    *copied = 0;
    if (!rc)
        rc = blob_paths(dst, d, ddir, dfile);
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

int blobstore_sync(struct blobstore *bs)
{
    static const char *const algos[] = {"sha256", "sha512"};
    char path[PATH_MAX + 32];
    size_t a;
    int i, rc = REG_OK;

    for (a = 0; !rc && a < 2; a++)
        for (i = 0; !rc && i < 256; i++) {
            snprintf(path, sizeof(path), "%s/blobs/%s/%02x", bs->root, algos[a], i);
            rc = blobstore_sync_dir(path);
        }
    return rc ? rc : make_shards(bs);
}
