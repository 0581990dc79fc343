/* A full disk and a full index: 507 with a message that says which, no
 * partial bytes left behind, reads, DELETEs and GC go on, and pushes resume
 * once there is room, without a restart. The disk is a small tmpfs mounted
 * by the test (root only; skipped otherwise). */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <jansson.h>

#include "harness.h"

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MIB (1024 * 1024)
#define DLEN 200 /* room for a digest string */

static struct server srv;
static char mnt[400]; /* the tmpfs mounted for a test, or "" */

static void init(void)
{
    memset(&srv, 0, sizeof(srv));
    mnt[0] = '\0';
}

static void print_log(void)
{
    char path[400], *line = NULL;
    size_t cap = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/server.log", srv.root);
    f = fopen(path, "r");
    if (!f)
        return;
    fprintf(stderr, "---- %s\n", path);
    while (getline(&line, &cap, f) > 0)
        fputs(line, stderr);
    free(line);
    fclose(f);
}

static void fini(void)
{
    int rc = server_stop(&srv);

    /* The server is gone: nothing holds the mount any more. */
    if (mnt[0] && umount2(mnt, MNT_DETACH) != 0)
        cr_log_error("umount %s: %s", mnt, strerror(errno));
    mnt[0] = '\0';
    if (rc != 0 || getenv("HARNESS_LOG"))
        print_log();
    if (srv.root[0])
        server_destroy(&srv);
    cr_expect_eq(rc, 0, "registry exited with %d", rc);
}

TestSuite(full, .init = init, .fini = fini, .timeout = 90);

/* ---- helpers ---------------------------------------------------------------- */

/* Mount a tmpfs of size on dir, in a mount namespace of this test process
 * when it can have one, so that a test killed by its timeout leaves no
 * mount behind. */
static int mount_tmpfs(const char *dir, const char *size)
{
    char opts[64];

    if (unshare(CLONE_NEWNS) == 0)
        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    snprintf(opts, sizeof(opts), "size=%s", size);
    return mount("tmpfs", dir, "tmpfs", 0, opts);
}

/* Free bytes of the file system holding path. */
static unsigned long long free_bytes(const char *path)
{
    struct statvfs v;

    cr_assert_eq(statvfs(path, &v), 0);
    return (unsigned long long)v.f_bavail * v.f_frsize;
}

/* Start a GC run now (SIGUSR1), wait for its log line; blobs freed into
 * *blobs. */
static void gc_now(unsigned long long *blobs, unsigned long long *bytes)
{
    char line[1024] = "";
    unsigned long long m = 0;
    int before = server_log_find(&srv, "gc: freed ", NULL, 0), i;

    kill(srv.pid, SIGUSR1);
    for (i = 0; i < 3000 && server_log_find(&srv, "gc: freed ", line, sizeof(line)) == before; i++)
        usleep(10000);
    cr_assert_gt(server_log_find(&srv, "gc: freed ", line, sizeof(line)), before,
                 "no GC run logged within 30 s of SIGUSR1 (or it failed: %d lines say 'gc: ')",
                 server_log_find(&srv, "gc: ", NULL, 0));
    cr_assert_eq(
        sscanf(line, "gc: freed %llu manifests, %llu blobs (%llu bytes)", &m, blobs, bytes), 3,
        "%s", line);
}

/* The message of the first error in an OCI error body, or "". */
static const char *error_message(const struct resp *r, char *buf, size_t size)
{
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    const char *m = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "errors"), 0), "message"));

    snprintf(buf, size, "%s", m ? m : "");
    json_decref(j);
    return buf;
}

static void expect_507(const struct resp *r, const char *message, const char *what)
{
    char code[64], msg[512];

    cr_assert_eq(r->status, 507, "%s: %ld %s", what, r->status, r->body);
    cr_assert_str_eq(resp_error_code(r, code, sizeof(code)), "UNKNOWN", "%s: %s", what, r->body);
    error_message(r, msg, sizeof(msg));
    cr_assert_eq(strncmp(msg, message, strlen(message)), 0, "%s: message '%s', expected '%s...'",
                 what, msg, message);
}

/* A monolithic push; the whole answer in out. */
static void push(const char *repo, const void *data, size_t len, char *d, size_t dsize,
                 struct resp *out)
{
    char path[1024];

    digest_str("sha256", data, len, d, dsize);
    snprintf(path, sizeof(path), "/v2/%.300s/blobs/uploads/?digest=%.200s", repo, d);
    http(&srv, "POST", path, data, len, NULL, out);
}

static long req(const char *method, const char *path)
{
    struct resp r;
    long st;

    http(&srv, method, path, NULL, 0, NULL, &r);
    st = r.status;
    resp_free(&r);
    return st;
}

static void expect_blob_whole(const char *repo, const char *digest, const char *what)
{
    char path[1024], got[DLEN] = "";
    struct resp r;

    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "%s: GET %s: %ld", what, path, r.status);
    digest_str("sha256", r.body, r.len, got, sizeof(got));
    cr_assert_str_eq(got, digest, "%s: %s read back with other bytes", what, path);
    resp_free(&r);
}

/* An image manifest of one config and one layer, with an annotation. */
static char *manifest_text(const char *cfg, size_t cfg_len, const char *layer, size_t len,
                           const char *note)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);

    cr_assert(f);
    fprintf(f,
            "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
            "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
            "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\","
            "\"digest\":\"%s\",\"size\":%zu}],\"annotations\":{\"note\":\"%s\"}}",
            OCI_MANIFEST, cfg, cfg_len, layer, len, note);
    fclose(f);
    return text;
}

static void put_manifest(const char *repo, const char *ref, const char *body, struct resp *out)
{
    char path[1024];
    const char *h[] = {"Content-Type: " OCI_MANIFEST, NULL};

    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    http(&srv, "PUT", path, body, strlen(body), h, out);
}

/* Random lowercase hex, NUL-terminated, n characters. */
static char *rand_hex(size_t n)
{
    unsigned char *b = rand_bytes(n / 2 + 1);
    char *s = malloc(n + 1);
    size_t i;

    cr_assert(s);
    for (i = 0; i < n; i++)
        s[i] = "0123456789abcdef"[(b[i / 2] >> (i % 2 ? 4 : 0)) & 15];
    s[n] = '\0';
    free(b);
    return s;
}

/* ---- full disk ---------------------------------------------------------------- */

Test(full, full_disk_is_507_reads_deletes_and_gc_go_on_and_pushes_resume_without_restart)
{
    const char *c = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"full\":1}";
    char cfg[DLEN], l0[DLEN], md[DLEN], big[20][DLEN], d[DLEN], loc[400], cr[64], path[1200];
    char uploads[900], *small = rand_bytes(MIB), *chunk = rand_bytes(256 * 1024), *m, *data;
    const char *h[] = {cr, NULL};
    unsigned long long blobs = 0, bytes = 0;
    struct resp r;
    struct stat st;
    int n, fd, i;

    server_prepare(&srv);
    snprintf(mnt, sizeof(mnt), "%s/data", srv.root);
    cr_assert_eq(mkdir(mnt, 0755), 0);
    if (mount_tmpfs(mnt, "48m") != 0) {
        int e = errno;

        mnt[0] = '\0';
        cr_skip_test("cannot mount a tmpfs (%s): the full-disk test needs root", strerror(e));
    }
    server_launch(&srv, "[storage]\ndelete = true\n\n[gc]\ninterval = 0\ngrace = 0\n");

    /* An image, and an upload with an acknowledged checkpoint. */
    push_blob(&srv, "full/a", c, strlen(c), cfg, sizeof(cfg));
    push_blob(&srv, "full/a", small, MIB, l0, sizeof(l0));
    m = manifest_text(cfg, strlen(c), l0, MIB, "before");
    digest_str("sha256", m, strlen(m), md, sizeof(md));
    put_manifest("full/a", "v0", m, &r);
    cr_assert_eq(r.status, 201, "%s", r.body);
    resp_free(&r);
    start_upload(&srv, "full/a", loc, sizeof(loc));
    snprintf(cr, sizeof(cr), "Content-Range: 0-%d", 256 * 1024 - 1);
    http(&srv, "PATCH", loc, chunk, 256 * 1024, h, &r);
    cr_assert_eq(r.status, 202, "%s", r.body);
    resp_free(&r);

    /* Fill the disk through the registry. */
    for (n = 0; n < 20; n++) {
        data = rand_bytes(4 * MIB);
        push("full/a", data, 4 * MIB, big[n], sizeof(big[n]), &r);
        free(data);
        if (r.status != 201)
            break;
        resp_free(&r);
    }
    cr_assert_lt(n, 20, "48 MiB took 20 pushes of 4 MiB: the disk never filled");
    cr_assert_geq(n, 5, "full after %d pushes of 4 MiB on a 48 MiB disk", n);
    expect_507(&r, "storage full: no space left on the disk", "push on a full disk");
    resp_free(&r);

    /* Nothing partial: the only upload file is the session's, at its checkpoint. */
    snprintf(uploads, sizeof(uploads), "%s/uploads", mnt);
    cr_assert_eq(count_files(uploads), 1, "uploads/ holds %d files after the refused push",
                 count_files(uploads));

    /* And now really full: someone else takes the last bytes. */
    snprintf(path, sizeof(path), "%s/filler", mnt);
    fd = open(path, O_WRONLY | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    while (write(fd, chunk, 64 * 1024) > 0)
        ;
    while (write(fd, chunk, 512) > 0)
        ;
    close(fd);
    cr_log_info("full disk: %d pushes of 4 MiB, %llu bytes left", n, free_bytes(mnt));

    snprintf(cr, sizeof(cr), "Content-Range: %d-%d", 256 * 1024, 512 * 1024 - 1);
    http(&srv, "PATCH", loc, chunk, 256 * 1024, h, &r);
    expect_507(&r, "storage full: no space left on the disk", "PATCH on a full disk");
    resp_free(&r);
    http(&srv, "GET", loc, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 204, "the session after a refused PATCH: %ld %s", r.status, r.body);
    cr_assert_str_eq(resp_header(&r, "Range", cr, sizeof(cr)), "0-262143",
                     "the session moved past its acknowledged checkpoint");
    resp_free(&r);
    {
        char *uuid = strrchr(loc, '/') + 1, *q = strchr(uuid, '?');

        if (q)
            *q = '\0';
        snprintf(path, sizeof(path), "%s/%s", uploads, uuid);
        cr_assert_eq(stat(path, &st), 0, "upload file %s gone", path);
        cr_assert_eq(st.st_size, 256 * 1024, "upload file holds %lld bytes past its checkpoint",
                     (long long)st.st_size - 256 * 1024);
        snprintf(path, sizeof(path), "/v2/full/a/blobs/uploads/%s", uuid);
    }
    cr_assert_eq(count_files(uploads), 1);

    /* Reads go on. */
    expect_blob_whole("full/a", l0, "a layer on a full disk");
    expect_blob_whole("full/a", big[0], "the first big blob on a full disk");
    http(&srv, "GET", "/v2/full/a/manifests/v0", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(r.len == strlen(m) && !memcmp(r.body, m, r.len));
    resp_free(&r);

    /* DELETEs and GC free space through the API while the disk is full. */
    cr_assert_eq(req("DELETE", path), 204, "cancelling an upload on a full disk");
    snprintf(path, sizeof(path), "/v2/full/a/manifests/%s", md);
    cr_assert_eq(req("DELETE", path), 202, "manifest DELETE on a full disk");
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/v2/full/a/blobs/%.200s", big[i]);
        cr_assert_eq(req("DELETE", path), 202, "blob DELETE %d on a full disk", i);
    }
    gc_now(&blobs, &bytes);
    cr_assert_geq(blobs, (unsigned long long)n, "GC on a full disk freed %llu blobs", blobs);
    cr_assert_geq(free_bytes(mnt), (unsigned long long)n * 4 * MIB - MIB,
                  "only %llu bytes free after GC", free_bytes(mnt));
    cr_assert_eq(count_files(uploads), 0);

    /* Pushes work again, without a restart. */
    data = rand_bytes(4 * MIB);
    push("full/a", data, 4 * MIB, d, sizeof(d), &r);
    cr_assert_eq(r.status, 201, "push after GC freed space: %ld %s", r.status, r.body);
    resp_free(&r);
    free(m);
    m = manifest_text(cfg, strlen(c), d, 4 * MIB, "after");
    push_blob(&srv, "full/a", c, strlen(c), cfg, sizeof(cfg));
    put_manifest("full/a", "v1", m, &r);
    cr_assert_eq(r.status, 201, "manifest after GC freed space: %ld %s", r.status, r.body);
    resp_free(&r);
    expect_blob_whole("full/a", d, "the blob pushed after the disk had room again");
    free(data);
    free(m);
    free(small);
    free(chunk);
}

/* ---- full index ----------------------------------------------------------------- */

Test(full, full_index_is_507_reads_and_deletes_go_on_and_pushes_resume_after_gc)
{
    const char *c = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"index\":1}";
    char cfg[DLEN], lay[DLEN], md[40][DLEN], d[DLEN], path[1200], tag[32];
    char *data = rand_bytes(4096), *m[40], *note;
    unsigned long long blobs = 0, bytes = 0;
    struct resp r;
    int n, i;

    server_start(&srv, "[storage]\ndelete = true\nindex_max_size = 1M\n\n[gc]\ninterval = 0\n"
                       "grace = 0\n");
    push_blob(&srv, "idx/a", c, strlen(c), cfg, sizeof(cfg));
    push_blob(&srv, "idx/a", data, 4096, lay, sizeof(lay));
    for (n = 0; n < 40; n++) {
        note = rand_hex(200 * 1024);
        m[n] = manifest_text(cfg, strlen(c), lay, 4096, note);
        free(note);
        digest_str("sha256", m[n], strlen(m[n]), md[n], sizeof(md[n]));
        snprintf(tag, sizeof(tag), "t%d", n);
        put_manifest("idx/a", tag, m[n], &r);
        if (r.status != 201)
            break;
        resp_free(&r);
    }
    cr_assert_lt(n, 40, "40 manifests of 200 KiB fit in an index of 1 MiB");
    cr_assert_geq(n, 1, "not one manifest fit");
    expect_507(&r, "storage full: the metadata index reached its index_max_size",
               "manifest PUT on a full index");
    resp_free(&r);
    cr_log_info("full index: %d manifests of 200 KiB fit in index_max_size = 1M", n);

    /* Reads go on. */
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/v2/idx/a/manifests/t%d", i);
        http(&srv, "GET", path, NULL, 0, NULL, &r);
        cr_assert_eq(r.status, 200, "GET t%d on a full index: %ld", i, r.status);
        cr_assert(r.len == strlen(m[i]) && !memcmp(r.body, m[i], r.len));
        resp_free(&r);
    }
    expect_blob_whole("idx/a", lay, "a layer on a full index");

    /* DELETEs work while the index is full; GC too. */
    for (i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "/v2/idx/a/manifests/%.200s", md[i]);
        cr_assert_eq(req("DELETE", path), 202, "manifest DELETE %d on a full index", i);
    }
    gc_now(&blobs, &bytes);

    /* Pushes work again, without a restart. */
    push_blob(&srv, "idx/a", c, strlen(c), cfg, sizeof(cfg));
    push("idx/a", data, 4096, d, sizeof(d), &r);
    cr_assert_eq(r.status, 201, "blob push after the index had room again: %ld %s", r.status,
                 r.body);
    resp_free(&r);
    put_manifest("idx/a", "again", m[n], &r);
    cr_assert_eq(r.status, 201, "manifest PUT after the index had room again: %ld %s", r.status,
                 r.body);
    resp_free(&r);
    http(&srv, "GET", "/v2/idx/a/manifests/again", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(r.len == strlen(m[n]) && !memcmp(r.body, m[n], r.len));
    resp_free(&r);
    for (i = 0; i <= n; i++)
        free(m[i]);
    free(data);
}
