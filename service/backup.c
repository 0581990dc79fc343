#include "backup.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../common/err.h"
#include "../common/log.h"
#include "../storage/blobstore.h"
#include "../storage/index.h"
#include "gc.h"

/* The copy's map is only read and shrunk here; any size that fits will do. */
#define BACKUP_MAP_SIZE ((size_t)64 << 30)

struct export_ctx {
    struct blobstore *src, *dst;
    struct backup_result *res;
};

static int export_one(void *arg, const char *digest, const struct index_blob *b)
{
    struct export_ctx *c = arg;
    struct digest d;
    int copied, rc = digest_parse(digest, strlen(digest), &d);

    if (rc)
        return rc;
    rc = blobstore_export(c->src, c->dst, &d, &copied);
    if (rc == REG_E_BLOB_UNKNOWN)
        log_error("backup: blob %s is in the index but has no file; run registry fsck", digest);
    if (rc)
        return rc;
    c->res->blobs++;
    c->res->bytes += b->size;
    c->res->copied += (uint64_t)copied;
    return REG_OK;
}

static int dir_usable(const char *dest)
{
    DIR *d = opendir(dest);
    struct dirent *e;
    int empty = 1;

    if (!d)
        return errno == ENOENT ? (mkdir(dest, 0755) == 0 ? REG_OK : REG_E_IO) : REG_E_IO;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = 0;
    closedir(d);
    return empty ? REG_OK : REG_E_CONFIG;
}

int backup_run(const char *root, const char *dest, struct backup_result *res)
{
    struct blobstore *src = NULL, *dst = NULL;
    struct index *ix = NULL, *copy = NULL;
    struct index_txn *t = NULL;
    struct export_ctx c;
    struct timespec t0, t1;
    int rc, pause = -1;

    memset(res, 0, sizeof(*res));
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rc = dir_usable(dest);
    if (rc) {
        log_error("backup: %s must be an empty or new directory", dest);
        return rc;
    }
    rc = blobstore_open(root, &src);
    if (!rc)
        rc = blobstore_open(dest, &dst);
    if (rc)
        goto out;
    pause = gc_pause(root);
    if (pause < 0) {
        rc = REG_E_IO;
        goto out;
    }
    rc = index_open_readonly(blobstore_index_dir(src), &ix);
    if (!rc)
        rc = index_copy(ix, blobstore_index_dir(dst));
    if (!rc)
        rc = index_open(blobstore_index_dir(dst), BACKUP_MAP_SIZE, &copy);
    /* Upload files are not copied: their records go too. */
    if (!rc)
        rc = index_begin(copy, INDEX_WRITE_FREEING, &t);
    if (!rc)
        rc = index_end(t, index_drop_uploads(t));
    if (!rc)
        rc = index_begin(copy, INDEX_READ, &t);
    if (!rc) {
        c.src = src;
        c.dst = dst;
        c.res = res;
        rc = index_each_blob(t, export_one, &c);
        index_abort(t);
    }
    if (!rc)
        rc = blobstore_sync(dst);
out:
    gc_resume(pause);
    index_close(copy);
    index_close(ix);
    blobstore_close(dst);
    blobstore_close(src);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    res->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return rc;
}
