/* A real store for unit tests: a blob store and an LMDB index in a fresh
 * temporary directory, upload sessions and the service over them. Each
 * criterion test runs in its own process, so one static fixture is enough. */
#ifndef REG_TEST_FIXTURE_H
#define REG_TEST_FIXTURE_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "../common/err.h"
#include "../service/service.h"
#include "../service/uploads.h"
#include "../storage/blobstore.h"
#include "../storage/blobstore_s3.h"
#include "../storage/digest.h"
#include "../storage/index.h"

struct fixture {
    char root[64];
    struct blobstore *bs;
    struct index *ix;
    struct uploads *us;
    struct service *svc;
};

static struct fixture fx;

static inline int fixture_rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void fixture_open(int delete_enabled)
{
    snprintf(fx.root, sizeof(fx.root), "/tmp/regtest-unit-XXXXXX");
    cr_assert_not_null(mkdtemp(fx.root));
    cr_assert_eq(blobstore_open(fx.root, &fx.bs), REG_OK);
    cr_assert_eq(index_open(blobstore_index_dir(fx.bs), (size_t)16 << 20, &fx.ix), REG_OK);
    cr_assert_eq(uploads_new(fx.bs, fx.ix, &fx.us), REG_OK);
    cr_assert_eq(svc_new(fx.bs, fx.ix, fx.us, delete_enabled, &fx.svc), REG_OK);
}

/* The same over the S3 backend, on the RADOS Gateway that
 * scripts/with-ceph.sh names in REGISTRY_S3_ENV (bucket "registry-unit",
 * a fresh prefix); skips the test when there is none. */
static inline void fixture_open_s3(int delete_enabled)
{
    struct blobstore_s3_config c;
    const char *path = getenv("REGISTRY_S3_ENV");
    char line[512], *v;
    struct s3 *s = NULL;
    FILE *f;

    if (!path || !(f = fopen(path, "r")))
        cr_skip_test("no Ceph RADOS Gateway (REGISTRY_S3_ENV unset)");
    memset(&c, 0, sizeof(c));
    while (fgets(line, sizeof(line), f)) {
        line[strcspn(line, "\n")] = '\0';
        v = strchr(line, '=');
        if (!v)
            continue;
        *v++ = '\0';
        if (!strcmp(line, "S3_ENDPOINT"))
            snprintf(c.s3.endpoint, sizeof(c.s3.endpoint), "%s", v);
        else if (!strcmp(line, "S3_REGION"))
            snprintf(c.s3.region, sizeof(c.s3.region), "%s", v);
        else if (!strcmp(line, "S3_ACCESS_KEY"))
            snprintf(c.s3.access_key, sizeof(c.s3.access_key), "%s", v);
        else if (!strcmp(line, "S3_SECRET_KEY"))
            snprintf(c.s3.secret_key, sizeof(c.s3.secret_key), "%s", v);
    }
    fclose(f);
    snprintf(c.s3.bucket, sizeof(c.s3.bucket), "registry-unit");
    snprintf(c.s3.prefix, sizeof(c.s3.prefix), "u%ld-%u/", (long)getpid(), (unsigned)rand());
    c.s3.path_style = 1;
    cr_assert_eq(s3_new(&c.s3, &s), REG_OK);
    cr_assert_eq(s3_bucket_create(s), REG_OK);
    s3_free(s);
    snprintf(fx.root, sizeof(fx.root), "/tmp/regtest-unit-XXXXXX");
    cr_assert_not_null(mkdtemp(fx.root));
    cr_assert_eq(blobstore_open_s3(fx.root, &c, &fx.bs), REG_OK);
    cr_assert_eq(index_open(blobstore_index_dir(fx.bs), (size_t)16 << 20, &fx.ix), REG_OK);
    cr_assert_eq(uploads_new(fx.bs, fx.ix, &fx.us), REG_OK);
    cr_assert_eq(svc_new(fx.bs, fx.ix, fx.us, delete_enabled, &fx.svc), REG_OK);
}

static inline void fixture_close(void)
{
    svc_free(fx.svc);
    uploads_free(fx.us);
    index_close(fx.ix);
    blobstore_close(fx.bs);
    nftw(fx.root, fixture_rm, 16, FTW_DEPTH | FTW_PHYS);
    memset(&fx, 0, sizeof(fx));
}

/* Push len bytes as a blob of repo, the way a monolithic upload does. */
static inline void fixture_blob(const char *repo, const void *data, size_t len, struct digest *out)
{
    struct upload *u = NULL;
    uint64_t size;

    digest_of(DIGEST_SHA256, data, len, out);
    cr_assert_eq(upload_create(fx.us, repo, 0, &u), REG_OK);
    cr_assert_eq(upload_write(u, data, len), REG_OK);
    cr_assert_eq(upload_finish(u, out, &size), REG_OK);
    upload_release(u);
    cr_assert_eq(size, len);
}

/* A blob's reference count (the number of manifests that use it). */
static inline uint64_t fixture_refcount(const char *digest)
{
    struct index_txn *t = NULL;
    struct index_blob b;

    cr_assert_eq(index_begin(fx.ix, INDEX_READ, &t), REG_OK);
    cr_assert_eq(index_get_blob(t, digest, &b), REG_OK);
    index_abort(t);
    return b.refcount;
}

#endif
