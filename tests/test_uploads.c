/* Unit tests for service/uploads with a real blob store and LMDB index in a
 * temporary directory: sessions, checkpoints, resume and commit. */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "../common/err.h"
#include "../service/uploads.h"
#include "../storage/blobstore.h"
#include "../storage/digest.h"
#include "../storage/index.h"

/* Each test gets its own root (tests run in parallel processes). */
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

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/regtest-uploads-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    cr_assert_eq(blobstore_open(root, &bs), REG_OK);
    cr_assert_eq(index_open(blobstore_index_dir(bs), (size_t)16 << 20, &ix), REG_OK);
    cr_assert_eq(uploads_new(bs, ix, &us), REG_OK);
}

static void teardown(void)
{
    uploads_free(us);
    index_close(ix);
    blobstore_close(bs);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(uploads, .init = setup, .fini = teardown);

/* --- helpers ------------------------------------------------------------------ */

static struct upload *create(const char *repo, int persist)
{
    struct upload *u = NULL;

    cr_assert_eq(upload_create(us, repo, persist, &u), REG_OK);
    cr_assert_not_null(u);
    return u;
}

static void write_str(struct upload *u, const char *s)
{
    cr_assert_eq(upload_write(u, s, strlen(s)), REG_OK);
}

static int upload_file_exists(const char *uuid)
{
    char path[PATH_MAX];
    struct stat st;

    snprintf(path, sizeof(path), "%s/uploads/%s", root, uuid);
    return stat(path, &st) == 0;
}

static int record_exists(const char *repo, const char *uuid)
{
    uint64_t off;
    int rc = upload_status(us, repo, uuid, &off);

    cr_assert(rc == REG_OK || rc == REG_E_UPLOAD_UNKNOWN, "upload_status: %d", rc);
    return rc == REG_OK;
}

/* The blob d is in the store with exactly the bytes data[0..len). */
static void expect_blob(const struct digest *d, const void *data, size_t len)
{
    char *buf = malloc(len + 1);
    uint64_t size = 0;
    ssize_t n;
    int fd = -1;

    cr_assert_not_null(buf);
    cr_assert_eq(blobstore_open_read(bs, d, &fd, NULL, &size), REG_OK, "%s not stored", d->str);
    cr_assert_eq(size, len);
    n = pread(fd, buf, len + 1, 0);
    close(fd);
    cr_assert_eq(n, (ssize_t)len);
    cr_assert_arr_eq(buf, data, len);
    free(buf);
}

static int repo_has(const char *repo, const struct digest *d)
{
    struct index_txn *t = NULL;
    int rc;

    cr_assert_eq(index_begin(ix, 0, &t), REG_OK);
    rc = index_repo_has_blob(t, repo, d->str);
    index_abort(t);
    cr_assert(rc == REG_OK || rc == REG_E_BLOB_UNKNOWN, "index_repo_has_blob: %d", rc);
    return rc == REG_OK;
}

static int nfiles; /* count_files' tally */

static int count_files(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)st;
    (void)ftw;
    if (flag == FTW_F)
        nfiles++;
    return 0;
}

/* Regular files under <root>/<sub>. */
static int files_under(const char *sub)
{
    char path[PATH_MAX];

    snprintf(path, sizeof(path), "%s/%s", root, sub);
    nfiles = 0;
    cr_assert_eq(nftw(path, count_files, 16, FTW_PHYS), 0);
    return nfiles;
}

/* --- upload_uuid_valid ------------------------------------------------------------ */

Test(upload_uuid_valid, accepts_lowercase_v4_shape)
{
    const char *s = "0f6a3e1c-2b4d-4c8e-9a1f-3d5e7b9c1a2f";

    cr_assert(upload_uuid_valid(s, strlen(s)));
    cr_assert(upload_uuid_valid("00000000-0000-0000-0000-000000000000", 36));
}

Test(upload_uuid_valid, refuses_wrong_length)
{
    const char *s = "0f6a3e1c-2b4d-4c8e-9a1f-3d5e7b9c1a2f0";

    cr_assert_not(upload_uuid_valid(s, 35));
    cr_assert_not(upload_uuid_valid(s, 37));
    cr_assert_not(upload_uuid_valid("", 0));
}

Test(upload_uuid_valid, refuses_uppercase_and_non_hex)
{
    cr_assert_not(upload_uuid_valid("0F6A3E1C-2B4D-4C8E-9A1F-3D5E7B9C1A2F", 36));
    cr_assert_not(upload_uuid_valid("0f6a3e1c-2b4d-4c8e-9a1f-3d5e7b9c1a2g", 36));
    cr_assert_not(upload_uuid_valid("0f6a3e1c-2b4d-4c8e-9a1f-3d5e7b9c1a/.", 36));
}

Test(upload_uuid_valid, refuses_dashes_in_the_wrong_place)
{
    cr_assert_not(upload_uuid_valid("0f6a3e1c2-b4d-4c8e-9a1f-3d5e7b9c1a2f", 36));
    cr_assert_not(upload_uuid_valid("0f6a3e1c-2b4d-4c8e-9a1f03d5e7b9c1a2f", 36));
    cr_assert_not(upload_uuid_valid("0f6a3e1c-2b4d-4c8e-9a1f-3d5e7b9c-a2f", 36));
}

Test(uploads, created_uuid_is_valid_and_unique)
{
    struct upload *a = create("r", 0), *b = create("r", 0);
    const char *ua = upload_uuid(a), *ub = upload_uuid(b);

    cr_assert(upload_uuid_valid(ua, strlen(ua)), "%s", ua);
    cr_assert(upload_uuid_valid(ub, strlen(ub)), "%s", ub);
    cr_assert_str_neq(ua, ub);
    upload_release(a);
    upload_release(b);
}

/* --- create, write, finish ----------------------------------------------------------- */

Test(uploads, persistent_create_makes_file_and_record_at_offset_zero)
{
    struct upload *u = create("r", 1);
    uint64_t off = 99;

    cr_assert_eq(upload_offset(u), 0);
    cr_assert(upload_file_exists(upload_uuid(u)));
    cr_assert_eq(upload_status(us, "r", upload_uuid(u), &off), REG_OK);
    cr_assert_eq(off, 0);
    upload_release(u);
}

Test(uploads, monolithic_create_has_no_record_and_release_removes_its_file)
{
    struct upload *u = create("r", 0);
    char uuid[UPLOAD_UUID_LEN + 1];

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    cr_assert(upload_file_exists(uuid));
    cr_assert_not(record_exists("r", uuid));
    write_str(u, "abc");
    upload_release(u);
    cr_assert_not(upload_file_exists(uuid));
}

Test(uploads, monolithic_finish_commits_blob_in_repo)
{
    struct upload *u = create("lib/x", 0);
    struct digest d;
    uint64_t size = 0;

    digest_of(DIGEST_SHA256, "hello", 5, &d);
    write_str(u, "hello");
    cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
    cr_assert_eq(size, 5);
    upload_release(u);
    expect_blob(&d, "hello", 5);
    cr_assert(repo_has("lib/x", &d));
    cr_assert_not(repo_has("lib/y", &d));
    cr_assert_eq(files_under("uploads"), 0);
}

Test(uploads, checkpoint_release_resume_finish_commits_the_blob)
{
    struct upload *u = create("a/b", 1);
    char uuid[UPLOAD_UUID_LEN + 1];
    struct index_txn *t = NULL;
    struct index_blob rec;
    struct digest d;
    uint64_t off = 0, size = 0;

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "chunk one;");
    write_str(u, "chunk two;");
    cr_assert_eq(upload_offset(u), 20);
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    cr_assert_eq(upload_status(us, "a/b", uuid, &off), REG_OK);
    cr_assert_eq(off, 20);
    upload_release(u);

    u = NULL;
    cr_assert_eq(upload_resume(us, "a/b", uuid, &u), REG_OK);
    cr_assert_not_null(u);
    cr_assert_eq(upload_offset(u), 20);
    cr_assert_str_eq(upload_uuid(u), uuid);
    write_str(u, "chunk three");
    digest_of(DIGEST_SHA256, "chunk one;chunk two;chunk three", 31, &d);
    cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
    cr_assert_eq(size, 31);
    upload_release(u);

    expect_blob(&d, "chunk one;chunk two;chunk three", 31);
    cr_assert(repo_has("a/b", &d));
    cr_assert_eq(index_begin(ix, 0, &t), REG_OK);
    cr_assert_eq(index_get_blob(t, d.str, &rec), REG_OK);
    index_abort(t);
    cr_assert_eq(rec.size, 31);
    /* The session is over: no record, no file. */
    cr_assert_not(record_exists("a/b", uuid));
    cr_assert_not(upload_file_exists(uuid));
    cr_assert_eq(upload_resume(us, "a/b", uuid, &u), REG_E_UPLOAD_UNKNOWN);
    cr_assert_null(u);
}

Test(uploads, large_upload_resumed_mid_block_hashes_correctly)
{
    enum { TOTAL = 3 << 20, SPLIT = 1000003 };
    char *data = malloc(TOTAL);
    char uuid[UPLOAD_UUID_LEN + 1];
    struct upload *u = create("r", 1);
    struct digest d;
    uint64_t size = 0;
    size_t i;

    cr_assert_not_null(data);
    for (i = 0; i < TOTAL; i++)
        data[i] = (char)(i * 2654435761u >> 13);
    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    cr_assert_eq(upload_write(u, data, SPLIT), REG_OK);
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    upload_release(u);
    cr_assert_eq(upload_resume(us, "r", uuid, &u), REG_OK);
    cr_assert_eq(upload_offset(u), SPLIT);
    cr_assert_eq(upload_write(u, data + SPLIT, TOTAL - SPLIT), REG_OK);
    digest_of(DIGEST_SHA256, data, TOTAL, &d);
    cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
    cr_assert_eq(size, TOTAL);
    upload_release(u);
    expect_blob(&d, data, TOTAL);
    free(data);
}

Test(uploads, wrong_digest_is_refused_and_removes_file_and_record)
{
    struct upload *u = create("r", 1);
    char uuid[UPLOAD_UUID_LEN + 1];
    struct digest wrong;
    uint64_t size = 0;

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "real bytes");
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    digest_of(DIGEST_SHA256, "other bytes", 11, &wrong);
    cr_assert_eq(upload_finish(u, &wrong, &size), REG_E_DIGEST_INVALID);
    upload_release(u);
    cr_assert_not(upload_file_exists(uuid));
    cr_assert_not(record_exists("r", uuid));
    cr_assert_not(repo_has("r", &wrong));
    cr_assert_eq(files_under("blobs"), 0);
    cr_assert_eq(upload_resume(us, "r", uuid, &u), REG_E_UPLOAD_UNKNOWN);
}

Test(uploads, sha512_finish_on_a_sha256_session_rehashes)
{
    enum { TOTAL = (1 << 20) + 12345 }; /* more than one rehash buffer */
    char *data = malloc(TOTAL);
    struct upload *u = create("r", 1);
    struct digest d;
    uint64_t size = 0;

    cr_assert_not_null(data);
    memset(data, 'z', TOTAL);
    data[TOTAL - 1] = '!';
    cr_assert_eq(upload_write(u, data, TOTAL), REG_OK);
    digest_of(DIGEST_SHA512, data, TOTAL, &d);
    cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
    cr_assert_eq(size, TOTAL);
    upload_release(u);
    expect_blob(&d, data, TOTAL);
    cr_assert(repo_has("r", &d));
    cr_assert_eq(files_under("blobs/sha512"), 1);
    cr_assert_eq(files_under("blobs/sha256"), 0);
    free(data);
}

Test(uploads, sha512_finish_after_resume_rehashes_the_whole_file)
{
    struct upload *u = create("r", 1);
    char uuid[UPLOAD_UUID_LEN + 1];
    struct digest d;
    uint64_t size = 0;

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "first half, ");
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    upload_release(u);
    cr_assert_eq(upload_resume(us, "r", uuid, &u), REG_OK);
    write_str(u, "second half");
    digest_of(DIGEST_SHA512, "first half, second half", 23, &d);
    cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
    upload_release(u);
    expect_blob(&d, "first half, second half", 23);
}

/* --- resume ---------------------------------------------------------------------------- */

Test(uploads, resume_of_a_held_session_is_busy_and_leaves_the_holder_alone)
{
    struct upload *u = create("r", 1), *other = NULL;
    char uuid[UPLOAD_UUID_LEN + 1];

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    cr_assert_eq(upload_resume(us, "r", uuid, &other), REG_E_UPLOAD_BUSY);
    cr_assert_null(other);
    /* The failed attempt must not have released the holder's claim. */
    cr_assert_eq(upload_resume(us, "r", uuid, &other), REG_E_UPLOAD_BUSY);
    cr_assert(upload_file_exists(uuid));
    upload_release(u);
    cr_assert_eq(upload_resume(us, "r", uuid, &other), REG_OK);
    cr_assert_not_null(other);
    upload_release(other);
}

Test(uploads, resumed_session_is_busy_for_a_second_resume)
{
    struct upload *u = create("r", 1), *a = NULL, *b = NULL;
    char uuid[UPLOAD_UUID_LEN + 1];

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    upload_release(u);
    cr_assert_eq(upload_resume(us, "r", uuid, &a), REG_OK);
    cr_assert_eq(upload_resume(us, "r", uuid, &b), REG_E_UPLOAD_BUSY);
    cr_assert_null(b);
    upload_release(a);
}

Test(uploads, resume_with_the_wrong_repo_is_unknown_and_keeps_the_session)
{
    struct upload *u = create("right", 1), *v = NULL;
    char uuid[UPLOAD_UUID_LEN + 1];
    uint64_t off = 0;

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "data");
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    upload_release(u);
    cr_assert_eq(upload_resume(us, "wrong", uuid, &v), REG_E_UPLOAD_UNKNOWN);
    cr_assert_null(v);
    cr_assert_eq(upload_status(us, "wrong", uuid, &off), REG_E_UPLOAD_UNKNOWN);
    /* Neither the file nor the claim is disturbed. */
    cr_assert(upload_file_exists(uuid));
    cr_assert_eq(upload_resume(us, "right", uuid, &v), REG_OK);
    cr_assert_eq(upload_offset(v), 4);
    upload_release(v);
}

Test(uploads, resume_of_an_unknown_uuid_is_unknown)
{
    struct upload *u = NULL;

    cr_assert_eq(upload_resume(us, "r", "0f6a3e1c-2b4d-4c8e-9a1f-3d5e7b9c1a2f", &u),
                 REG_E_UPLOAD_UNKNOWN);
    cr_assert_null(u);
}

Test(uploads, monolithic_session_cannot_be_resumed)
{
    struct upload *u = create("r", 0), *v = NULL;
    char uuid[UPLOAD_UUID_LEN + 1];

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    upload_release(u);
    cr_assert_eq(upload_resume(us, "r", uuid, &v), REG_E_UPLOAD_UNKNOWN);
}

Test(uploads, bytes_after_the_last_checkpoint_are_dropped_on_resume)
{
    struct upload *u = create("r", 1);
    char uuid[UPLOAD_UUID_LEN + 1];
    struct digest d;
    uint64_t off = 0, size = 0;

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "kept ");
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    write_str(u, "never acknowledged");
    cr_assert_eq(upload_offset(u), 23);
    upload_release(u); /* no checkpoint */

    cr_assert_eq(upload_status(us, "r", uuid, &off), REG_OK);
    cr_assert_eq(off, 5);
    cr_assert_eq(upload_resume(us, "r", uuid, &u), REG_OK);
    cr_assert_eq(upload_offset(u), 5);
    digest_of(DIGEST_SHA256, "kept ", 5, &d);
    cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
    cr_assert_eq(size, 5);
    upload_release(u);
    expect_blob(&d, "kept ", 5);
}

Test(uploads, resume_after_dropped_bytes_continues_at_the_checkpoint)
{
    struct upload *u = create("r", 1);
    char uuid[UPLOAD_UUID_LEN + 1];
    struct digest d;
    uint64_t size = 0;

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "AAAA");
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    write_str(u, "XXXXXXXX");
    upload_release(u);
    cr_assert_eq(upload_resume(us, "r", uuid, &u), REG_OK);
    write_str(u, "BB");
    digest_of(DIGEST_SHA256, "AAAABB", 6, &d);
    cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
    cr_assert_eq(size, 6);
    upload_release(u);
    expect_blob(&d, "AAAABB", 6);
}

/* index.h: a record with state_len 0 means "rehash the file". Even then the
 * session must resume where upload_status says it is. */
Test(uploads, resume_without_hash_state_agrees_with_upload_status)
{
    struct upload *u = create("r", 1);
    char uuid[UPLOAD_UUID_LEN + 1];
    struct index_txn *t = NULL;
    struct index_upload rec;
    struct digest d;
    uint64_t off = 0, size = 0;

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "kept ");
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    write_str(u, "never acknowledged");
    upload_release(u);
    cr_assert_eq(index_begin(ix, 1, &t), REG_OK);
    cr_assert_eq(index_get_upload(t, uuid, &rec), REG_OK);
    rec.state_len = 0;
    cr_assert_eq(index_put_upload(t, uuid, &rec), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);

    cr_assert_eq(upload_status(us, "r", uuid, &off), REG_OK);
    cr_assert_eq(upload_resume(us, "r", uuid, &u), REG_OK);
    /* cr_expect: go on to release u whatever happens. */
    cr_expect_eq(upload_offset(u), off, "resumed at %llu, status says %llu",
                 (unsigned long long)upload_offset(u), (unsigned long long)off);
    digest_of(DIGEST_SHA256, "kept ", 5, &d);
    cr_expect_eq(upload_finish(u, &d, &size), REG_OK);
    upload_release(u);
}

Test(uploads, checkpoint_survives_a_new_uploads_and_index_instance)
{
    struct upload *u = create("r", 1);
    char uuid[UPLOAD_UUID_LEN + 1];
    struct digest d;
    uint64_t size = 0;

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "before restart ");
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    upload_release(u);
    /* A restart: everything in memory is gone. */
    uploads_free(us);
    index_close(ix);
    cr_assert_eq(index_open(blobstore_index_dir(bs), (size_t)16 << 20, &ix), REG_OK);
    cr_assert_eq(uploads_new(bs, ix, &us), REG_OK);

    cr_assert_eq(upload_resume(us, "r", uuid, &u), REG_OK);
    cr_assert_eq(upload_offset(u), 15);
    write_str(u, "after");
    digest_of(DIGEST_SHA256, "before restart after", 20, &d);
    cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
    upload_release(u);
    expect_blob(&d, "before restart after", 20);
}

/* --- cancel ------------------------------------------------------------------------------ */

Test(uploads, cancel_removes_file_and_record)
{
    struct upload *u = create("r", 1);
    char uuid[UPLOAD_UUID_LEN + 1];

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "to be cancelled");
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    cr_assert(upload_file_exists(uuid));
    cr_assert_eq(upload_cancel(u), REG_OK);
    cr_assert_not(upload_file_exists(uuid));
    upload_release(u);
    cr_assert_not(record_exists("r", uuid));
    cr_assert_eq(upload_resume(us, "r", uuid, &u), REG_E_UPLOAD_UNKNOWN);
    cr_assert_eq(files_under("uploads"), 0);
}

Test(uploads, cancel_of_a_monolithic_session_removes_its_file)
{
    struct upload *u = create("r", 0);
    char uuid[UPLOAD_UUID_LEN + 1];

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    write_str(u, "x");
    cr_assert_eq(upload_cancel(u), REG_OK);
    cr_assert_not(upload_file_exists(uuid));
    upload_release(u);
}

/* --- deduplication ------------------------------------------------------------------------- */

Test(uploads, same_content_in_two_repos_is_one_file)
{
    const char *repos[] = {"one", "two/three"};
    struct digest d;
    uint64_t size = 0;
    size_t i;

    digest_of(DIGEST_SHA256, "shared layer", 12, &d);
    for (i = 0; i < 2; i++) {
        struct upload *u = create(repos[i], i == 0);

        write_str(u, "shared layer");
        cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
        cr_assert_eq(size, 12);
        upload_release(u);
    }
    cr_assert_eq(files_under("blobs/sha256"), 1);
    cr_assert_eq(files_under("uploads"), 0);
    cr_assert(repo_has("one", &d));
    cr_assert(repo_has("two/three", &d));
    expect_blob(&d, "shared layer", 12);
}

Test(uploads, empty_session_whose_file_was_lost_resumes_from_zero)
{
    struct upload *u = create("repo", 1);
    char uuid[UPLOAD_UUID_LEN + 1], path[256];
    struct digest d;
    uint64_t size = 0;

    snprintf(uuid, sizeof(uuid), "%s", upload_uuid(u));
    upload_release(u);
    /* A crash before the first checkpoint may lose the file's name. */
    snprintf(path, sizeof(path), "%s/uploads/%s", root, uuid);
    cr_assert_eq(unlink(path), 0);
    cr_assert_eq(upload_resume(us, "repo", uuid, &u), REG_OK);
    cr_assert_eq(upload_offset(u), 0);
    write_str(u, "abc");
    cr_assert_eq(upload_checkpoint(u), REG_OK);
    digest_of(DIGEST_SHA256, "abc", 3, &d);
    cr_assert_eq(upload_finish(u, &d, &size), REG_OK);
    cr_assert_eq(size, 3);
    upload_release(u);
}
