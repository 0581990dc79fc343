/* The suite every blob-store backend must pass (as Distribution's storage
 * driver suite is for its drivers). It talks only to blobstore.h; a new
 * backend adds a row to backends[] and nothing else.
 *
 * The S3 rows run against a real Ceph RADOS Gateway: scripts/with-ceph.sh
 * starts one and names its settings in REGISTRY_S3_ENV (a file of KEY=value
 * lines written by scripts/ceph-rgw.sh); without it they are skipped. Each
 * test gets its own key prefix in one bucket. */
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
#include "../storage/blobstore_s3.h"
#include "../storage/digest.h"
#include "../storage/s3.h"

/* A backend under test: how to open a fresh, empty store of it. */
struct backend {
    const char *name;
    int (*open)(const char *scratch, struct blobstore **out);
};

static int open_file(const char *scratch, struct blobstore **out)
{
    return blobstore_open(scratch, out);
}

#define TEST_BUCKET "regtest"
#define MIB (1u << 20)

static char s3_prefix[64];
/* Part sizes of the S3 store fresh() opens next (0: the backend's default). */
static uint64_t s3_part_size = 5 * MIB;
static unsigned s3_growth_every;

/* The gateway's settings from REGISTRY_S3_ENV; 0 when there is none. */
static int s3_settings(struct blobstore_s3_config *c)
{
    const char *path = getenv("REGISTRY_S3_ENV");
    char line[512];
    FILE *f;

    memset(c, 0, sizeof(*c));
    if (!path || !(f = fopen(path, "r")))
        return 0;
    while (fgets(line, sizeof(line), f)) {
        char *eq = strchr(line, '='), *v;

        if (!eq)
            continue;
        *eq = '\0';
        v = eq + 1;
        v[strcspn(v, "\r\n")] = '\0';
        if (strcmp(line, "S3_ENDPOINT") == 0)
            snprintf(c->s3.endpoint, sizeof(c->s3.endpoint), "%s", v);
        else if (strcmp(line, "S3_REGION") == 0)
            snprintf(c->s3.region, sizeof(c->s3.region), "%s", v);
        else if (strcmp(line, "S3_ACCESS_KEY") == 0)
            snprintf(c->s3.access_key, sizeof(c->s3.access_key), "%s", v);
        else if (strcmp(line, "S3_SECRET_KEY") == 0)
            snprintf(c->s3.secret_key, sizeof(c->s3.secret_key), "%s", v);
    }
    fclose(f);
    snprintf(c->s3.bucket, sizeof(c->s3.bucket), "%s", TEST_BUCKET);
    c->s3.path_style = 1;
    return c->s3.endpoint[0] != '\0';
}

static int open_s3(const char *scratch_dir, struct blobstore **out)
{
    struct blobstore_s3_config c;
    struct s3 *s = NULL;

    if (!s3_settings(&c))
        cr_skip_test("no Ceph RADOS Gateway (REGISTRY_S3_ENV unset)");
    if (!s3_prefix[0])
        snprintf(s3_prefix, sizeof(s3_prefix), "t%ld-%u/", (long)getpid(), (unsigned)rand());
    snprintf(c.s3.prefix, sizeof(c.s3.prefix), "%s%s", s3_prefix,
             strstr(scratch_dir, "/copy") ? "copy/" : "");
    c.part_size = s3_part_size;
    c.growth_every = s3_growth_every;
    cr_assert_eq(s3_new(&c.s3, &s), REG_OK);
    cr_assert_eq(s3_bucket_create(s), REG_OK, "create bucket " TEST_BUCKET);
    s3_free(s);
    return blobstore_open_s3(scratch_dir, &c, out);
}

static const struct backend backends[] = {
    {"file", open_file},
    {"s3", open_s3},
};

/* Criterion re-executes the binary for each test: parameters must hold no
 * pointers, so they are indexes into backends[]. */
static int backend_ids[] = {0, 1};
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

struct collect {
    char buf[256];
    size_t len;
};

static int collect(void *arg, const void *data, size_t len)
{
    struct collect *c = arg;

    if (c->len + len > sizeof(c->buf))
        return REG_E_TOO_LARGE;
    memcpy(c->buf + c->len, data, len);
    c->len += len;
    return REG_OK;
}

/* Read a whole blob back, streamed (every backend can). */
static void read_back(struct blobstore *bs, const struct digest *d, const char *want)
{
    struct collect c = {.len = 0};
    uint64_t size;

    cr_assert_eq(blobstore_size(bs, d, &size), REG_OK);
    cr_assert_eq(size, strlen(want));
    cr_assert_eq(blobstore_read(bs, d, 0, 0, collect, &c), REG_OK);
    cr_assert_eq(c.len, strlen(want));
    cr_assert_eq(memcmp(c.buf, want, c.len), 0);
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

/* Pull a reader to its end in reads of at most max bytes into out. */
static size_t pull(struct blob_reader *r, char *out, size_t cap, size_t max)
{
    size_t got = 0, n;

    do {
        cr_assert_eq(blob_reader_read(r, out + got, max < cap - got ? max : cap - got, &n), REG_OK);
        cr_assert(n > 0 || got == cap || max == 0, "an empty read before the end");
        got += n;
    } while (n > 0 && got < cap);
    if (got == cap) { /* and then the end */
        char extra;

        cr_assert_eq(blob_reader_read(r, &extra, 1, &n), REG_OK);
        cr_assert_eq(n, 0, "bytes past the end");
    }
    return got;
}

ParameterizedTestParameters(blobstore,
                            readers_hand_out_the_bytes_in_small_or_large_reads_and_ranges)
{
    return BACKENDS;
}

ParameterizedTest(int *id, blobstore, readers_hand_out_the_bytes_in_small_or_large_reads_and_ranges)
{
    const struct backend *b = &backends[*id];
    struct blobstore *bs = fresh(b);
    struct blob_writer *w = NULL;
    struct blob_reader *r = NULL;
    size_t len = 3 * MIB + 4321, i;
    char *data = malloc(len), *out = malloc(len);
    struct digest d, none;

    cr_assert(data && out);
    for (i = 0; i < len; i++)
        data[i] = (char)(i * 7 + i / 4096);
    digest_of(DIGEST_SHA256, data, len, &d);
    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    cr_assert_eq(blob_writer_append(w, data, len), REG_OK);
    cr_assert_eq(blobstore_commit(bs, w, &d), REG_OK);
    blob_writer_close(w, 0);

    /* Reads far smaller than what the store sends at once (S3: the
     * transfer is paused and taken up again), and larger ones. */
    static const size_t sizes[] = {1000, 65536, 1u << 20, 4u << 20};
    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        memset(out, 0, len);
        cr_assert_eq(blobstore_reader_open(bs, &d, 0, 0, &r), REG_OK);
        cr_assert_eq(pull(r, out, len, sizes[i]), len, "reads of %zu", sizes[i]);
        cr_assert(memcmp(out, data, len) == 0, "reads of %zu: wrong bytes", sizes[i]);
        blob_reader_close(r);
    }
    /* A range, and a range from the middle to the end. */
    cr_assert_eq(blobstore_reader_open(bs, &d, 1234567, 100000, &r), REG_OK);
    cr_assert_eq(pull(r, out, 100000, 7777), 100000);
    cr_assert(memcmp(out, data + 1234567, 100000) == 0);
    blob_reader_close(r);
    cr_assert_eq(blobstore_reader_open(bs, &d, len - 10, 0, &r), REG_OK);
    cr_assert_eq(pull(r, out, 10, 4096), 10);
    cr_assert(memcmp(out, data + len - 10, 10) == 0);
    blob_reader_close(r);
    /* Errors show at open, before any byte. */
    digest_of(DIGEST_SHA256, "absent", 6, &none);
    cr_assert_eq(blobstore_reader_open(bs, &none, 0, 0, &r), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(blobstore_reader_open(bs, &d, len + 10, 0, &r), REG_E_RANGE);
    free(data);
    free(out);
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
    struct blobstore *bs, *dst = NULL;
    struct blob_writer *w = NULL;
    struct digest d;
    char dir[PATH_MAX];
    int copied = -1;

    if (strcmp(b->name, "s3") == 0)
        cr_skip_test("a bucket is backed up with the object store's own tools");
    bs = fresh(b);
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

/* ---- large blobs, ranges, restarts -------------------------------------------------- */

static unsigned char byte_at(uint64_t i)
{
    return (unsigned char)((i * 2654435761u) >> 13);
}

/* Append bytes [from, to) of the pattern in uneven pieces, hashing them. */
static void append_pattern(struct blob_writer *w, uint64_t from, uint64_t to)
{
    static unsigned char buf[300001];
    uint64_t i = from;

    while (i < to) {
        size_t n = to - i < sizeof(buf) ? (size_t)(to - i) : sizeof(buf);

        for (size_t k = 0; k < n; k++)
            buf[k] = byte_at(i + k);
        cr_assert_eq(blob_writer_append(w, buf, n), REG_OK, "append at %llu",
                     (unsigned long long)i);
        i += n;
    }
}

static void pattern_digest(uint64_t len, struct digest *d)
{
    unsigned char *all = malloc(len ? len : 1);

    cr_assert_not_null(all);
    for (uint64_t i = 0; i < len; i++)
        all[i] = byte_at(i);
    digest_of(DIGEST_SHA256, all, len, d);
    free(all);
}

struct verify {
    uint64_t pos; /* pattern offset of the next byte */
    uint64_t seen;
    int bad;
};

static int verify_sink(void *arg, const void *data, size_t len)
{
    struct verify *v = arg;
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++)
        if (p[i] != byte_at(v->pos + i))
            v->bad = 1;
    v->pos += len;
    v->seen += len;
    return REG_OK;
}

static void verify_range(struct blobstore *bs, const struct digest *d, uint64_t off, uint64_t len)
{
    struct verify v = {off, 0, 0};

    cr_assert_eq(blobstore_read(bs, d, off, len, verify_sink, &v), REG_OK);
    cr_assert_eq(v.seen, len);
    cr_assert_not(v.bad, "bytes at %llu+%llu differ", (unsigned long long)off,
                  (unsigned long long)len);
}

ParameterizedTestParameters(blobstore, a_blob_larger_than_a_part_round_trips_and_reads_by_range)
{
    return BACKENDS;
}

ParameterizedTest(int *id, blobstore, a_blob_larger_than_a_part_round_trips_and_reads_by_range)
{
    const struct backend *b = &backends[*id];
    struct blobstore *bs = fresh(b);
    struct blob_writer *w = NULL;
    const uint64_t len = 12 * MIB + 12345;
    struct digest d;
    uint64_t size;

    pattern_digest(len, &d);
    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    append_pattern(w, 0, len);
    cr_assert_eq(blob_writer_checkpoint(w), REG_OK);
    cr_assert_eq(blobstore_commit(bs, w, &d), REG_OK);
    blob_writer_close(w, 0);
    cr_assert_eq(blobstore_size(bs, &d, &size), REG_OK);
    cr_assert_eq(size, len);
    verify_range(bs, &d, 0, len);
    verify_range(bs, &d, 5 * MIB - 3, 7); /* across the first part boundary */
    verify_range(bs, &d, len - 10, 10);
    verify_range(bs, &d, 0, 1);
    cr_assert_eq(blobstore_writer_size(bs, ID1, &size), REG_E_UPLOAD_UNKNOWN);
    done(bs);
}

/* The S3 session's parts as S3 lists them. */
static void s3_session_parts(const char *root, const char *id, struct s3_part **parts, size_t *n)
{
    struct blobstore_s3_config c;
    char path[PATH_MAX], mpu[S3_UPLOAD_ID_MAX] = "", key[128];
    struct s3 *s = NULL;
    FILE *f;

    cr_assert(s3_settings(&c));
    snprintf(c.s3.prefix, sizeof(c.s3.prefix), "%s", s3_prefix);
    snprintf(path, sizeof(path), "%s/s3-sessions/%s/mpu", root, id);
    f = fopen(path, "r");
    cr_assert_not_null(f, "the session has a multipart upload");
    cr_assert_not_null(fgets(mpu, sizeof(mpu), f));
    fclose(f);
    snprintf(key, sizeof(key), "uploads/%s", id);
    cr_assert_eq(s3_new(&c.s3, &s), REG_OK);
    cr_assert_eq(s3_mpu_parts(s, key, mpu, parts, n), REG_OK);
    s3_free(s);
}

Test(blobstore_s3, parts_grow_so_that_ten_thousand_reach_large_blobs)
{
    struct blobstore *bs;
    struct blob_writer *w = NULL;
    const uint64_t len = 33 * MIB;
    struct s3_part *parts = NULL;
    size_t n = 0;
    struct digest d;

    s3_growth_every = 2; /* 5, 5, 10, 10, 20 ... MiB */
    bs = fresh(&backends[1]);
    pattern_digest(len, &d);
    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    append_pattern(w, 0, len);
    s3_session_parts(scratch, ID1, &parts, &n);
    cr_assert_eq(n, 4, "30 MiB sent as 5+5+10+10, 3 MiB waiting");
    cr_assert_eq(parts[0].size, 5 * MIB);
    cr_assert_eq(parts[1].size, 5 * MIB);
    cr_assert_eq(parts[2].size, 10 * MIB);
    cr_assert_eq(parts[3].size, 10 * MIB);
    free(parts);
    cr_assert_eq(blobstore_commit(bs, w, &d), REG_OK);
    blob_writer_close(w, 0);
    verify_range(bs, &d, 0, len);
    done(bs);
}

/* A restart: the writer is dropped without a commit, the store closed, and a
 * new store instance takes the session up at its checkpoint. keep falls in
 * the middle of a part that went to S3 after the checkpoint. */
Test(blobstore_s3, a_session_resumes_after_a_restart_from_its_parts_and_checkpointed_tail)
{
    struct blobstore *bs;
    struct blob_writer *w = NULL;
    const uint64_t ckpt = 7 * MIB + 5, len = 19 * MIB + 77;
    struct digest d;
    uint64_t size;

    bs = fresh(&backends[1]);
    pattern_digest(len, &d);
    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    append_pattern(w, 0, ckpt);
    cr_assert_eq(blob_writer_checkpoint(w), REG_OK);
    /* Unacknowledged: part 2 (5..10 MiB) goes to S3 with bytes on both
     * sides of the checkpoint, and part 3 too. */
    append_pattern(w, ckpt, 16 * MIB);
    blob_writer_close(w, 0);
    blobstore_close(bs);

    cr_assert_eq(open_s3(scratch, &bs), REG_OK);
    cr_assert_eq(blobstore_writer_size(bs, ID1, &size), REG_OK);
    cr_assert_geq(size, ckpt);
    cr_assert_eq(blobstore_writer_reopen(bs, ID1, ckpt, &w), REG_OK);
    append_pattern(w, ckpt, 12 * MIB);
    cr_assert_eq(blob_writer_checkpoint(w), REG_OK);
    append_pattern(w, 12 * MIB, 13 * MIB);
    /* A failed request gives back what it brought. */
    cr_assert_eq(blob_writer_truncate(w, 12 * MIB), REG_OK);
    append_pattern(w, 12 * MIB, len);
    cr_assert_eq(blobstore_commit(bs, w, &d), REG_OK);
    blob_writer_close(w, 0);
    verify_range(bs, &d, 0, len);
    cr_assert_eq(blobstore_writer_size(bs, ID1, &size), REG_E_UPLOAD_UNKNOWN);
    done(bs);
}

Test(blobstore_s3, a_discarded_session_leaves_no_multipart_upload)
{
    struct blobstore *bs = fresh(&backends[1]);
    struct blob_writer *w = NULL;
    int n = 0;

    cr_assert_eq(blobstore_writer_create(bs, ID1, &w), REG_OK);
    append_pattern(w, 0, 6 * MIB);
    blob_writer_close(w, 0);
    cr_assert_eq(blobstore_each_writer(bs, count_writer, &n), REG_OK);
    cr_assert_eq(n, 1);
    {
        uint64_t bytes;

        cr_assert_eq(blobstore_writer_remove(bs, ID1, &bytes), REG_OK);
        cr_assert_geq(bytes, 5 * MIB);
    }
    n = 0;
    cr_assert_eq(blobstore_each_writer(bs, count_writer, &n), REG_OK);
    cr_assert_eq(n, 0, "neither the local session nor its multipart upload is left");
    done(bs);
}
