#include "gc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "../common/array.h"
#include "../common/err.h"
#include "../common/log.h"
#include "evict.h"

/* Removals per write transaction: few enough that pushes waiting for the
 * write lock wait milliseconds, many enough that a big run is not one
 * fsync per item. */
#define GC_BATCH 256
/* Passes over untagged manifests: deleting an index can free its children. */
#define GC_MANIFEST_PASSES 16

/* A growable list of (repo, digest) pairs, or of digests (repo ""). The
 * repository name is allocated only when there is one: blob lists can be
 * long. */
struct item {
    char *repo; /* NULL for none */
    char digest[DIGEST_STR_MAX];
    uint64_t size;
};

struct items {
    struct item *v;
    size_t n, cap;
};

static int items_add(struct items *l, const char *repo, const char *digest, uint64_t size)
{
    struct item *it;

    if (strlen(digest) >= sizeof(l->v->digest))
        return REG_OK; /* not a name we store */
    if (array_reserve(&l->v, &l->cap, l->n, sizeof(*l->v)))
        return REG_E_NOMEM;
    it = &l->v[l->n];
    it->repo = NULL;
    if (repo[0] && (it->repo = strdup(repo)) == NULL)
        return REG_E_NOMEM;
    snprintf(it->digest, sizeof(it->digest), "%s", digest);
    it->size = size;
    l->n++;
    return REG_OK;
}

static void items_free(struct items *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i].repo);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* ---- untagged manifests ------------------------------------------------- */

struct mctx {
    struct index_txn *t;
    int64_t cutoff;
    struct items found;
};

/* Nothing needs it: no tag, no index of the repository lists it, and it
 * refers to no subject the repository holds; and it is older than grace. */
static int manifest_unneeded(struct index_txn *t, const char *repo, const char *digest,
                             const struct index_manifest *m, int64_t cutoff)
{
    struct index_manifest subj;
    char user[DIGEST_STR_MAX + 16];
    int rc;

    if (m->created > cutoff)
        return 0;
    rc = index_manifest_tagged(t, repo, digest);
    if (rc != REG_E_MANIFEST_UNKNOWN)
        return 0;
    rc = index_in_use(t, repo, digest, user, sizeof(user));
    if (rc != REG_OK)
        return 0;
    if (m->subject[0] && index_get_manifest(t, repo, m->subject, &subj) != REG_E_MANIFEST_UNKNOWN)
        return 0;
    return 1;
}

static int collect_manifest(void *arg, const char *repo, const char *digest,
                            const struct index_manifest *m, const char *refs, size_t refs_len)
{
    struct mctx *c = arg;

    (void)refs;
    (void)refs_len;
    if (!manifest_unneeded(c->t, repo, digest, m, c->cutoff))
        return REG_OK;
    return items_add(&c->found, repo, digest, m->size);
}

static int remove_manifests(struct index *ix, const struct items *l, int64_t cutoff,
                            uint64_t *removed)
{
    struct index_txn *t = NULL;
    struct index_manifest m;
    size_t i = 0, end;
    uint64_t batch;
    int rc = REG_OK;

    while (!rc && i < l->n) {
        end = i + GC_BATCH < l->n ? i + GC_BATCH : l->n;
        batch = 0;
        rc = index_begin(ix, INDEX_WRITE_FREEING, &t);
        if (rc)
            break;
        for (; !rc && i < end; i++) {
            /* Again, inside the write: a push may have tagged it since. */
            rc = index_get_manifest(t, l->v[i].repo, l->v[i].digest, &m);
            if (rc == REG_E_MANIFEST_UNKNOWN) {
                rc = REG_OK;
                continue;
            }
            if (!rc && manifest_unneeded(t, l->v[i].repo, l->v[i].digest, &m, cutoff)) {
                rc = index_delete_manifest(t, l->v[i].repo, l->v[i].digest);
                batch++;
            }
        }
        rc = index_end(t, rc);
        if (!rc)
            *removed += batch;
    }
    return rc;
}

static int gc_manifests(struct index *ix, int64_t cutoff, int dry, struct gc_stats *out)
{
    struct mctx c;
    uint64_t before;
    int pass, rc = REG_OK;

    for (pass = 0; !rc && pass < GC_MANIFEST_PASSES; pass++) {
        memset(&c, 0, sizeof(c));
        c.cutoff = cutoff;
        rc = index_begin(ix, INDEX_READ, &c.t);
        if (rc)
            break;
        rc = index_each_manifest(c.t, collect_manifest, &c);
        index_abort(c.t);
        before = out->manifests;
        if (!rc && dry)
            out->manifests += c.found.n;
        else if (!rc)
            rc = remove_manifests(ix, &c.found, cutoff, &out->manifests);
        items_free(&c.found);
        if (dry || out->manifests == before)
            break;
    }
    return rc;
}

/* ---- blobs ---------------------------------------------------------------- */

/* Candidates gathered per pass: bounds GC's memory on huge stores. */
#define GC_PASS_MAX 65536

struct bctx {
    int64_t cutoff;
    struct items found;
    char last[DIGEST_STR_MAX]; /* where a full pass stopped; "" when done */
    int full;                  /* the pass stopped at GC_PASS_MAX */
};

static int collect_blob(void *arg, const char *digest, const struct index_blob *b)
{
    struct bctx *c = arg;

    if (c->found.n == GC_PASS_MAX) {
        c->full = 1;
        return -1; /* stop: the next pass goes on after c->last */
    }
    snprintf(c->last, sizeof(c->last), "%s", digest);
    if (b->refcount > 0 || b->touched > c->cutoff)
        return REG_OK;
    return items_add(&c->found, "", digest, b->size);
}

/* One batch: forget the blobs in one write, then remove their files, all
 * under the exclusive lock so that no commit of the same digest slips in
 * between the record and the file. */
static int remove_blobs(struct blobstore *bs, struct index *ix, struct item *v, size_t n,
                        int64_t cutoff, struct gc_stats *out)
{
    struct index_txn *t = NULL;
    struct index_blob b;
    struct digest d;
    size_t i;
    int rc, *gone = calloc(n, sizeof(int));

    if (!gone)
        return REG_E_NOMEM;
    blobstore_lock_exclusive(bs);
    rc = index_begin(ix, INDEX_WRITE_FREEING, &t);
    for (i = 0; !rc && i < n; i++) {
        rc = index_get_blob(t, v[i].digest, &b);
        if (rc == REG_E_BLOB_UNKNOWN) {
            rc = REG_OK;
            continue;
        }
        if (rc || b.refcount > 0 || b.touched > cutoff)
            continue; /* referenced or pushed again meanwhile */
        rc = index_remove_blob(t, v[i].digest);
        gone[i] = 1;
    }
    if (t)
        rc = index_end(t, rc);
    for (i = 0; !rc && i < n; i++) {
        if (!gone[i] || digest_parse(v[i].digest, strlen(v[i].digest), &d) != REG_OK)
            continue;
        /* The record is gone: a crash from here leaves only an orphan file,
         * which the next run removes. */
        if (blobstore_delete(bs, &d) != REG_OK)
            log_warn("gc: cannot remove the file of %s", d.str);
        out->blobs++;
        out->blob_bytes += v[i].size;
    }
    blobstore_unlock(bs);
    free(gone);
    return rc;
}

static int gc_blobs(struct blobstore *bs, struct index *ix, int64_t cutoff, int dry,
                    struct gc_stats *out)
{
    struct bctx c;
    struct index_txn *t = NULL;
    char after[DIGEST_STR_MAX] = "";
    size_t i, n;
    int rc, full;

    do {
        memset(&c, 0, sizeof(c));
        c.cutoff = cutoff;
        rc = index_begin(ix, INDEX_READ, &t);
        if (rc)
            return rc;
        rc = index_each_blob_after(t, after[0] ? after : NULL, collect_blob, &c);
        index_abort(t);
        full = c.full;
        rc = full ? REG_OK : rc;
        for (i = 0; !rc && i < c.found.n; i += n) {
            n = c.found.n - i < GC_BATCH ? c.found.n - i : GC_BATCH;
            if (dry) {
                size_t k;

                for (k = i; k < i + n; k++)
                    out->blob_bytes += c.found.v[k].size;
                out->blobs += n;
                continue;
            }
            rc = remove_blobs(bs, ix, c.found.v + i, n, cutoff, out);
        }
        items_free(&c.found);
        snprintf(after, sizeof(after), "%s", c.last);
    } while (!rc && full);
    return rc;
}

/* ---- empty repositories ------------------------------------------------- */

static int collect_repo(void *arg, const char *repo, const char *unused, const void *v, size_t len)
{
    (void)unused;
    (void)v;
    (void)len;
    return items_add(arg, repo, "", 0);
}

static int gc_repos(struct index *ix, int dry, struct gc_stats *out)
{
    struct items l = {NULL, 0, 0};
    struct index_txn *t = NULL;
    size_t i;
    int rc = index_begin(ix, INDEX_READ, &t), empty;

    if (rc)
        return rc;
    rc = index_each_repo(t, collect_repo, &l);
    for (i = 0; !rc && i < l.n; i++) {
        empty = index_repo_empty(t, l.v[i].repo);
        if (empty != REG_OK && empty != REG_E_NOT_FOUND)
            rc = empty;
        l.v[i].size = empty == REG_OK;
    }
    index_abort(t);
    t = NULL;
    if (!rc && !dry)
        rc = index_begin(ix, INDEX_WRITE_FREEING, &t);
    for (i = 0; !rc && i < l.n; i++) {
        if (!l.v[i].size)
            continue;
        if (t && index_repo_empty(t, l.v[i].repo) != REG_OK)
            continue; /* a push arrived meanwhile */
        if (t)
            rc = index_drop_repo(t, l.v[i].repo);
        out->repos++;
    }
    if (t)
        rc = index_end(t, rc);
    items_free(&l);
    return rc;
}

/* ---- files no index entry names ------------------------------------------ */

struct octx {
    struct blobstore *bs;
    struct index_txn *t;
    struct items found;
};

static int collect_orphan(void *arg, const struct digest *d)
{
    struct octx *c = arg;
    struct index_blob b;
    uint64_t size = 0;
    int rc = index_get_blob(c->t, d->str, &b);

    if (rc != REG_E_BLOB_UNKNOWN)
        return rc;
    blobstore_size(c->bs, d, &size);
    return items_add(&c->found, "", d->str, size);
}

static int gc_orphans(struct blobstore *bs, struct index *ix, int dry, struct gc_stats *out)
{
    struct octx c;
    struct index_blob b;
    struct digest d;
    size_t i;
    int rc;

    memset(&c, 0, sizeof(c));
    c.bs = bs;
    rc = index_begin(ix, INDEX_READ, &c.t);
    if (rc)
        return rc;
    rc = blobstore_each(bs, collect_orphan, &c);
    index_abort(c.t);
    c.t = NULL;
    if (!rc && c.found.n && !dry) {
        /* A commit holds the store shared from its rename to its record:
         * under the exclusive lock, a file still without a record has no
         * commit on its way. */
        blobstore_lock_exclusive(bs);
        rc = index_begin(ix, INDEX_READ, &c.t);
        for (i = 0; !rc && i < c.found.n; i++) {
            if (index_get_blob(c.t, c.found.v[i].digest, &b) != REG_E_BLOB_UNKNOWN ||
                digest_parse(c.found.v[i].digest, strlen(c.found.v[i].digest), &d) != REG_OK)
                continue;
            if (blobstore_delete(bs, &d) == REG_OK) {
                out->orphans++;
                out->orphan_bytes += c.found.v[i].size;
            }
        }
        index_abort(c.t);
        blobstore_unlock(bs);
    } else if (!rc) {
        for (i = 0; i < c.found.n; i++)
            out->orphan_bytes += c.found.v[i].size;
        out->orphans += c.found.n;
    }
    items_free(&c.found);
    return rc;
}

/* ---- the run ---------------------------------------------------------------- */

static int lock_path(const char *root, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%s/gc.lock", root);

    return (n < 0 || (size_t)n >= size) ? -1 : 0;
}

int gc_pause(const char *root)
{
    char path[PATH_MAX];
    int fd;

    if (lock_path(root, path, sizeof(path)))
        return -1;
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    if (flock(fd, LOCK_SH) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

void gc_resume(int fd)
{
    if (fd >= 0)
        close(fd);
}

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int gc_run(const char *root, struct blobstore *bs, struct index *ix, struct uploads *us,
           const struct gc_opts *o, struct gc_stats *out)
{
    char path[PATH_MAX];
    double start = now_seconds();
    int64_t now = (int64_t)time(NULL);
    int rc = REG_OK, fd = -1;

    memset(out, 0, sizeof(*out));
    if (!o->dry_run) {
        if (lock_path(root, path, sizeof(path)))
            return REG_E_CONFIG;
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0)
            return reg_errno(errno);
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            close(fd);
            out->skipped = 1;
            return REG_OK; /* a backup is copying files: next time */
        }
    }
    if (o->evict)
        rc = evict_run(o->evict, o->dry_run, &out->evicted, &out->evicted_manifests);
    if (!rc && o->untagged_delete)
        rc = gc_manifests(ix, now - o->grace, o->dry_run, out);
    if (!rc)
        rc = gc_blobs(bs, ix, now - o->grace, o->dry_run, out);
    if (!rc)
        rc = gc_repos(ix, o->dry_run, out);
    if (!rc && us)
        rc = uploads_gc(us, now - o->upload_ttl, o->dry_run, &out->uploads);
    if (!rc)
        rc = gc_orphans(bs, ix, o->dry_run, out);
    if (fd >= 0)
        close(fd);
    out->seconds = now_seconds() - start;
    return rc;
}

void gc_format(const struct gc_stats *s, int dry, char *buf, size_t size)
{
    if (s->skipped) {
        snprintf(buf, size, "gc: a backup is running; this run is skipped");
        return;
    }
    snprintf(buf, size,
             "gc%s: %s %llu manifests, %llu blobs (%llu bytes), %llu empty repositories, "
             "%llu upload sessions and %llu stray upload files (%llu bytes), "
             "%llu orphan blob files (%llu bytes), %llu cached repositories evicted (%llu "
             "manifests) in %.3f s",
             dry ? " (dry run)" : "", dry ? "would free" : "freed",
             (unsigned long long)s->manifests, (unsigned long long)s->blobs,
             (unsigned long long)s->blob_bytes, (unsigned long long)s->repos,
             (unsigned long long)s->uploads.sessions, (unsigned long long)s->uploads.files,
             (unsigned long long)s->uploads.bytes, (unsigned long long)s->orphans,
             (unsigned long long)s->orphan_bytes, (unsigned long long)s->evicted,
             (unsigned long long)s->evicted_manifests, s->seconds);
}
