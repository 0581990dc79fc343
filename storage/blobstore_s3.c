/* The S3 backend: blobs as objects <prefix>blobs/<algo>/<hex> in a bucket.
 *
 * A session's bytes stream into an S3 multipart upload of
 * <prefix>uploads/<id> as they arrive. The part being filled lives in a
 * small local file under <root>/s3-sessions/<id>/, named by the offset of
 * its first byte; when it reaches the part size it is sent as the next part
 * and a new one begins. So a checkpoint (fdatasync of that file) makes every
 * appended byte durable without a round trip to S3 for small chunks, and the
 * registry never holds more than one part of a session on disk.
 *
 * A part may carry bytes on both sides of a checkpoint; bytes past a
 * checkpoint are not acknowledged and a restart (reopen at the checkpoint)
 * or a failed request (truncate to it) drops them. So the local file of a
 * part that straddles the last or the previous checkpoint is kept until a
 * later checkpoint no longer needs it: at most two such files per session.
 * Reopen lists the parts S3 holds, takes the longest run 1..k that ends on
 * a local file (or exactly on the checkpoint) and carries on from there;
 * stale higher parts are overwritten or left out of the completion.
 *
 * Commit: a blob smaller than one part was never sent anywhere and is PUT
 * straight to its final key. A larger one is completed under uploads/<id>,
 * copied server-side to its final key (CopyObject; UploadPartCopy above
 * 5 GiB), and the staging object deleted: measured on RGW (docs/
 * architecture.md), the copy costs far less than the client's upload, and
 * it keeps the bucket content-addressed so fsck and GC can list it against
 * the index. A digest that is already stored drops the session instead.
 *
 * Part sizes: part_size for parts 1..growth_every, then doubling every
 * growth_every parts, so 10,000 parts reach about 1000 x part_size x 1023
 * bytes (8 TiB at 8 MiB) and no part passes 5 GiB. */
#include "blobstore_s3.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/err.h"
#include "../common/log.h"
#include "blobstore_backend.h"
#include "s3.h"

#define MIN_PART (5u << 20)    /* S3's minimum for all but the last part */
#define MAX_PARTS 10000        /* S3's maximum */
#define COPY_MAX (5ull << 30)  /* largest CopyObject; above: UploadPartCopy */
#define COPY_PART (1ull << 30) /* size of each UploadPartCopy */
#define MAX_LOCAL 8            /* local part files in a session directory */

struct s3store {
    struct s3 *s3;
    struct blobstore_s3_config cfg;
    char root[PATH_MAX];
    char index_dir[PATH_MAX];
    char sessions[PATH_MAX]; /* <root>/s3-sessions */
};

struct s3writer {
    struct blob_writer base; /* first: the front end dispatches on it */
    struct s3store *st;
    char id[128];
    char dir[PATH_MAX];         /* <root>/s3-sessions/<id> */
    char key[160];              /* uploads/<id> */
    char mpu[S3_UPLOAD_ID_MAX]; /* multipart upload id; "" until the first part */
    struct s3_part *parts;      /* parts 1..nparts, in S3 */
    size_t nparts, cap;
    uint64_t parts_end;       /* bytes in parts */
    int tail_fd;              /* local file of the part being filled; starts at parts_end */
    int tail_synced;          /* the tail file's name is durable */
    uint64_t size;            /* bytes appended */
    uint64_t ckpt, ckpt_prev; /* the last two checkpoints */
};

static const struct blobstore_backend s3_backend;

/* S3's largest part. */
#define PART_MAX (5ull << 30)

static uint64_t part_size(const struct s3store *st, size_t number)
{
    uint64_t p = st->cfg.part_size;
    size_t step = (number - 1) / st->cfg.growth_every;

    while (step-- > 0 && p < PART_MAX)
        p = p * 2 < PART_MAX ? p * 2 : PART_MAX;
    return p;
}

static void blob_key(const struct digest *d, char *key, size_t size)
{
    snprintf(key, size, "blobs/%s/%s", digest_algo_name(d->algo), digest_hex(d));
}

/* ---- blobs -------------------------------------------------------------------------- */

static int s_size(void *be, const struct digest *d, uint64_t *size)
{
    struct s3store *st = be;
    char key[256];
    int rc;

    blob_key(d, key, sizeof(key));
    rc = s3_head(st->s3, key, size);
    return rc == REG_E_NOT_FOUND ? REG_E_BLOB_UNKNOWN : rc;
}

static int s_open_read(void *be, const struct digest *d, int *fd, char **url, uint64_t *size)
{
    struct s3store *st = be;
    char key[256];

    *fd = -1;
    *size = 0; /* not asked: the caller's index knows it */
    if (!url || !st->cfg.redirect)
        return REG_E_UNSUPPORTED; /* no descriptor: the caller pulls from a reader */
    blob_key(d, key, sizeof(key));
    return s3_presign_get(st->s3, key, BLOBSTORE_S3_PRESIGN_SECONDS, url);
}

struct s3reader {
    struct blob_reader base; /* first: the front end dispatches on it */
    struct s3_stream *st;
};

static int s_reader_open(void *be, const struct digest *d, uint64_t off, uint64_t len,
                         struct blob_reader **out)
{
    struct s3store *st = be;
    struct s3reader *r = calloc(1, sizeof(*r));
    char key[256];
    int rc;

    *out = NULL;
    if (!r)
        return REG_E_NOMEM;
    r->base.ops = &s3_backend;
    blob_key(d, key, sizeof(key));
    rc = s3_stream_open(st->s3, key, off, len, &r->st);
    if (rc) {
        free(r);
        return rc == REG_E_NOT_FOUND ? REG_E_BLOB_UNKNOWN : rc;
    }
    *out = &r->base;
    return REG_OK;
}

static int s_reader_read(struct blob_reader *br, void *buf, size_t max, size_t *n)
{
    return s3_stream_read(((struct s3reader *)br)->st, buf, max, n);
}

static void s_reader_close(struct blob_reader *br)
{
    s3_stream_close(((struct s3reader *)br)->st);
    free(br);
}

struct read_ctx {
    blobstore_sink_fn fn;
    void *arg;
};

static int read_sink(void *arg, const void *data, size_t len)
{
    struct read_ctx *c = arg;

    return c->fn(c->arg, data, len);
}

static int s_read(void *be, const struct digest *d, uint64_t off, uint64_t len,
                  blobstore_sink_fn fn, void *arg)
{
    struct s3store *st = be;
    struct read_ctx c = {fn, arg};
    char key[256];
    int rc;

    blob_key(d, key, sizeof(key));
    rc = s3_get(st->s3, key, off, len, read_sink, &c);
    return rc == REG_E_NOT_FOUND ? REG_E_BLOB_UNKNOWN : rc;
}

static int s_remove(void *be, const struct digest *d)
{
    struct s3store *st = be;
    char key[256];

    blob_key(d, key, sizeof(key));
    return s3_delete(st->s3, key);
}

struct each_ctx {
    blobstore_each_fn fn;
    void *arg;
};

static int each_key(void *arg, const char *key, uint64_t size)
{
    struct each_ctx *c = arg;
    char name[DIGEST_STR_MAX + 8];
    const char *algo = key + 6, *slash = strchr(algo, '/');
    struct digest d;

    (void)size;
    if (!slash || strlen(slash + 1) > DIGEST_HEX_MAX || (size_t)(slash - algo) > 8)
        return REG_OK; /* not ours */
    snprintf(name, sizeof(name), "%.*s:%s", (int)(slash - algo), algo, slash + 1);
    if (digest_parse(name, strlen(name), &d) != REG_OK)
        return REG_OK;
    return c->fn(c->arg, &d);
}

static int s_each(void *be, blobstore_each_fn fn, void *arg)
{
    struct s3store *st = be;
    struct each_ctx c = {fn, arg};

    return s3_list(st->s3, "blobs/", each_key, &c);
}

/* ---- session files ---------------------------------------------------------------- */

static int session_dir(struct s3store *st, const char *id, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/%s", st->sessions, id);

    return n < 0 || (size_t)n >= size ? REG_E_INTERNAL : REG_OK;
}

static void local_path(const struct s3writer *w, uint64_t start, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%" PRIu64, w->dir, start);
}

/* The start offsets of the local part files, ascending; at most MAX_LOCAL. */
static int local_files(const char *dir, uint64_t *starts, size_t *n)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    *n = 0;
    if (!d)
        return errno == ENOENT ? REG_E_UPLOAD_UNKNOWN : REG_E_IO;
    while ((e = readdir(d)) != NULL) {
        char *end;
        unsigned long long v;

        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        errno = 0;
        v = strtoull(e->d_name, &end, 10);
        if (errno || *end || *n == MAX_LOCAL)
            continue;
        starts[(*n)++] = v;
    }
    closedir(d);
    for (size_t i = 1; i < *n; i++) /* insertion sort: a handful of entries */
        for (size_t j = i; j > 0 && starts[j - 1] > starts[j]; j--) {
            uint64_t t = starts[j];

            starts[j] = starts[j - 1];
            starts[j - 1] = t;
        }
    return REG_OK;
}

static int write_file_durable(const char *dir, const char *name, const char *data)
{
    char path[PATH_MAX + 32];
    int fd, rc = REG_OK;
    size_t len = strlen(data);

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return reg_errno(errno);
    if (write(fd, data, len) != (ssize_t)len || fdatasync(fd) != 0)
        rc = reg_errno(errno);
    close(fd);
    return rc ? rc : blobstore_sync_dir(dir);
}

static int read_mpu_id(const char *dir, char id[S3_UPLOAD_ID_MAX])
{
    char path[PATH_MAX + 8];
    int fd;
    ssize_t n;

    id[0] = '\0';
    snprintf(path, sizeof(path), "%s/mpu", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? REG_OK : REG_E_IO;
    n = read(fd, id, S3_UPLOAD_ID_MAX - 1);
    close(fd);
    if (n < 0)
        return REG_E_IO;
    id[n] = '\0';
    return REG_OK;
}

static int rm_session_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_MAX + 300];

    if (!d)
        return errno == ENOENT ? REG_OK : REG_E_IO;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        unlink(path);
    }
    closedir(d);
    return rmdir(dir) == 0 || errno == ENOENT ? REG_OK : REG_E_IO;
}

/* ---- writers -------------------------------------------------------------------------- */

static struct s3writer *swriter_new(struct s3store *st, const char *id)
{
    struct s3writer *w = calloc(1, sizeof(*w));

    if (!w)
        return NULL;
    w->base.ops = &s3_backend;
    w->st = st;
    w->tail_fd = -1;
    if (snprintf(w->id, sizeof(w->id), "%s", id) >= (int)sizeof(w->id) ||
        session_dir(st, id, w->dir, sizeof(w->dir)) ||
        snprintf(w->key, sizeof(w->key), "uploads/%s", id) >= (int)sizeof(w->key)) {
        free(w);
        return NULL;
    }
    return w;
}

static void swriter_free(struct s3writer *w)
{
    if (w->tail_fd >= 0)
        close(w->tail_fd);
    free(w->parts);
    free(w);
}

static int open_tail(struct s3writer *w, int create)
{
    char path[PATH_MAX + 32];

    local_path(w, w->parts_end, path, sizeof(path));
    w->tail_fd = open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0644);
    if (w->tail_fd < 0) {
        log_error("s3 session %s: open %s: %s", w->id, path, strerror(errno));
        return reg_errno(errno);
    }
    w->tail_synced = !create;
    return REG_OK;
}

/* Local files no checkpoint still needs: all but the tail and the files that
 * hold the bytes of ckpt and ckpt_prev past their last part boundary. */
static void prune_local(struct s3writer *w)
{
    uint64_t starts[MAX_LOCAL], need[2] = {0, 0};
    char path[PATH_MAX + 32];
    size_t n, i, j;
    uint64_t c[2] = {w->ckpt, w->ckpt_prev};

    for (j = 0; j < 2; j++) { /* the part boundary at or below each checkpoint */
        uint64_t end = 0;

        for (i = 0; i < w->nparts && end + w->parts[i].size <= c[j]; i++)
            end += w->parts[i].size;
        need[j] = end;
    }
    if (local_files(w->dir, starts, &n))
        return;
    for (i = 0; i < n; i++) {
        if (starts[i] == w->parts_end || starts[i] == need[0] || starts[i] == need[1])
            continue;
        local_path(w, starts[i], path, sizeof(path));
        unlink(path);
    }
}

/* The tail is full: send it as the next part and start a new tail. */
static int flush_part(struct s3writer *w)
{
    uint64_t len = w->size - w->parts_end;
    struct s3_part p;
    int rc;

    if (w->nparts == MAX_PARTS)
        return REG_E_TOO_LARGE;
    if (!w->mpu[0]) {
        rc = s3_mpu_create(w->st->s3, w->key, w->mpu);
        /* Its id must be found again after a restart before any part that a
         * checkpoint may count on is in it. */
        if (!rc)
            rc = write_file_durable(w->dir, "mpu", w->mpu);
        if (rc) {
            w->mpu[0] = '\0';
            return rc;
        }
    }
    memset(&p, 0, sizeof(p));
    p.number = (int)w->nparts + 1;
    p.size = len;
    rc = s3_mpu_part(w->st->s3, w->key, w->mpu, p.number, w->tail_fd, 0, len, p.etag);
    if (rc)
        return rc;
    if (w->nparts == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 16;
        struct s3_part *g = realloc(w->parts, cap * sizeof(*g));

        if (!g)
            return REG_E_NOMEM;
        w->parts = g;
        w->cap = cap;
    }
    w->parts[w->nparts++] = p;
    close(w->tail_fd);
    w->tail_fd = -1;
    w->parts_end += len;
    rc = open_tail(w, 1);
    prune_local(w);
    return rc;
}

static int write_at(int fd, const char *p, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return reg_errno(errno);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return REG_OK;
}

static int s_append(struct blob_writer *bw, const void *data, size_t len)
{
    struct s3writer *w = (struct s3writer *)bw;
    const char *p = data;
    int rc = REG_OK;

    while (!rc && len > 0) {
        uint64_t room = part_size(w->st, w->nparts + 1) - (w->size - w->parts_end);
        size_t n = room < len ? (size_t)room : len;

        rc = write_at(w->tail_fd, p, n, w->size - w->parts_end);
        if (rc)
            break;
        w->size += n;
        p += n;
        len -= n;
        if (w->size - w->parts_end == part_size(w->st, w->nparts + 1))
            rc = flush_part(w);
    }
    return rc;
}

static int s_checkpoint(struct blob_writer *bw)
{
    struct s3writer *w = (struct s3writer *)bw;

    if (fdatasync(w->tail_fd) != 0)
        return reg_errno(errno);
    if (!w->tail_synced) {
        if (blobstore_sync_dir(w->dir) != REG_OK)
            return REG_E_IO;
        w->tail_synced = 1;
    }
    if (w->ckpt != w->size) {
        w->ckpt_prev = w->ckpt;
        w->ckpt = w->size;
    }
    prune_local(w);
    return REG_OK;
}

/* Take the session back to keep bytes from parts[0..nparts) and the local
 * files: the longest run of parts that ends on keep or on a local file that
 * reaches keep. Takes parts. */
static int restore(struct s3writer *w, struct s3_part *parts, size_t nparts, uint64_t keep)
{
    uint64_t starts[MAX_LOCAL], ends[MAX_PARTS + 1], have = 0;
    char path[PATH_MAX + 32];
    size_t nl, k, i;
    int rc = local_files(w->dir, starts, &nl), found = 0;

    if (w->tail_fd >= 0) {
        close(w->tail_fd);
        w->tail_fd = -1;
    }
    if (rc) {
        free(parts);
        return rc;
    }
    ends[0] = 0;
    for (k = 0; k < nparts && k < MAX_PARTS; k++) {
        if (parts[k].number != (int)k + 1)
            break; /* a gap: nothing past it counts */
        ends[k + 1] = ends[k] + parts[k].size;
    }
    nparts = k;
    for (k = nparts + 1; k-- > 0 && !found;) {
        if (ends[k] > keep)
            continue;
        if (ends[k] == keep) {
            found = 1;
            have = 0;
            break;
        }
        for (i = 0; i < nl; i++) {
            struct stat st;

            if (starts[i] != ends[k])
                continue;
            local_path(w, starts[i], path, sizeof(path));
            if (stat(path, &st) == 0 && (uint64_t)st.st_size >= keep - ends[k]) {
                found = 1;
                have = keep - ends[k];
            }
        }
        if (found)
            break;
    }
    if (!found) {
        log_error("s3 session %s: no parts and local bytes reach its checkpoint at %" PRIu64, w->id,
                  keep);
        free(parts);
        return REG_E_UPLOAD_UNKNOWN;
    }
    free(w->parts);
    w->parts = parts;
    w->nparts = k;
    w->cap = nparts;
    w->parts_end = ends[k];
    w->size = keep;
    w->ckpt = w->ckpt_prev = keep;
    rc = open_tail(w, have == 0);
    if (!rc && have > 0 && ftruncate(w->tail_fd, (off_t)have) != 0)
        rc = REG_E_IO;
    if (!rc)
        w->tail_synced = 1;
    if (!rc)
        prune_local(w);
    return rc;
}

static int s_writer_create(void *be, const char *id, struct blob_writer **out)
{
    struct s3writer *w = swriter_new(be, id);
    int rc;

    *out = NULL;
    if (!w)
        return REG_E_NOMEM;
    if (mkdir(w->dir, 0755) != 0) {
        rc = errno == EEXIST ? REG_E_INTERNAL : reg_errno(errno);
        log_error("s3 session %s: mkdir %s: %s", id, w->dir, strerror(errno));
        free(w);
        return rc;
    }
    rc = open_tail(w, 1);
    if (rc) {
        rm_session_dir(w->dir);
        swriter_free(w);
        return rc;
    }
    *out = &w->base;
    return REG_OK;
}

static int s_writer_reopen(void *be, const char *id, uint64_t keep, struct blob_writer **out)
{
    struct s3store *st = be;
    struct s3writer *w = swriter_new(st, id);
    struct s3_part *parts = NULL;
    size_t n = 0;
    int rc;

    *out = NULL;
    if (!w)
        return REG_E_NOMEM;
    if (keep == 0 && mkdir(w->dir, 0755) != 0 && errno != EEXIST) {
        rc = reg_errno(errno);
        goto out;
    }
    rc = read_mpu_id(w->dir, w->mpu);
    if (!rc && w->mpu[0]) {
        rc = s3_mpu_parts(st->s3, w->key, w->mpu, &parts, &n);
        if (rc == REG_E_NOT_FOUND) {
            log_error("s3 session %s: its multipart upload is gone", id);
            rc = REG_E_UPLOAD_UNKNOWN;
        }
    }
    if (!rc)
        rc = restore(w, parts, n, keep);
out:
    if (rc) {
        swriter_free(w);
        return rc;
    }
    *out = &w->base;
    return REG_OK;
}

static int s_truncate(struct blob_writer *bw, uint64_t size)
{
    struct s3writer *w = (struct s3writer *)bw;
    struct s3_part *copy = NULL;

    if (size > w->size)
        return REG_E_INTERNAL;
    if (w->nparts) {
        copy = malloc(w->nparts * sizeof(*copy));
        if (!copy)
            return REG_E_NOMEM;
        memcpy(copy, w->parts, w->nparts * sizeof(*copy));
    }
    return restore(w, copy, w->nparts, size);
}

static int s_pread(struct blob_writer *bw, uint64_t off, void *buf, size_t len, size_t *n)
{
    struct s3writer *w = (struct s3writer *)bw;
    ssize_t r;

    *n = 0;
    if (off >= w->size)
        return REG_OK;
    if (off < w->parts_end) {
        /* The bytes of an unfinished multipart upload cannot be read back. */
        log_error("s3 session %s: cannot read back bytes already sent to S3", w->id);
        return REG_E_UNSUPPORTED;
    }
    if (len > w->size - off)
        len = (size_t)(w->size - off);
    do
        r = pread(w->tail_fd, buf, len, (off_t)(off - w->parts_end));
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return REG_E_IO;
    *n = (size_t)r;
    return REG_OK;
}

/* Copy a completed staging object above CopyObject's limit, in parts. */
static int copy_large(struct s3store *st, const char *src, const char *dst, uint64_t size)
{
    char id[S3_UPLOAD_ID_MAX];
    struct s3_part *parts;
    size_t n = (size_t)((size + COPY_PART - 1) / COPY_PART), i;
    int rc = s3_mpu_create(st->s3, dst, id);

    if (rc)
        return rc;
    parts = calloc(n, sizeof(*parts));
    if (!parts) {
        s3_mpu_abort(st->s3, dst, id);
        return REG_E_NOMEM;
    }
    for (i = 0; !rc && i < n; i++) {
        uint64_t off = i * COPY_PART, len = size - off < COPY_PART ? size - off : COPY_PART;

        parts[i].number = (int)i + 1;
        parts[i].size = len;
        rc = s3_mpu_part_copy(st->s3, dst, id, (int)i + 1, src, off, len, parts[i].etag);
    }
    if (!rc)
        rc = s3_mpu_complete(st->s3, dst, id, parts, n);
    if (rc)
        s3_mpu_abort(st->s3, dst, id);
    free(parts);
    return rc;
}

static int s_commit(void *be, struct blob_writer *bw, const struct digest *d)
{
    struct s3store *st = be;
    struct s3writer *w = (struct s3writer *)bw;
    char key[256];
    uint64_t have;
    int rc;

    blob_key(d, key, sizeof(key));
    rc = s3_head(st->s3, key, &have);
    if (rc == REG_OK) { /* deduplication: the bytes are there already */
        if (w->mpu[0])
            s3_mpu_abort(st->s3, w->key, w->mpu);
        rm_session_dir(w->dir);
        return REG_OK;
    }
    if (rc != REG_E_NOT_FOUND)
        return rc;
    if (!w->mpu[0]) {
        /* Never reached a part: one PUT to the final key. */
        rc = s3_put(st->s3, key, w->tail_fd, 0, w->size);
    } else {
        uint64_t len = w->size - w->parts_end;

        if (len > 0 || w->nparts == 0) {
            rc = flush_part(w); /* the last part may be short */
            if (rc)
                return rc;
        }
        rc = s3_mpu_complete(st->s3, w->key, w->mpu, w->parts, w->nparts);
        if (!rc)
            rc = w->size > COPY_MAX ? copy_large(st, w->key, key, w->size)
                                    : s3_copy(st->s3, w->key, key);
        if (!rc)
            rc = s3_delete(st->s3, w->key);
    }
    if (rc)
        return rc;
    rm_session_dir(w->dir);
    return REG_OK;
}

static void s_writer_close(struct blob_writer *bw, int discard)
{
    struct s3writer *w = (struct s3writer *)bw;

    if (discard) {
        if (w->mpu[0] && s3_mpu_abort(w->st->s3, w->key, w->mpu) != REG_OK)
            log_warn("s3 session %s: abort failed; GC will retry", w->id);
        rm_session_dir(w->dir);
    }
    swriter_free(w);
}

static int s_writer_size(void *be, const char *id, uint64_t *size)
{
    struct s3store *st = be;
    char dir[PATH_MAX], mpu[S3_UPLOAD_ID_MAX], key[160], path[PATH_MAX + 32];
    uint64_t starts[MAX_LOCAL];
    struct s3_part *parts = NULL;
    size_t n = 0, i;
    struct stat sb;
    int rc = session_dir(st, id, dir, sizeof(dir));

    *size = 0;
    if (!rc)
        rc = local_files(dir, starts, &n);
    if (rc)
        return rc;
    if (n > 0) { /* the tail is the file that starts last */
        snprintf(path, sizeof(path), "%s/%" PRIu64, dir, starts[n - 1]);
        if (stat(path, &sb) == 0)
            *size = (uint64_t)sb.st_size;
    }
    rc = read_mpu_id(dir, mpu);
    if (!rc && mpu[0]) {
        snprintf(key, sizeof(key), "uploads/%s", id);
        if (s3_mpu_parts(st->s3, key, mpu, &parts, &n) == REG_OK)
            for (i = 0; i < n; i++)
                *size += parts[i].size;
        free(parts);
    }
    return rc;
}

struct abort_ctx {
    struct s3store *st;
    const char *key;
};

static int abort_one(void *arg, const char *key, const char *id)
{
    struct abort_ctx *c = arg;

    if (strcmp(key, c->key) == 0)
        s3_mpu_abort(c->st->s3, key, id);
    return REG_OK;
}

static int s_writer_remove(void *be, const char *id, uint64_t *bytes)
{
    struct s3store *st = be;
    char dir[PATH_MAX], mpu[S3_UPLOAD_ID_MAX], key[160];
    int rc = session_dir(st, id, dir, sizeof(dir));

    *bytes = 0;
    if (rc)
        return rc;
    s_writer_size(be, id, bytes);
    snprintf(key, sizeof(key), "uploads/%s", id);
    rc = read_mpu_id(dir, mpu);
    if (!rc && mpu[0]) {
        rc = s3_mpu_abort(st->s3, key, mpu);
    } else if (!rc) {
        /* No local record of it (a crash, or another data root's): find
         * every upload of the key. */
        struct abort_ctx c = {st, key};

        rc = s3_mpu_list(st->s3, key, abort_one, &c);
    }
    /* A crash between completion and copy leaves the staging object. */
    if (!rc)
        rc = s3_delete(st->s3, key);
    if (!rc)
        rc = rm_session_dir(dir);
    return rc;
}

struct writers_ctx {
    struct s3store *st;
    blobstore_writer_fn fn;
    void *arg;
};

/* A multipart upload without a local session directory: a leftover. */
static int each_orphan_upload(void *arg, const char *key, const char *id)
{
    struct writers_ctx *c = arg;
    char dir[PATH_MAX];
    struct stat sb;
    const char *sid = key + strlen("uploads/");

    (void)id;
    if (strchr(sid, '/') || session_dir(c->st, sid, dir, sizeof(dir)) || stat(dir, &sb) == 0)
        return REG_OK;
    return c->fn(c->arg, sid);
}

static int s_each_writer(void *be, blobstore_writer_fn fn, void *arg)
{
    struct s3store *st = be;
    struct writers_ctx c = {st, fn, arg};
    DIR *d = opendir(st->sessions);
    struct dirent *e;
    int rc = REG_OK;

    if (!d)
        return REG_E_IO;
    while (!rc && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            rc = fn(arg, e->d_name);
    closedir(d);
    if (!rc)
        rc = s3_mpu_list(st->s3, "uploads/", each_orphan_upload, &c);
    return rc;
}

static int s_export(void *be, void *dst, const struct digest *d, int *copied)
{
    (void)be;
    (void)dst;
    (void)d;
    *copied = 0;
    return REG_E_UNSUPPORTED; /* back up a bucket with the object store's own tools */
}

static int s_sync(void *be)
{
    (void)be;
    return REG_OK;
}

static void s_close(void *be)
{
    struct s3store *st = be;

    if (!st)
        return;
    s3_free(st->s3);
    free(st);
}

static const char *s_index_dir(void *be)
{
    return ((struct s3store *)be)->index_dir;
}

static const struct blobstore_backend s3_backend = {
    .name = "s3",
    .close = s_close,
    .index_dir = s_index_dir,
    .open_read = s_open_read,
    .read = s_read,
    .reader_open = s_reader_open,
    .reader_read = s_reader_read,
    .reader_close = s_reader_close,
    .size = s_size,
    .remove = s_remove,
    .each = s_each,
    .writer_create = s_writer_create,
    .writer_reopen = s_writer_reopen,
    .append = s_append,
    .truncate = s_truncate,
    .checkpoint = s_checkpoint,
    .pread = s_pread,
    .commit = s_commit,
    .writer_close = s_writer_close,
    .writer_remove = s_writer_remove,
    .writer_size = s_writer_size,
    .each_writer = s_each_writer,
    .export = s_export,
    .sync = s_sync,
};

int blobstore_s3_open(const char *root, const struct blobstore_s3_config *cfg,
                      const struct blobstore_backend **ops, void **be)
{
    struct s3store *st = calloc(1, sizeof(*st));
    char path[PATH_MAX];
    int rc = REG_E_NOMEM;

    *ops = &s3_backend;
    *be = NULL;
    if (!st)
        return rc;
    st->cfg = *cfg;
    if (st->cfg.part_size == 0)
        st->cfg.part_size = BLOBSTORE_S3_PART_SIZE;
    if (st->cfg.growth_every == 0)
        st->cfg.growth_every = 1000;
    rc = REG_E_CONFIG;
    if (st->cfg.part_size < MIN_PART || st->cfg.part_size > (1ull << 30)) {
        log_error("s3: part_size must be between 5 MiB and 1 GiB");
        goto out;
    }
    if (snprintf(st->root, sizeof(st->root), "%s", root) >= (int)sizeof(st->root) ||
        snprintf(st->index_dir, sizeof(st->index_dir), "%s/index", root) >=
            (int)sizeof(st->index_dir) ||
        snprintf(st->sessions, sizeof(st->sessions), "%s/s3-sessions", root) >=
            (int)sizeof(st->sessions))
        goto out;
    snprintf(path, sizeof(path), "%s", root);
    if ((mkdir(path, 0755) != 0 && errno != EEXIST) ||
        (mkdir(st->index_dir, 0755) != 0 && errno != EEXIST) ||
        (mkdir(st->sessions, 0755) != 0 && errno != EEXIST)) {
        log_error("s3: mkdir under %s: %s", root, strerror(errno));
        rc = REG_E_IO;
        goto out;
    }
    rc = s3_new(&cfg->s3, &st->s3);
    if (rc) {
        log_error("s3: unusable endpoint or bucket (endpoint %s, bucket %s)", cfg->s3.endpoint,
                  cfg->s3.bucket);
        goto out;
    }
    rc = s3_bucket_check(st->s3);
    if (rc == REG_E_NOT_FOUND) {
        log_error("s3: bucket %s does not exist at %s", cfg->s3.bucket, cfg->s3.endpoint);
        rc = REG_E_CONFIG;
    } else if (rc == REG_E_CONFIG) {
        log_error("s3: %s refuses access to bucket %s: check access_key, secret_key and region",
                  cfg->s3.endpoint, cfg->s3.bucket);
    } else if (rc) {
        log_error("s3: cannot reach bucket %s at %s", cfg->s3.bucket, cfg->s3.endpoint);
        rc = REG_E_CONFIG;
    }
out:
    if (rc) {
        s_close(st);
        st = NULL;
    }
    *be = st;
    return rc;
}

uint64_t blobstore_s3_requests(void *be)
{
    return s3_requests(((struct s3store *)be)->s3);
}
