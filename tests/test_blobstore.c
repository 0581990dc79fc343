/* The suite every blob-store backend must pass (as Distribution's storage
 * driver suite is for its drivers). It talks only to blobstore.h; a new
 * backend adds a row to backends[] and nothing else. */
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/parameterized.h>

#include "../common/err.h"
#include "../storage/blobstore.h"
#include "../storage/digest.h"

/* A backend under test: how to open a fresh, empty store of it. */
struct backend {
    const char *name;
    int (*open)(const char *scratch, struct blobstore **out);
};

static int open_file(const char *scratch, struct blobstore **out)
{
    return blobstore_open(scratch, out);
}

static const struct backend backends[] = {
    {"file", open_file},
};

/* Criterion re-executes the binary for each test: parameters must hold no
 * pointers, so they are indexes into backends[]. */
static int backend_ids[] = {0};
#define BACKENDS cr_make_param_array(int, backend_ids, sizeof(backend_ids) / sizeof(backend_ids[0]))

static char scratch[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static struct blobstore *fresh(const struct backend *b)
{
    struct blobstore *bs = NULL;

    snprintf(scratch, sizeof(scratch), "/tmp/regtest-bs-XXXXXX");
    cr_assert_not_null(mkdtemp(scratch));
    cr_assert_eq(b->open(scratch, &bs), REG_OK, "open %s", b->name);
    return bs;
}

static void done(struct blobstore *bs)
{
    blobstore_close(bs);
    nftw(scratch, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#define ID1 "0a1b2c3d-0000-4000-8000-000000000001"
#define ID2 "0a1b2c3d-0000-4000-8000-000000000002"

/* Read a whole blob back through whatever the backend hands out. */
static void read_back(struct blobstore *bs, const struct digest *d, const char *want)
{
    char buf[256], *url = NULL;
    uint64_t size;
    int fd = -1;
    ssize_t n;

    cr_assert_eq(blobstore_open_read(bs, d, &fd, &url, &size), REG_OK);
    cr_assert_eq(size, strlen(want));
    cr_assert_null(url, "a redirecting backend needs an HTTP client here");
    n = read(fd, buf, sizeof(buf));
    close(fd);
    cr_assert_eq(n, (ssize_t)strlen(want));
    cr_assert_eq(memcmp(buf, want, (size_t)n), 0);
}

ParameterizedTestParameters(blobstore, written_bytes_commit_and_read_back)
{
    return BACKENDS;
}

ParameterizedTest(int *id, blobstore, written_bytes_commit_and_read_back)
{
    const struct backend *b = &backends[*id];
    struct blobstore *bs = fresh(b);
    struct blob_writer *w = NULL;
    struct digest d;
    uint64_t size;

    digest_of(DIGEST_SHA256, "hello world", 11, &d);
    cr_assert_eq(blobstore_size(bs, &d, &size), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    cr_assert_eq(blob_writer_append(w, "hello ", 6), REG_OK);
    cr_assert_eq(blob_writer_append(w, "world", 5), REG_OK);
    cr_assert_eq(blobstore_commit(bs, w, &d), REG_OK);
    blob_writer_close(w, 0);
    cr_assert_eq(blobstore_size(bs, &d, &size), REG_OK);
    cr_assert_eq(size, 11);
    read_back(bs, &d, "hello world");
    cr_assert_eq(blobstore_writer_size(bs, ID1, &size), REG_E_UPLOAD_UNKNOWN,
                 "committed bytes leave the session");
    done(bs);
}

ParameterizedTestParameters(blobstore, checkpoint_survives_reopen_and_the_rest_is_dropped)
{
    return BACKENDS;
}

ParameterizedTest(int *id, blobstore, checkpoint_survives_reopen_and_the_rest_is_dropped)
{
    const struct backend *b = &backends[*id];
    struct blobstore *bs = fresh(b);
    struct blob_writer *w = NULL;
    char buf[32];
    size_t n = 0;
    uint64_t size;

    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    cr_assert_eq(blob_writer_append(w, "saved", 5), REG_OK);
    cr_assert_eq(blob_writer_checkpoint(w), REG_OK);
    cr_assert_eq(blob_writer_append(w, "-unacked", 8), REG_OK);
    blob_writer_close(w, 0);
    cr_assert_eq(blobstore_writer_size(bs, ID1, &size), REG_OK);
    cr_assert_geq(size, 5);
    cr_assert_eq(blobstore_writer_reopen(bs, ID1, 5, &w), REG_OK);
    cr_assert_eq(blob_writer_pread(w, 0, buf, sizeof(buf), &n), REG_OK);
    cr_assert_eq(n, 5);
    cr_assert_eq(memcmp(buf, "saved", 5), 0);
    cr_assert_eq(blob_writer_append(w, "+more", 5), REG_OK);
    cr_assert_eq(blob_writer_pread(w, 0, buf, sizeof(buf), &n), REG_OK);
    cr_assert_eq(n, 10);
    cr_assert_eq(memcmp(buf, "saved+more", 10), 0);
    blob_writer_close(w, 0);
    cr_assert_eq(blobstore_writer_reopen(bs, ID1, 64, &w), REG_E_UPLOAD_UNKNOWN,
                 "shorter than its checkpoint");
    cr_assert_eq(blobstore_writer_reopen(bs, ID2, 3, &w), REG_E_UPLOAD_UNKNOWN, "never written");
    cr_assert_eq(blobstore_writer_reopen(bs, ID2, 0, &w), REG_OK, "an empty session restarts");
    blob_writer_close(w, 1);
    done(bs);
}

ParameterizedTestParameters(blobstore, truncate_gives_bytes_back)
{
    return BACKENDS;
}

ParameterizedTest(int *id, blobstore, truncate_gives_bytes_back)
{
    const struct backend *b = &backends[*id];
    struct blobstore *bs = fresh(b);
    struct blob_writer *w = NULL;
    struct digest d;

    digest_of(DIGEST_SHA256, "keep", 4, &d);
    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    cr_assert_eq(blob_writer_append(w, "keep-this-not", 13), REG_OK);
    cr_assert_eq(blob_writer_truncate(w, 4), REG_OK);
    cr_assert_eq(blobstore_commit(bs, w, &d), REG_OK);
    blob_writer_close(w, 0);
    read_back(bs, &d, "keep");
    done(bs);
}

ParameterizedTestParameters(blobstore, second_commit_of_a_digest_deduplicates)
{
    return BACKENDS;
}

ParameterizedTest(int *id, blobstore, second_commit_of_a_digest_deduplicates)
{
    const struct backend *b = &backends[*id];
    struct blobstore *bs = fresh(b);
    struct blob_writer *w = NULL;
    struct digest d;
    int count = 0;

    digest_of(DIGEST_SHA256, "same", 4, &d);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(blobstore_writer_create(bs, i ? ID2 : ID1, &w), REG_OK);
        cr_assert_eq(blob_writer_append(w, "same", 4), REG_OK);
        cr_assert_eq(blobstore_commit(bs, w, &d), REG_OK);
        blob_writer_close(w, 0);
    }
    read_back(bs, &d, "same");
    {
        uint64_t size;

        cr_assert_eq(blobstore_writer_size(bs, ID2, &size), REG_E_UPLOAD_UNKNOWN);
    }
    (void)count;
    done(bs);
}

static int count_one(void *arg, const struct digest *d)
{
    (void)d;
    (*(int *)arg)++;
    return REG_OK;
}

static int count_writer(void *arg, const char *id)
{
    (void)id;
    (*(int *)arg)++;
    return REG_OK;
}

ParameterizedTestParameters(blobstore, each_lists_blobs_and_sessions_and_remove_forgets_them)
{
    return BACKENDS;
}

ParameterizedTest(int *id, blobstore, each_lists_blobs_and_sessions_and_remove_forgets_them)
{
    const struct backend *b = &backends[*id];
    struct blobstore *bs = fresh(b);
    struct blob_writer *w = NULL;
    struct digest d1, d2;
    uint64_t bytes;
    int n = 0;

    digest_of(DIGEST_SHA256, "one", 3, &d1);
    digest_of(DIGEST_SHA512, "two", 3, &d2);
    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    cr_assert_eq(blob_writer_append(w, "one", 3), REG_OK);
    cr_assert_eq(blobstore_commit(bs, w, &d1), REG_OK);
    blob_writer_close(w, 0);
    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    cr_assert_eq(blob_writer_append(w, "two", 3), REG_OK);
    cr_assert_eq(blobstore_commit(bs, w, &d2), REG_OK);
    blob_writer_close(w, 0);
    cr_assert_eq(blobstore_writer_create(bs, ID2, &w), REG_OK);
    cr_assert_eq(blob_writer_append(w, "pending", 7), REG_OK);
    cr_assert_eq(blob_writer_checkpoint(w), REG_OK); /* unsaved bytes may go with the close */
    blob_writer_close(w, 0);

    cr_assert_eq(blobstore_each(bs, count_one, &n), REG_OK);
    cr_assert_eq(n, 2);
    n = 0;
    cr_assert_eq(blobstore_each_writer(bs, count_writer, &n), REG_OK);
    cr_assert_eq(n, 1);

    cr_assert_eq(blobstore_delete(bs, &d1), REG_OK);
    cr_assert_eq(blobstore_delete(bs, &d1), REG_OK, "absent is fine");
    cr_assert_eq(blobstore_size(bs, &d1, &bytes), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(blobstore_writer_remove(bs, ID2, &bytes), REG_OK);
    cr_assert_eq(bytes, 7);
    n = 0;
    cr_assert_eq(blobstore_each(bs, count_one, &n), REG_OK);
    cr_assert_eq(n, 1);
    n = 0;
    cr_assert_eq(blobstore_each_writer(bs, count_writer, &n), REG_OK);
    cr_assert_eq(n, 0);
    done(bs);
}

ParameterizedTestParameters(blobstore, export_makes_a_second_store_hold_the_blob)
{
    return BACKENDS;
}

ParameterizedTest(int *id, blobstore, export_makes_a_second_store_hold_the_blob)
{
    const struct backend *b = &backends[*id];
    struct blobstore *bs = fresh(b), *dst = NULL;
    struct blob_writer *w = NULL;
    struct digest d;
    char dir[PATH_MAX];
    int copied = -1;

    digest_of(DIGEST_SHA256, "backed up", 9, &d);
    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    cr_assert_eq(blob_writer_append(w, "backed up", 9), REG_OK);
    cr_assert_eq(blobstore_commit(bs, w, &d), REG_OK);
    blob_writer_close(w, 0);
    snprintf(dir, sizeof(dir), "%s/copy", scratch);
    cr_assert_eq(b->open(dir, &dst), REG_OK);
    cr_assert_eq(blobstore_export(bs, dst, &d, &copied), REG_OK);
    cr_assert_neq(copied, -1);
    cr_assert_eq(blobstore_sync(dst), REG_OK);
    read_back(dst, &d, "backed up");
    blobstore_close(dst);
    done(bs);
}
