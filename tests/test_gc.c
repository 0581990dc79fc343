/* Unit tests for service/gc, the per-repository reference counts and the
 * index's space limits, with a real blob store and LMDB index in a
 * temporary directory. */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "../common/err.h"
#include "../service/gc.h"
#include "../service/uploads.h"
#include "../storage/blobstore.h"
#include "../storage/digest.h"
#include "../storage/index.h"

static char root[64];
static struct blobstore *bs;
static struct index *ix;
static struct uploads *us;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void open_all(size_t max)
{
    cr_assert_eq(blobstore_open(root, &bs), REG_OK);
    cr_assert_eq(index_open(blobstore_index_dir(bs), max, &ix), REG_OK);
    cr_assert_eq(uploads_new(bs, ix, &us), REG_OK);
}

static void close_all(void)
{
    uploads_free(us);
    index_close(ix);
    blobstore_close(bs);
    us = NULL;
    ix = NULL;
    bs = NULL;
}

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/regtest-gc-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    open_all((size_t)64 << 20);
}

static void teardown(void)
{
    close_all();
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(gc, .init = setup, .fini = teardown);

/* Push bytes as a blob of repo through a real upload; digest out. */
static void push(const char *repo, const char *text, struct digest *d)
{
    struct upload *u = NULL;
    uint64_t size;

    digest_of(DIGEST_SHA256, text, strlen(text), d);
    cr_assert_eq(upload_create(us, repo, 0, &u), REG_OK);
    cr_assert_eq(upload_write(u, text, strlen(text)), REG_OK);
    cr_assert_eq(upload_finish(u, d, &size), REG_OK);
    upload_release(u);
}

static void put_manifest(const char *repo, const char *digest, const char *const *refs, size_t n,
                         const char *subject)
{
    struct index_manifest m;
    struct index_txn *t = NULL;
    int created;

    memset(&m, 0, sizeof(m));
    snprintf(m.media_type, sizeof(m.media_type), "application/vnd.oci.image.manifest.v1+json");
    if (subject)
        snprintf(m.subject, sizeof(m.subject), "%s", subject);
    m.created = (int64_t)time(NULL) - 10;
    cr_assert_eq(index_begin(ix, INDEX_WRITE, &t), REG_OK);
    cr_assert_eq(index_put_manifest(t, repo, digest, &m, refs, n, "{}", 2, &created), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
}

static int blob_file_exists(const struct digest *d)
{
    int fd = -1;
    uint64_t size;
    int rc = blobstore_open_read(bs, d, &fd, NULL, &size);

    if (fd >= 0)
        close(fd);
    return rc == REG_OK;
}

static struct gc_stats run_gc(int64_t grace, int untagged)
{
    struct gc_opts o = {grace, 86400, untagged, 0, NULL};
    struct gc_stats s;

    cr_assert_eq(gc_run(root, bs, ix, us, &o, &s), REG_OK);
    return s;
}

#define M1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define M2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

Test(gc, unreferenced_blob_goes_and_referenced_blob_stays)
{
    struct digest a, b;
    struct gc_stats s;
    const char *refs[] = {a.str};

    push("r", "layer a", &a);
    push("r", "layer b", &b);
    put_manifest("r", M1, refs, 1, NULL);
    s = run_gc(0, 0);
    cr_assert_eq(s.blobs, 1);
    cr_assert_eq(s.blob_bytes, strlen("layer b"));
    cr_assert(blob_file_exists(&a));
    cr_assert_not(blob_file_exists(&b));
}

Test(gc, grace_keeps_a_freshly_pushed_blob)
{
    struct digest a;
    struct gc_stats s;

    push("r", "fresh", &a);
    s = run_gc(3600, 0);
    cr_assert_eq(s.blobs, 0);
    cr_assert(blob_file_exists(&a));
}

Test(gc, dry_run_counts_but_removes_nothing)
{
    struct digest a;
    struct gc_opts o = {0, 86400, 0, 1, NULL};
    struct gc_stats s;

    push("r", "dry", &a);
    cr_assert_eq(gc_run(root, bs, ix, us, &o, &s), REG_OK);
    cr_assert_eq(s.blobs, 1);
    cr_assert(blob_file_exists(&a));
}

Test(gc, repo_reference_count_names_the_user_until_the_manifest_goes)
{
    struct digest a;
    struct index_txn *t = NULL;
    const char *refs[] = {a.str, a.str};
    char user[128];

    push("r", "shared", &a);
    put_manifest("r", M1, refs, 2, NULL);
    cr_assert_eq(index_begin(ix, INDEX_READ, &t), REG_OK);
    cr_assert_eq(index_in_use(t, "r", a.str, user, sizeof(user)), REG_E_IN_USE);
    cr_assert_str_eq(user, M1);
    cr_assert_eq(index_in_use(t, "other", a.str, user, sizeof(user)), REG_OK);
    index_abort(t);
    cr_assert_eq(index_begin(ix, INDEX_WRITE_FREEING, &t), REG_OK);
    cr_assert_eq(index_delete_manifest(t, "r", M1), REG_OK);
    cr_assert_eq(index_in_use(t, "r", a.str, user, sizeof(user)), REG_OK);
    index_abort(t);
}

Test(gc, untagged_manifests_go_only_when_asked_and_children_follow_their_index)
{
    struct digest a;
    struct index_txn *t = NULL;
    struct index_manifest m;
    const char *child_refs[] = {a.str};
    const char *index_refs[] = {M1};
    struct gc_stats s;

    push("r", "child layer", &a);
    put_manifest("r", M1, child_refs, 1, NULL); /* the child */
    put_manifest("r", M2, index_refs, 1, NULL); /* an index listing it */
    s = run_gc(0, 0);
    cr_assert_eq(s.manifests, 0, "untagged = keep");
    s = run_gc(0, 1);
    cr_assert_eq(s.manifests, 2, "the index, then the child it freed");
    cr_assert_eq(s.blobs, 1);
    cr_assert_eq(s.repos, 1);
    cr_assert_eq(index_begin(ix, INDEX_READ, &t), REG_OK);
    cr_assert_eq(index_get_manifest(t, "r", M1, &m), REG_E_MANIFEST_UNKNOWN);
    cr_assert_eq(index_repo_exists(t, "r"), REG_E_NAME_UNKNOWN);
    index_abort(t);
}

Test(gc, a_tagged_manifest_and_a_referrer_of_it_stay)
{
    struct digest a;
    struct index_txn *t = NULL;
    const char *refs[] = {a.str};
    struct gc_stats s;

    push("r", "signed layer", &a);
    put_manifest("r", M1, refs, 1, NULL);
    put_manifest("r", M2, NULL, 0, M1); /* a signature of M1 */
    cr_assert_eq(index_begin(ix, INDEX_WRITE, &t), REG_OK);
    cr_assert_eq(index_put_tag(t, "r", "v1", M1), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    s = run_gc(0, 1);
    cr_assert_eq(s.manifests, 0);
    cr_assert_eq(s.blobs, 0);
}

Test(gc, idle_upload_sessions_and_stray_files_go)
{
    struct upload *u = NULL;
    char stray[PATH_MAX];
    struct gc_opts o = {3600, 0, 0, 0, NULL};
    struct gc_stats s;
    FILE *f;

    cr_assert_eq(upload_create(us, "r", 1, &u), REG_OK);
    cr_assert_eq(upload_write(u, "abc", 3), REG_OK);
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    upload_release(u);
    snprintf(stray, sizeof(stray), "%s/uploads/01234567-89ab-4def-8123-456789abcdef", root);
    f = fopen(stray, "w");
    cr_assert_not_null(f);
    fputs("partial", f);
    fclose(f);
    cr_assert_eq(gc_run(root, bs, ix, us, &o, &s), REG_OK);
    cr_assert_eq(s.uploads.sessions, 1);
    cr_assert_eq(s.uploads.files, 1);
    cr_assert_eq(s.uploads.bytes, 3 + strlen("partial"));
    cr_assert_neq(access(stray, F_OK), 0);
}

Test(gc, a_session_in_use_is_never_expired)
{
    struct upload *u = NULL;
    struct gc_opts o = {3600, 0, 0, 0, NULL};
    struct gc_stats s;

    cr_assert_eq(upload_create(us, "r", 1, &u), REG_OK);
    cr_assert_eq(gc_run(root, bs, ix, us, &o, &s), REG_OK);
    cr_assert_eq(s.uploads.sessions, 0);
    cr_assert_eq(s.uploads.files, 0);
    upload_release(u);
}

Test(gc, orphan_blob_file_goes_and_a_known_one_stays)
{
    struct digest a, o;
    struct gc_stats s;
    char path[PATH_MAX];
    FILE *f;

    push("r", "known", &a);
    digest_of(DIGEST_SHA256, "orphan", 6, &o);
    snprintf(path, sizeof(path), "%s/blobs/sha256/%.2s/%s", root, digest_hex(&o), digest_hex(&o));
    f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("orphan", f);
    fclose(f);
    s = run_gc(3600, 0);
    cr_assert_eq(s.orphans, 1);
    cr_assert_eq(s.orphan_bytes, 6);
    cr_assert_not(blob_file_exists(&o));
    cr_assert(blob_file_exists(&a));
}

Test(gc, a_full_index_refuses_growth_but_lets_deletes_through)
{
    static char big[64 * 1024];
    struct index_txn *t = NULL;
    char name[80];
    int i, rc = REG_OK, created;

    close_all();
    open_all((size_t)1 << 20);
    memset(big, 'x', sizeof(big));
    for (i = 0; i < 200 && rc == REG_OK; i++) {
        struct index_manifest m;

        memset(&m, 0, sizeof(m));
        snprintf(m.media_type, sizeof(m.media_type), "x");
        snprintf(name, sizeof(name), "sha256:%064d", i);
        rc = index_begin(ix, INDEX_WRITE, &t);
        if (rc)
            break;
        rc =
            index_end(t, index_put_manifest(t, "r", name, &m, NULL, 0, big, sizeof(big), &created));
    }
    cr_assert_eq(rc, REG_E_INDEX_FULL, "got %s after %d", reg_strerror(rc), i);
    /* Freeing writes still go through, and make room for growth again. */
    cr_assert_eq(index_begin(ix, INDEX_WRITE_FREEING, &t), REG_OK);
    for (i = 0; i < 8; i++) {
        snprintf(name, sizeof(name), "sha256:%064d", i);
        cr_assert_eq(index_delete_manifest(t, "r", name), REG_OK);
    }
    cr_assert_eq(index_commit(t), REG_OK);
    cr_assert_eq(index_begin(ix, INDEX_WRITE, &t), REG_OK);
    index_abort(t);
}

Test(gc, counts_are_rebuilt_from_manifests_and_fsck_counts_agree)
{
    struct digest a;
    struct index_txn *t = NULL;
    const char *refs[] = {a.str};
    size_t bad = 1;

    push("r", "counted", &a);
    put_manifest("r", M1, refs, 1, NULL);
    put_manifest("s", M1, refs, 1, NULL);
    cr_assert_eq(index_begin(ix, INDEX_WRITE_FREEING, &t), REG_OK);
    cr_assert_eq(index_recount(t), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    cr_assert_eq(index_begin(ix, INDEX_READ, &t), REG_OK);
    cr_assert_eq(index_check_counts(t, NULL, NULL, &bad), REG_OK);
    cr_assert_eq(bad, 0);
    {
        struct index_blob b;

        cr_assert_eq(index_get_blob(t, a.str, &b), REG_OK);
        cr_assert_eq(b.refcount, 2);
    }
    index_abort(t);
}
