#include "fsck.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/array.h"
#include "../common/err.h"
#include "../common/log.h"
#include "../storage/digest.h"

#define HASH_BUF (1u << 20)

/* Things to fix, found by the read-only pass. */
struct fix {
    char a[INDEX_NAME_MAX + 1]; /* repository, or "" */
    char b[DIGEST_STR_MAX];     /* digest, tag or uuid */
    int kind;
};

enum { FIX_BLOB_RECORD, FIX_BLOB_FILE, FIX_ORPHAN, FIX_TAG, FIX_MANIFEST, FIX_UPLOAD };

struct fsck {
    struct blobstore *bs;
    struct index *ix; /* for a fresh look when the snapshot is behind */
    struct index_txn *t;
    FILE *out;
    int progress;
    struct fsck_result *res;
    struct fix *fixes;
    size_t nfixes, cap;
    int recount; /* reference counts need rewriting */
    uint64_t total_bytes;
    char *buf;
};

static double now_seconds(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void problem(struct fsck *f, const char *advice, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(struct fsck *f, const char *advice, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* What a crash leaves by design (bytes without a record, a record whose
 * bytes became a blob): harmless, and GC removes it. Not a problem. */
static void note(struct fsck *f, const char *advice, const char *fmt, ...)
{
    va_list ap;

    f->res->leftovers++;
    fputs("note: ", f->out);
    va_start(ap, fmt);
    vfprintf(f->out, fmt, ap);
    va_end(ap);
    fprintf(f->out, "\n  %s\n", advice);
}

static void problem(struct fsck *f, const char *advice, const char *fmt, ...)
{
    va_list ap;

    f->res->problems++;
    fputs("problem: ", f->out);
    va_start(ap, fmt);
    vfprintf(f->out, fmt, ap);
    va_end(ap);
    fprintf(f->out, "\n  fix: %s\n", advice);
}

static int add_fix(struct fsck *f, int kind, const char *a, const char *b)
{
    if (array_reserve(&f->fixes, &f->cap, f->nfixes, sizeof(*f->fixes)))
        return REG_E_NOMEM;
    f->fixes[f->nfixes].kind = kind;
    snprintf(f->fixes[f->nfixes].a, sizeof(f->fixes->a), "%s", a);
    snprintf(f->fixes[f->nfixes].b, sizeof(f->fixes->b), "%s", b);
    f->nfixes++;
    return REG_OK;
}

/* ---- blobs: record -> file, rehashed ------------------------------------ */

static int sum_sizes(void *arg, const char *digest, const struct index_blob *b)
{
    (void)digest;
    *(uint64_t *)arg += b->size;
    return REG_OK;
}

/* REG_OK when the blob's bytes hash to d; REG_E_DIGEST_INVALID when not.
 * Through a reader, so the same code rehashes files and S3 objects (one
 * GET per blob). */
static int rehash(struct fsck *f, struct blob_reader *r, const struct digest *d, uint64_t *len)
{
    struct hasher h;
    struct digest got;
    size_t n;
    int rc;

    *len = 0;
    hasher_init(&h, d->algo);
    for (;;) {
        rc = blob_reader_read(r, f->buf, HASH_BUF, &n);
        if (rc)
            return rc;
        if (n == 0)
            break;
        hasher_update(&h, f->buf, n);
        *len += (uint64_t)n;
        f->res->bytes += (uint64_t)n;
    }
    hasher_peek(&h, &got);
    return strcmp(got.str, d->str) == 0 ? REG_OK : REG_E_DIGEST_INVALID;
}

/* Whether the blob's record is gone in a fresh read: beside a live server,
 * GC may remove a blob after fsck's snapshot was taken. */
static int removed_since(struct fsck *f, const char *digest)
{
    struct index_txn *t = NULL;
    struct index_blob b;
    int rc;

    if (index_begin(f->ix, INDEX_READ, &t) != REG_OK)
        return 0;
    rc = index_get_blob(t, digest, &b);
    index_abort(t);
    return rc == REG_E_BLOB_UNKNOWN;
}

static int check_blob(void *arg, const char *digest, const struct index_blob *b)
{
    struct fsck *f = arg;
    struct digest d;
    struct blob_reader *r = NULL;
    uint64_t len;
    int rc;

    if (digest_parse(digest, strlen(digest), &d) != REG_OK) {
        problem(f, "fsck --repair drops the record", "blob record with a bad name: %s", digest);
        return add_fix(f, FIX_BLOB_RECORD, "", digest);
    }
    rc = blobstore_reader_open(f->bs, &d, 0, 0, &r);
    if (rc == REG_E_BLOB_UNKNOWN && removed_since(f, digest))
        return REG_OK; /* a live server's GC took it after our snapshot */
    if (rc == REG_E_BLOB_UNKNOWN) {
        problem(f, "fsck --repair drops the record; push the images that need it again",
                "blob %s is in the index but its file is missing", digest);
        return add_fix(f, FIX_BLOB_RECORD, "", digest);
    }
    if (rc)
        return rc;
    rc = rehash(f, r, &d, &len);
    blob_reader_close(r);
    f->res->blobs++;
    if (f->progress)
        fprintf(stderr, "\rfsck: rehashed %llu blobs, %llu of %llu MiB",
                (unsigned long long)f->res->blobs, (unsigned long long)(f->res->bytes >> 20),
                (unsigned long long)(f->total_bytes >> 20));
    if (rc == REG_E_DIGEST_INVALID || len != b->size) {
        problem(f,
                "fsck --repair removes the file and its record; push the images that need it "
                "again",
                "blob %s is corrupt: %llu bytes on disk (%llu recorded) that do not hash to its "
                "digest",
                digest, (unsigned long long)len, (unsigned long long)b->size);
        return add_fix(f, FIX_BLOB_FILE, "", digest);
    }
    return rc;
}

/* ---- files -> records ------------------------------------------------------ */

static int check_file(void *arg, const struct digest *d)
{
    struct fsck *f = arg;
    struct index_blob b;
    uint64_t size = 0;
    int rc = index_get_blob(f->t, d->str, &b);

    if (rc != REG_E_BLOB_UNKNOWN)
        return rc;
    blobstore_size(f->bs, d, &size);
    note(f, "a crash leftover: GC or fsck --repair removes it",
         "blob file %s (%llu bytes) is not in the index", d->str, (unsigned long long)size);
    return add_fix(f, FIX_ORPHAN, "", d->str);
}

/* ---- manifests, tags, uploads ---------------------------------------------- */

static int check_manifest(void *arg, const char *repo, const char *digest,
                          const struct index_manifest *m, const char *refs, size_t refs_len)
{
    struct fsck *f = arg;
    struct digest d, got;
    const void *data;
    size_t len, off = 0;
    int64_t when;
    int rc;

    (void)m;
    if (digest_parse(digest, strlen(digest), &d) != REG_OK)
        return REG_OK; /* cannot be: the PUT checked it */
    rc = index_get_manifest_data(f->t, digest, &data, &len);
    if (rc == REG_OK)
        digest_of(d.algo, data, len, &got);
    if (rc == REG_E_MANIFEST_UNKNOWN || (rc == REG_OK && strcmp(got.str, digest) != 0)) {
        problem(f, "fsck --repair removes the manifest and its tags; push the image again",
                "manifest %s@%s: its bytes are %s", repo, digest,
                rc ? "missing" : "corrupt (they do not hash to its digest)");
        return add_fix(f, FIX_MANIFEST, repo, digest);
    }
    if (rc)
        return rc;
    for (; off < refs_len; off += strlen(refs + off) + 1) {
        struct index_blob b;
        struct index_manifest child;
        const char *ref = refs + off;

        rc = index_get_blob(f->t, ref, &b);
        if (rc == REG_OK && index_repo_has_blob(f->t, repo, ref) == REG_OK)
            continue;
        if (rc == REG_E_BLOB_UNKNOWN && index_get_manifest(f->t, repo, ref, &child) == REG_OK)
            continue;
        /* The pull-through cache fetches a manifest's blobs (and an index's
         * children) when they are asked for, not with it. */
        if ((rc == REG_OK || rc == REG_E_BLOB_UNKNOWN) &&
            index_get_cached(f->t, repo, NULL, &when) == REG_OK)
            continue;
        if (rc && rc != REG_E_BLOB_UNKNOWN)
            return rc;
        f->res->broken++;
        problem(f, "push the image again (or delete it)",
                "image %s@%s is broken: it needs %s, which %s", repo, digest, ref,
                rc ? "is gone" : "is not linked into the repository");
    }
    return REG_OK;
}

static int check_tag(void *arg, const char *repo, const char *tag, const void *v, size_t len)
{
    struct fsck *f = arg;
    struct index_manifest m;
    char digest[DIGEST_STR_MAX];
    int rc;

    if (len >= sizeof(digest))
        len = sizeof(digest) - 1;
    memcpy(digest, v, len);
    digest[len] = '\0';
    rc = index_get_manifest(f->t, repo, digest, &m);
    if (rc != REG_E_MANIFEST_UNKNOWN)
        return rc;
    problem(f, "fsck --repair drops the tag; push the image again",
            "tag %s:%s points at %s, which the repository does not hold", repo, tag, digest);
    return add_fix(f, FIX_TAG, repo, tag);
}

static int check_upload(void *arg, const char *uuid, const struct index_upload *u)
{
    struct fsck *f = arg;
    uint64_t size;
    int rc = blobstore_writer_size(f->bs, uuid, &size);

    if (rc == REG_OK && size >= u->offset)
        return REG_OK;
    if (rc == REG_E_UPLOAD_UNKNOWN) {
        /* Its bytes became a blob and the crash came before the record
         * went, or it never held any: the client starts the upload again. */
        if (u->offset > 0)
            note(f, "a crash while it finished: GC expires it after upload_ttl",
                 "upload %s (%s) has no bytes left", uuid, u->repo);
        return add_fix(f, FIX_UPLOAD, "", uuid);
    }
    if (rc)
        return rc;
    problem(f, "fsck --repair drops the session; the client starts its upload again",
            "upload %s (%s): %llu bytes, shorter than the %llu it saved", uuid, u->repo,
            (unsigned long long)size, (unsigned long long)u->offset);
    return add_fix(f, FIX_UPLOAD, "", uuid);
}

static void report_count(void *arg, const char *what)
{
    struct fsck *f = arg;

    problem(f, "fsck --repair recounts", "reference count: %s", what);
    f->recount = 1;
}

/* ---- the run ------------------------------------------------------------------ */

static int check_all(struct fsck *f)
{
    size_t bad = 0;
    double t0;
    int rc = index_each_blob(f->t, sum_sizes, &f->total_bytes);

    t0 = now_seconds();
    if (!rc)
        rc = index_each_blob(f->t, check_blob, f);
    f->res->hash_seconds = now_seconds() - t0;
    if (f->progress && f->res->blobs)
        fputc('\n', stderr);
    if (!rc)
        rc = blobstore_each(f->bs, check_file, f);
    if (!rc)
        rc = index_check_counts(f->t, report_count, f, &bad);
    if (!rc)
        rc = index_each_manifest(f->t, check_manifest, f);
    if (!rc)
        rc = index_each_tag(f->t, check_tag, f);
    if (!rc)
        rc = index_each_upload(f->t, check_upload, f);
    return rc;
}

static int apply(struct fsck *f, struct index *ix)
{
    struct index_txn *t = NULL;
    struct digest d;
    size_t i;
    int rc;

    blobstore_lock_exclusive(f->bs);
    rc = index_begin(ix, INDEX_WRITE_FREEING, &t);
    for (i = 0; !rc && i < f->nfixes; i++) {
        const struct fix *x = &f->fixes[i];

        switch (x->kind) {
        case FIX_BLOB_RECORD:
        case FIX_BLOB_FILE:
            rc = index_remove_blob(t, x->b);
            break;
        case FIX_TAG:
            rc = index_del_tag(t, x->a, x->b);
            rc = rc == REG_E_MANIFEST_UNKNOWN ? REG_OK : rc;
            break;
        case FIX_MANIFEST:
            rc = index_delete_manifest(t, x->a, x->b);
            rc = rc == REG_E_MANIFEST_UNKNOWN ? REG_OK : rc;
            break;
        case FIX_UPLOAD:
            rc = index_del_upload(t, x->b);
            break;
        default:
            break;
        }
    }
    /* Dropping records changes counts too: always recount when repairing. */
    if (!rc && (f->recount || f->nfixes))
        rc = index_recount(t);
    if (t)
        rc = index_end(t, rc);
    /* The records are gone: every file goes too; one that will not is
     * left for GC, which removes files no record names. */
    for (i = 0; !rc && i < f->nfixes; i++) {
        const struct fix *x = &f->fixes[i];

        if ((x->kind == FIX_BLOB_FILE || x->kind == FIX_ORPHAN) &&
            digest_parse(x->b, strlen(x->b), &d) == REG_OK && blobstore_delete(f->bs, &d))
            log_warn("fsck: cannot remove the file of %s", x->b);
        if (x->kind == FIX_UPLOAD) {
            uint64_t bytes;

            blobstore_writer_remove(f->bs, x->b, &bytes);
        }
    }
    blobstore_unlock(f->bs);
    return rc;
}

int fsck_run(struct blobstore *bs, struct index *ix, int repair, int progress, FILE *out,
             struct fsck_result *res)
{
    struct fsck f;
    double start = now_seconds();
    int rc;

    memset(res, 0, sizeof(*res));
    memset(&f, 0, sizeof(f));
    f.bs = bs;
    f.ix = ix;
    f.out = out;
    f.progress = progress;
    f.res = res;
    f.buf = malloc(HASH_BUF);
    if (!f.buf)
        return REG_E_NOMEM;
    rc = index_begin(ix, INDEX_READ, &f.t);
    if (!rc) {
        rc = check_all(&f);
        index_abort(f.t);
        f.t = NULL;
    }
    if (!rc && repair && (f.nfixes || f.recount)) {
        rc = apply(&f, ix);
        res->repaired = f.nfixes + (uint64_t)f.recount;
        res->broken = 0;
        if (!rc) {
            /* Name what is still wrong: the images the repair broke. */
            fprintf(out, "repaired %llu; checking the images again:\n",
                    (unsigned long long)res->repaired);
            rc = index_begin(ix, INDEX_READ, &f.t);
            if (!rc) {
                rc = index_each_manifest(f.t, check_manifest, &f);
                index_abort(f.t);
            }
        }
    }
    free(f.fixes);
    free(f.buf);
    res->seconds = now_seconds() - start;
    return rc;
}
