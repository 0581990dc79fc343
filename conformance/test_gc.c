/* Storage lifecycle against a real server: the root lock, garbage
 * collection (what it frees and what it keeps, byte for byte), deletes that
 * never break an image, stale uploads, and the races between GC, deletes
 * and pushes, up to a kill -9 loop. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <jansson.h>

#include "harness.h"

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MIB (1024 * 1024)
#define DLEN 200 /* room for a digest string */

/* GC only when poked, and nothing is young enough to be spared. */
#define CONF_GC0 "[storage]\ndelete = true\n\n[gc]\ninterval = 0\ngrace = 0\n"

static struct server srv;

static void init(void)
{
    memset(&srv, 0, sizeof(srv));
}

static void fini(void)
{
    if (srv.root[0])
        server_destroy(&srv);
}

TestSuite(gc, .init = init, .fini = fini, .timeout = 60);
TestSuite(gc_race, .init = init, .fini = fini, .timeout = 90);
TestSuite(gc_crash, .init = init, .fini = fini, .timeout = 150);

/* ---- helpers ---------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Path of a file in the data root. */
static const char *data_path(const char *rel, char *buf, size_t size)
{
    snprintf(buf, size, "%s/data/%s", srv.root, rel);
    return buf;
}

static const char *blob_file(const char *digest, char *buf, size_t size)
{
    const char *hex = digest + strlen("sha256:");

    snprintf(buf, size, "%s/data/blobs/sha256/%.2s/%s", srv.root, hex, hex);
    return buf;
}

static int exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

/* What one GC run says it freed. */
struct freed {
    unsigned long long manifests, blobs, blob_bytes, repos, sessions, stray, stray_bytes, orphans,
        orphan_bytes;
};

/* Start a GC run in the server now (SIGUSR1) and wait for its log line. */
static void gc_now(struct freed *f)
{
    char line[1024] = "";
    int before = server_log_find(&srv, "gc: freed ", NULL, 0), i;

    cr_assert_gt(srv.pid, 0);
    kill(srv.pid, SIGUSR1);
    for (i = 0; i < 3000 && server_log_find(&srv, "gc: freed ", line, sizeof(line)) == before; i++)
        usleep(10000);
    cr_assert_gt(server_log_find(&srv, "gc: freed ", line, sizeof(line)), before,
                 "no GC run was logged within 30 s of SIGUSR1");
    memset(f, 0, sizeof(*f));
    cr_assert_eq(sscanf(line,
                        "gc: freed %llu manifests, %llu blobs (%llu bytes), %llu empty "
                        "repositories, %llu upload sessions and %llu stray upload files (%llu "
                        "bytes), %llu orphan blob files (%llu bytes)",
                        &f->manifests, &f->blobs, &f->blob_bytes, &f->repos, &f->sessions,
                        &f->stray, &f->stray_bytes, &f->orphans, &f->orphan_bytes),
                 9, "GC log line not as documented: %s", line);
}

/* A monolithic blob push without asserting: its status, digest into d. */
static long push_status(const char *repo, const void *data, size_t len, char *d, size_t dsize,
                        char *code, size_t csize)
{
    char path[1024];
    struct resp r;
    long st;

    digest_str("sha256", data, len, d, dsize);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, d);
    http(&srv, "POST", path, data, len, NULL, &r);
    st = r.status;
    if (code)
        resp_error_code(&r, code, csize);
    resp_free(&r);
    return st;
}

/* An image manifest for a config and layers (digest, size) already pushed;
 * annotation (may be NULL) goes in as the value of "note". Caller frees. */
static char *manifest_text(const char *cfg, size_t cfg_len, int n, char (*layers)[DLEN],
                           const size_t *lens, const char *annotation)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    int i;

    cr_assert(f);
    fprintf(f,
            "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
            "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
            "\"layers\":[",
            OCI_MANIFEST, cfg, cfg_len);
    for (i = 0; i < n; i++)
        fprintf(f,
                "%s{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":"
                "\"%s\",\"size\":%zu}",
                i ? "," : "", layers[i], lens[i]);
    fprintf(f, "]");
    if (annotation)
        fprintf(f, ",\"annotations\":{\"note\":\"%s\"}", annotation);
    fprintf(f, "}");
    fclose(f);
    return text;
}

static long put_manifest(const char *repo, const char *ref, const char *ct, const char *body,
                         struct resp *out)
{
    return http_put_manifest(&srv, repo, ref, ct, body, strlen(body), out);
}

/* GET a blob: its status, and *whole = its bytes hash to digest. */
static long get_blob(const char *repo, const char *digest, int *whole)
{
    char path[1024], got[200] = "";
    struct resp r;
    long st;

    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    st = r.status;
    if (st == 200)
        digest_str("sha256", r.body, r.len, got, sizeof(got));
    *whole = st == 200 && !strcmp(got, digest);
    resp_free(&r);
    return st;
}

static void expect_blob_whole(const char *repo, const char *digest, const char *what)
{
    int whole;
    long st = get_blob(repo, digest, &whole);

    cr_assert_eq(st, 200, "%s: GET %s blob %s: %ld", what, repo, digest, st);
    cr_assert(whole, "%s: %s blob %s read back with other bytes", what, repo, digest);
}

/* GET a manifest by reference: its status; *whole = its bytes hash to
 * digest. The body (caller frees) into body when not NULL. */
static long get_manifest(const char *repo, const char *ref, const char *digest, int *whole,
                         char **body)
{
    char path[1024], got[200] = "";
    const char *h[] = {"Accept: " OCI_MANIFEST ", " OCI_INDEX, NULL};
    struct resp r;
    long st;

    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    http(&srv, "GET", path, NULL, 0, h, &r);
    st = r.status;
    if (st == 200)
        digest_str("sha256", r.body, r.len, got, sizeof(got));
    *whole = st == 200 && !strcmp(got, digest);
    if (body)
        *body = st == 200 ? strdup(r.body) : NULL;
    resp_free(&r);
    return st;
}

/* Deterministic bytes for (a, b), so that any process can rebuild them. */
static char *pattern(int a, int b, size_t len)
{
    char *p = malloc(len);
    unsigned x = (unsigned)a * 2654435761u ^ (unsigned)b * 40503u ^ 0x9e3779b9u;
    size_t k;

    cr_assert(p);
    for (k = 0; k < len; k++) {
        x = x * 1103515245u + 12345u;
        p[k] = (char)(x >> 16);
    }
    return p;
}

/* ---- the root lock ----------------------------------------------------------- */

Test(gc, second_serve_and_gc_on_a_live_root_exit_at_once_naming_the_holder_pid)
{
    char args[1024], out[8192], want[64], path[1024], d[200];
    double t0;
    int rc;
    FILE *f;
    long pid = 0;

    server_start(&srv, CONF_GC0);
    snprintf(want, sizeof(want), "in use by process %ld", (long)srv.pid);

    snprintf(args, sizeof(args), "serve --listen 127.0.0.1:0 --root %s/data --config %s", srv.root,
             srv.config);
    t0 = now_s();
    rc = registry_run(args, out, sizeof(out));
    cr_assert_eq(rc, 1, "second serve on a live root: exit %d: %s", rc, out);
    cr_assert_lt(now_s() - t0, 5.0, "second serve took %.1f s to give up", now_s() - t0);
    cr_assert(strstr(out, want), "second serve does not name the holder (%s): %s", want, out);

    snprintf(args, sizeof(args), "gc --root %s/data --config %s", srv.root, srv.config);
    t0 = now_s();
    rc = registry_run(args, out, sizeof(out));
    cr_assert_eq(rc, 1, "gc on a live root: exit %d: %s", rc, out);
    cr_assert_lt(now_s() - t0, 5.0);
    cr_assert(strstr(out, want), "gc does not name the holder (%s): %s", want, out);

    snprintf(args, sizeof(args), "gc --dry-run --root %s/data --config %s", srv.root, srv.config);
    rc = registry_run(args, out, sizeof(out));
    cr_assert_eq(rc, 0, "gc --dry-run beside a live server: exit %d: %s", rc, out);
    cr_assert(strstr(out, "would free"), "dry run says nothing of what it would free: %s", out);

    /* The lock file names the holder too, and the holder serves on. */
    f = fopen(data_path("lock", path, sizeof(path)), "r");
    cr_assert(f, "no %s", path);
    cr_assert_eq(fscanf(f, "%ld", &pid), 1);
    fclose(f);
    cr_assert_eq(pid, (long)srv.pid);
    push_blob(&srv, "lock/a", "still serving", 13, d, sizeof(d));
    expect_blob_whole("lock/a", d, "after the refused second processes");
}

Test(gc, gc_command_on_a_stopped_root_frees_and_the_server_starts_again)
{
    char args[1024], out[8192], d[200], keep[200], path[1024];
    char *data = rand_bytes(MIB);
    int rc;

    server_start(&srv, CONF_GC0);
    cr_assert_eq(push_status("cmd/a", data, MIB, d, sizeof(d), NULL, 0), 201);
    cr_assert_eq(push_status("cmd/a", data, 1000, keep, sizeof(keep), NULL, 0), 201);
    snprintf(path, sizeof(path), "/v2/cmd/a/blobs/%s", d);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    cr_assert_eq(server_stop(&srv), 0);
    sleep(1); /* the 1000-byte blob is now as old as the deleted one: both go */

    snprintf(args, sizeof(args), "gc --root %s/data --config %s", srv.root, srv.config);
    rc = registry_run(args, out, sizeof(out));
    cr_assert_eq(rc, 0, "registry gc on a stopped root: exit %d: %s", rc, out);
    cr_assert(strstr(out, "gc: freed 0 manifests, 2 blobs (1049576 bytes)"),
              "gc did not report the two unreferenced blobs: %s", out);
    cr_assert_not(exists(blob_file(d, path, sizeof(path))), "%s still on disk", path);
    cr_assert_not(exists(blob_file(keep, path, sizeof(path))), "%s still on disk", path);

    server_restart(&srv);
    snprintf(path, sizeof(path), "/v2/cmd/a/blobs/%s", d);
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 404);
    cr_assert_not(in_catalog(&srv, "cmd/a"), "an emptied repository stays in the catalog");
    free(data);
}

/* ---- what GC frees and what it keeps ----------------------------------------- */

Test(gc, gc_frees_an_unreferenced_layer_on_disk_and_keeps_shared_ones_byte_for_byte)
{
    char cfg1[200], cfg2[200], lay1[2][DLEN], lay2[2][DLEN], m1d[200], m2d[200], path[1024];
    char blobs[1024], code[64];
    const char *c1 = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"image\":1}";
    const char *c2 = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"image\":2}";
    size_t len1[2] = {3 * MIB, 3 * MIB}, len2[2] = {3 * MIB, 2 * MIB};
    char *excl = rand_bytes(len1[0]), *shared = rand_bytes(len1[1]), *own2 = rand_bytes(len2[1]);
    char *m1, *m2, *back;
    unsigned long long before, after;
    struct freed fr;
    int whole;

    server_start(&srv, CONF_GC0);
    push_blob(&srv, "gc/one", c1, strlen(c1), cfg1, sizeof(cfg1));
    push_blob(&srv, "gc/one", excl, len1[0], lay1[0], sizeof(lay1[0]));
    push_blob(&srv, "gc/one", shared, len1[1], lay1[1], sizeof(lay1[1]));
    m1 = manifest_text(cfg1, strlen(c1), 2, lay1, len1, NULL);
    digest_str("sha256", m1, strlen(m1), m1d, sizeof(m1d));
    cr_assert_eq(put_manifest("gc/one", "v1", OCI_MANIFEST, m1, NULL), 201);

    push_blob(&srv, "gc/two", c2, strlen(c2), cfg2, sizeof(cfg2));
    push_blob(&srv, "gc/two", shared, len2[0], lay2[0], sizeof(lay2[0]));
    push_blob(&srv, "gc/two", own2, len2[1], lay2[1], sizeof(lay2[1]));
    m2 = manifest_text(cfg2, strlen(c2), 2, lay2, len2, NULL);
    digest_str("sha256", m2, strlen(m2), m2d, sizeof(m2d));
    cr_assert_eq(put_manifest("gc/two", "v1", OCI_MANIFEST, m2, NULL), 201);

    data_path("blobs", blobs, sizeof(blobs));
    before = dir_bytes(blobs);
    cr_assert_geq(before, 8ULL * MIB + strlen(c1) + strlen(c2));

    cr_assert_eq(http_status(&srv, "DELETE", "/v2/gc/one/manifests/v1", NULL, 0), 202);
    snprintf(path, sizeof(path), "/v2/gc/one/manifests/%s", m1d);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    cr_assert_eq(http_status(&srv, "GET", path, code, sizeof(code)), 404);
    cr_assert_str_eq(code, "MANIFEST_UNKNOWN");

    gc_now(&fr);
    cr_assert_eq(fr.blobs, 2, "freed %llu blobs, expected the config and the own layer", fr.blobs);
    cr_assert_eq(fr.blob_bytes, len1[0] + strlen(c1), "freed %llu bytes", fr.blob_bytes);
    cr_assert_not(exists(blob_file(lay1[0], path, sizeof(path))), "%s still on disk", path);
    cr_assert_not(exists(blob_file(cfg1, path, sizeof(path))), "%s still on disk", path);
    cr_assert(exists(blob_file(lay1[1], path, sizeof(path))), "shared layer %s gone", path);
    after = dir_bytes(blobs);
    cr_assert_eq(before - after, len1[0] + strlen(c1),
                 "blobs/ shrank by %llu bytes, expected %zu (before %llu, after %llu)",
                 before - after, len1[0] + strlen(c1), before, after);

    snprintf(path, sizeof(path), "/v2/gc/one/blobs/%s", lay1[0]);
    cr_assert_eq(http_status(&srv, "GET", path, code, sizeof(code)), 404);
    cr_assert_str_eq(code, "BLOB_UNKNOWN");
    expect_blob_whole("gc/two", cfg2, "image 2 config");
    expect_blob_whole("gc/two", lay2[0], "image 2 shared layer");
    expect_blob_whole("gc/two", lay2[1], "image 2 own layer");
    cr_assert_eq(get_manifest("gc/two", "v1", m2d, &whole, &back), 200);
    cr_assert(whole && !strcmp(back, m2), "image 2 manifest changed");
    free(back);

    /* gc/one still links the shared layer: it stays listed until that goes. */
    cr_assert(in_catalog(&srv, "gc/one"));
    snprintf(path, sizeof(path), "/v2/gc/one/blobs/%s", lay1[1]);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    gc_now(&fr);
    cr_assert_eq(fr.repos, 1, "freed %llu empty repositories", fr.repos);
    cr_assert_eq(fr.blobs, 0, "the shared layer is still used by gc/two");
    cr_assert_not(in_catalog(&srv, "gc/one"), "an emptied repository stays in the catalog");
    cr_assert(in_catalog(&srv, "gc/two"));
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 404);
    expect_blob_whole("gc/two", lay2[0], "shared layer after its other repository left");
    cr_assert_eq(dir_bytes(blobs), after);
    free(m1);
    free(m2);
    free(excl);
    free(shared);
    free(own2);
}

Test(gc, grace_keeps_unreferenced_blobs_pushed_within_it)
{
    char cfg[200], lay[1][DLEN], md[200], loose[200], path[1024], blobs[1024];
    const char *c = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"grace\":1}";
    size_t len[1] = {MIB};
    char *data = rand_bytes(MIB), *other = rand_bytes(4096), *m;
    unsigned long long before;
    struct freed fr;

    server_start(&srv, "[storage]\ndelete = true\n\n[gc]\ninterval = 0\ngrace = 1h\n");
    push_blob(&srv, "grace/a", c, strlen(c), cfg, sizeof(cfg));
    push_blob(&srv, "grace/a", data, len[0], lay[0], sizeof(lay[0]));
    cr_assert_eq(push_status("grace/a", other, 4096, loose, sizeof(loose), NULL, 0), 201);
    m = manifest_text(cfg, strlen(c), 1, lay, len, NULL);
    digest_str("sha256", m, strlen(m), md, sizeof(md));
    cr_assert_eq(put_manifest("grace/a", md, OCI_MANIFEST, m, NULL), 201);
    snprintf(path, sizeof(path), "/v2/grace/a/manifests/%s", md);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    snprintf(path, sizeof(path), "/v2/grace/a/blobs/%s", loose);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    sleep(1);
    before = dir_bytes(data_path("blobs", blobs, sizeof(blobs)));

    gc_now(&fr);
    cr_assert_eq(fr.blobs, 0, "GC freed %llu blobs pushed within grace", fr.blobs);
    cr_assert_eq(fr.blob_bytes, 0);
    cr_assert_eq(dir_bytes(blobs), before);
    cr_assert(exists(blob_file(lay[0], path, sizeof(path))));
    cr_assert(exists(blob_file(loose, path, sizeof(path))));
    expect_blob_whole("grace/a", lay[0], "unreferenced layer within grace");
    expect_blob_whole("grace/a", cfg, "unreferenced config within grace");
    free(data);
    free(other);
    free(m);
}

Test(gc, untagged_delete_removes_untagged_manifests_and_keeps_tagged_and_index_children)
{
    char cfg[200], lay[1][DLEN], loose[200], tagged[200], child[200], idx[200];
    char children[2][DLEN];
    const char *c = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"untagged\":1}";
    size_t len[1] = {2048};
    char *data = rand_bytes(len[0]), *m[3], ix[1024];
    struct freed fr;
    int i, whole;

    server_start(&srv, "[storage]\ndelete = true\n\n[gc]\ninterval = 0\ngrace = 0\n"
                       "untagged = delete\n");
    push_blob(&srv, "ut/a", c, strlen(c), cfg, sizeof(cfg));
    push_blob(&srv, "ut/a", data, len[0], lay[0], sizeof(lay[0]));
    for (i = 0; i < 3; i++) {
        char note[16];

        snprintf(note, sizeof(note), "m%d", i);
        m[i] = manifest_text(cfg, strlen(c), 1, lay, len, note);
    }
    digest_str("sha256", m[0], strlen(m[0]), loose, sizeof(loose));
    digest_str("sha256", m[1], strlen(m[1]), tagged, sizeof(tagged));
    digest_str("sha256", m[2], strlen(m[2]), child, sizeof(child));
    cr_assert_eq(put_manifest("ut/a", loose, OCI_MANIFEST, m[0], NULL), 201);
    cr_assert_eq(put_manifest("ut/a", "v1", OCI_MANIFEST, m[1], NULL), 201);
    cr_assert_eq(put_manifest("ut/a", child, OCI_MANIFEST, m[2], NULL), 201);
    snprintf(children[0], sizeof(children[0]), "%s", child);
    snprintf(ix, sizeof(ix),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"architecture\":\"amd64\",\"os\":"
             "\"linux\"}}]}",
             OCI_INDEX, OCI_MANIFEST, children[0], strlen(m[2]));
    digest_str("sha256", ix, strlen(ix), idx, sizeof(idx));
    cr_assert_eq(put_manifest("ut/a", "multi", OCI_INDEX, ix, NULL), 201);
    sleep(1);

    gc_now(&fr);
    cr_assert_eq(fr.manifests, 1, "freed %llu manifests, expected the untagged one", fr.manifests);
    cr_assert_eq(get_manifest("ut/a", loose, loose, &whole, NULL), 404);
    cr_assert_eq(get_manifest("ut/a", "v1", tagged, &whole, NULL), 200);
    cr_assert(whole);
    cr_assert_eq(get_manifest("ut/a", child, child, &whole, NULL), 200, "index child removed");
    cr_assert(whole);
    cr_assert_eq(get_manifest("ut/a", "multi", idx, &whole, NULL), 200);
    cr_assert(whole);
    expect_blob_whole("ut/a", lay[0], "layer of the tagged manifest");
    for (i = 0; i < 3; i++)
        free(m[i]);
    free(data);
}

/* ---- deletes that never break an image --------------------------------------- */

Test(gc, blob_delete_is_refused_while_a_manifest_of_the_repository_uses_it)
{
    char cfg[200], lay[1][DLEN], md[200], path[1024], code[64], d2[200];
    const char *c = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"del\":1}";
    size_t len[1] = {8192};
    char *data = rand_bytes(len[0]), *m;
    struct resp r;

    server_start(&srv, CONF_GC0);
    push_blob(&srv, "del/a", c, strlen(c), cfg, sizeof(cfg));
    push_blob(&srv, "del/a", data, len[0], lay[0], sizeof(lay[0]));
    push_blob(&srv, "del/b", data, len[0], d2, sizeof(d2));
    m = manifest_text(cfg, strlen(c), 1, lay, len, NULL);
    digest_str("sha256", m, strlen(m), md, sizeof(md));
    cr_assert_eq(put_manifest("del/a", "v1", OCI_MANIFEST, m, NULL), 201);

    snprintf(path, sizeof(path), "/v2/del/a/blobs/%s", lay[0]);
    http(&srv, "DELETE", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 405, "DELETE of a used layer: %ld %s", r.status, r.body);
    cr_assert_str_eq(resp_error_code(&r, code, sizeof(code)), "UNSUPPORTED", "%s", r.body);
    cr_assert(strstr(r.body, md), "the refusal does not name the manifest %s: %s", md, r.body);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/del/a/blobs/%s", cfg);
    cr_assert_eq(http_status(&srv, "DELETE", path, code, sizeof(code)), 405,
                 "DELETE of a used config");
    cr_assert_str_eq(code, "UNSUPPORTED");
    expect_blob_whole("del/a", lay[0], "refused delete");

    /* References are per repository: del/b has no manifest using it. */
    snprintf(path, sizeof(path), "/v2/del/b/blobs/%s", d2);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 404);
    expect_blob_whole("del/a", lay[0], "after the delete in another repository");

    snprintf(path, sizeof(path), "/v2/del/a/manifests/%s", md);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    snprintf(path, sizeof(path), "/v2/del/a/blobs/%s", lay[0]);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202,
                 "DELETE once the manifest is gone");
    cr_assert_eq(http_status(&srv, "GET", path, code, sizeof(code)), 404);
    cr_assert_str_eq(code, "BLOB_UNKNOWN");
    free(data);
    free(m);
}

Test(gc, manifest_delete_of_an_index_child_is_refused_while_the_index_exists)
{
    char cfg[200], lay[1][DLEN], kid[2][200], idx[200], path[1024], code[64];
    const char *c = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"child\":1}";
    size_t len[1] = {1024};
    char *data = rand_bytes(len[0]), *m[2], ix[2048];
    struct resp r;
    int i, whole;

    server_start(&srv, CONF_GC0);
    push_blob(&srv, "idx/a", c, strlen(c), cfg, sizeof(cfg));
    push_blob(&srv, "idx/a", data, len[0], lay[0], sizeof(lay[0]));
    for (i = 0; i < 2; i++) {
        m[i] = manifest_text(cfg, strlen(c), 1, lay, len, i ? "arm64" : "amd64");
        digest_str("sha256", m[i], strlen(m[i]), kid[i], sizeof(kid[i]));
        cr_assert_eq(put_manifest("idx/a", kid[i], OCI_MANIFEST, m[i], NULL), 201);
    }
    snprintf(ix, sizeof(ix),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":["
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu},"
             "{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":%zu}]}",
             OCI_INDEX, OCI_MANIFEST, kid[0], strlen(m[0]), OCI_MANIFEST, kid[1], strlen(m[1]));
    digest_str("sha256", ix, strlen(ix), idx, sizeof(idx));
    cr_assert_eq(put_manifest("idx/a", "multi", OCI_INDEX, ix, NULL), 201);

    snprintf(path, sizeof(path), "/v2/idx/a/manifests/%s", kid[1]);
    http(&srv, "DELETE", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 405, "DELETE of an index child: %ld %s", r.status, r.body);
    cr_assert_str_eq(resp_error_code(&r, code, sizeof(code)), "UNSUPPORTED", "%s", r.body);
    cr_assert(strstr(r.body, idx), "the refusal does not name the index %s: %s", idx, r.body);
    resp_free(&r);
    cr_assert_eq(get_manifest("idx/a", kid[1], kid[1], &whole, NULL), 200);
    cr_assert(whole);

    snprintf(path, sizeof(path), "/v2/idx/a/manifests/%s", idx);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    snprintf(path, sizeof(path), "/v2/idx/a/manifests/%s", kid[1]);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202,
                 "DELETE of the child once the index is gone");
    cr_assert_eq(get_manifest("idx/a", kid[1], kid[1], &whole, NULL), 404);
    cr_assert_eq(get_manifest("idx/a", kid[0], kid[0], &whole, NULL), 200);
    for (i = 0; i < 2; i++)
        free(m[i]);
    free(data);
}

/* ---- stale uploads and orphan files ------------------------------------------ */

Test(gc, idle_upload_sessions_expire_after_upload_ttl_and_orphan_files_go)
{
    char loc[5][400], live[400], path[1024], code[64], uploads[900], orphan[1024], stray[1024];
    char cr[64];
    const char *h[] = {cr, NULL};
    char *data = rand_bytes(65536);
    struct freed fr;
    struct resp r;
    FILE *f;
    int i;

    /* 2 s, not 1 s: times are whole seconds, and with 1 s a session PATCHed
     * just before the run would expire when the second turns over. */
    server_start(&srv, "[storage]\ndelete = true\n\n[gc]\ninterval = 0\nupload_ttl = 2s\n");
    for (i = 0; i < 5; i++) {
        start_upload(&srv, "stale/a", loc[i], sizeof(loc[i]));
        if (i < 3) {
            snprintf(cr, sizeof(cr), "Content-Range: 0-65535");
            http(&srv, "PATCH", loc[i], data, 65536, h, &r);
            cr_assert_eq(r.status, 202, "PATCH: %ld %s", r.status, r.body);
            resp_free(&r);
        }
    }
    data_path("uploads", uploads, sizeof(uploads));
    cr_assert_geq(count_files(uploads), 3);
    snprintf(stray, sizeof(stray), "%s/0badc0de-1234-4abc-8def-0123456789ab", uploads);
    f = fopen(stray, "w");
    cr_assert(f);
    fputs("left by a crash", f);
    fclose(f);
    snprintf(orphan, sizeof(orphan), "%s/data/blobs/sha256/ab/ab%062d", srv.root, 7);
    f = fopen(orphan, "w");
    cr_assert(f, "cannot write %s", orphan);
    fputs("an orphan blob file", f);
    fclose(f);

    usleep(2500 * 1000);
    /* A session opened now is not idle: it stays. */
    start_upload(&srv, "stale/a", live, sizeof(live));
    snprintf(cr, sizeof(cr), "Content-Range: 0-99");
    http(&srv, "PATCH", live, data, 100, h, &r);
    cr_assert_eq(r.status, 202);
    resp_free(&r);

    gc_now(&fr);
    cr_assert_eq(fr.sessions, 5, "expired %llu sessions, expected 5", fr.sessions);
    cr_assert_eq(fr.stray, 1, "removed %llu stray upload files, expected 1", fr.stray);
    cr_assert_eq(fr.orphans, 1, "removed %llu orphan blob files, expected 1", fr.orphans);
    cr_assert_eq(fr.orphan_bytes, strlen("an orphan blob file"));
    for (i = 0; i < 5; i++) {
        cr_assert_eq(http_status(&srv, "GET", loc[i], code, sizeof(code)), 404,
                     "session %d still there", i);
        cr_assert_str_eq(code, "BLOB_UPLOAD_UNKNOWN");
        snprintf(cr, sizeof(cr), "Content-Range: 65536-65539");
        http(&srv, "PATCH", loc[i], data, 4, h, &r);
        cr_assert_eq(r.status, 404, "PATCH to an expired session: %ld", r.status);
        resp_free(&r);
    }
    cr_assert_not(exists(stray), "stray upload file still there");
    cr_assert_not(exists(orphan), "orphan blob file still there");
    cr_assert_eq(count_files(uploads), 1, "uploads/ holds more than the live session");

    http(&srv, "GET", live, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 204, "the live session expired with the idle ones: %ld", r.status);
    cr_assert_str_eq(resp_header(&r, "Range", path, sizeof(path)), "0-99");
    resp_free(&r);
    free(data);
}

/* ---- races ------------------------------------------------------------------- */

/* A blob push that races GC may fail only with the clean error a client
 * retries (issue 8): anything else is a bug. */
static int clean_retry(long status, const char *code)
{
    return status == 404 && !strcmp(code, "BLOB_UPLOAD_UNKNOWN");
}

/* What a forked client reports back through a pipe (one atomic write). */
struct outcome {
    int who, tries, gc_on;
    long put, del; /* statuses */
    char put_code[40], del_code[40];
};

/* Block until the parent closes the other end: every child starts at once. */
static void wait_start(int fd)
{
    char c;

    while (read(fd, &c, 1) < 0 && errno == EINTR)
        ;
    close(fd);
}

Test(gc_race, blob_delete_racing_manifest_put_never_leaves_a_manifest_without_its_blob)
{
    int i, put_won = 0, del_won = 0, ok[40];
    char cfg[40][200], lay[40][1][DLEN], md[40][200];
    char *text[40];

    server_start(&srv, "[storage]\ndelete = true\n\n[gc]\ninterval = 0\n");
    for (i = 0; i < 40; i++) {
        char repo[64], c[64], *data = rand_bytes(4096);
        size_t len[1] = {4096};
        int go[2], res[2], k;
        struct outcome o[2], got;
        pid_t kid[2];

        snprintf(repo, sizeof(repo), "race/r%d", i);
        snprintf(c, sizeof(c), "{\"architecture\":\"amd64\",\"try\":%d}", i);
        push_blob(&srv, repo, c, strlen(c), cfg[i], sizeof(cfg[i]));
        push_blob(&srv, repo, data, len[0], lay[i][0], sizeof(lay[i][0]));
        text[i] = manifest_text(cfg[i], strlen(c), 1, lay[i], len, NULL);
        digest_str("sha256", text[i], strlen(text[i]), md[i], sizeof(md[i]));
        cr_assert_eq(pipe(go), 0);
        cr_assert_eq(pipe(res), 0);
        for (k = 0; k < 2; k++) {
            kid[k] = fork();
            cr_assert_geq(kid[k], 0);
            if (kid[k] == 0) {
                char path[1024];
                struct resp r;

                close(go[1]);
                close(res[0]);
                srv.no_assert = 1;
                memset(&got, 0, sizeof(got));
                got.who = k;
                wait_start(go[0]);
                if (k == 0) {
                    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, lay[i][0]);
                    http(&srv, "DELETE", path, NULL, 0, NULL, &r);
                    got.del = r.status;
                    resp_error_code(&r, got.del_code, sizeof(got.del_code));
                } else {
                    got.put = put_manifest(repo, "v1", OCI_MANIFEST, text[i], &r);
                    resp_error_code(&r, got.put_code, sizeof(got.put_code));
                }
                resp_free(&r);
                _exit(write(res[1], &got, sizeof(got)) == (ssize_t)sizeof(got) ? 0 : 1);
            }
        }
        close(go[0]);
        close(res[1]);
        close(go[1]);
        for (k = 0; k < 2; k++) {
            cr_assert_eq(read(res[0], &got, sizeof(got)), (ssize_t)sizeof(got));
            o[got.who] = got;
        }
        close(res[0]);
        for (k = 0; k < 2; k++)
            waitpid(kid[k], NULL, 0);

        /* Either order is fine; anything between is not. */
        if (o[1].put == 201) {
            int whole;

            cr_assert_eq(o[0].del, 405, "try %d: manifest 201 and blob DELETE %ld %s", i, o[0].del,
                         o[0].del_code);
            cr_assert_str_eq(o[0].del_code, "UNSUPPORTED");
            cr_assert_eq(get_manifest(repo, "v1", md[i], &whole, NULL), 200);
            expect_blob_whole(repo, lay[i][0], "layer of a manifest that won the race");
            put_won++;
            ok[i] = 1;
        } else {
            cr_assert_eq(o[1].put, 400, "try %d: manifest PUT %ld %s, blob DELETE %ld", i, o[1].put,
                         o[1].put_code, o[0].del);
            cr_assert_str_eq(o[1].put_code, "MANIFEST_BLOB_UNKNOWN", "try %d", i);
            cr_assert_eq(o[0].del, 202, "try %d: manifest refused but DELETE %ld %s", i, o[0].del,
                         o[0].del_code);
            del_won++;
            ok[i] = 0;
        }
        free(data);
    }
    cr_log_info("blob DELETE vs manifest PUT: manifest first %d, delete first %d", put_won,
                del_won);
    /* At the end still: no acknowledged manifest points at a missing blob. */
    for (i = 0; i < 40; i++) {
        char repo[64];
        int whole;

        snprintf(repo, sizeof(repo), "race/r%d", i);
        if (ok[i]) {
            cr_assert_eq(get_manifest(repo, md[i], md[i], &whole, NULL), 200);
            expect_blob_whole(repo, lay[i][0], "at the end");
            expect_blob_whole(repo, cfg[i], "at the end");
        }
        free(text[i]);
    }
}

/* Append one line to a record file (one write, O_APPEND: lines never mix). */
static void record(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void record(int fd, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(line) && write(fd, line, (size_t)n) != n)
        _exit(3);
}

/* A re-pusher for the GC race: the same blob again and again, a fresh
 * config, a manifest; most manifests are deleted at once so that the blob
 * is unreferenced again and GC goes for it. */
static void repusher(int p, double deadline, const char *file)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0644), i;
    size_t blen = 256 * 1024;
    char *blob = pattern(p, 0, blen), repo[64], bd[200];

    srv.no_assert = 1;
    snprintf(repo, sizeof(repo), "gcrace/p%d", p);
    for (i = 0; now_s() < deadline; i++) {
        char c[DLEN], cd[200], lay[1][DLEN], md[200], code[64] = "", ref[32], *m;
        size_t len[1] = {blen};
        long sb, sc, sm;
        struct resp r;
        int w1, w2;

        sb = push_status(repo, blob, blen, bd, sizeof(bd), code, sizeof(code));
        if (sb != 201) {
            record(fd, "%s blob %ld %s\n", clean_retry(sb, code) ? "R" : "X", sb, code);
            continue;
        }
        snprintf(c, sizeof(c), "{\"architecture\":\"amd64\",\"pusher\":%d,\"i\":%d}", p, i);
        sc = push_status(repo, c, strlen(c), cd, sizeof(cd), code, sizeof(code));
        if (sc != 201) {
            record(fd, "%s config %ld %s\n", clean_retry(sc, code) ? "R" : "X", sc, code);
            continue;
        }
        snprintf(lay[0], sizeof(lay[0]), "%s", bd);
        m = manifest_text(cd, strlen(c), 1, lay, len, NULL);
        digest_str("sha256", m, strlen(m), md, sizeof(md));
        snprintf(ref, sizeof(ref), "t%d", i);
        sm = put_manifest(repo, ref, OCI_MANIFEST, m, &r);
        resp_error_code(&r, code, sizeof(code));
        resp_free(&r);
        free(m);
        if (sm == 400 && !strcmp(code, "MANIFEST_BLOB_UNKNOWN")) {
            record(fd, "U %d\n", i);
            continue;
        }
        if (sm != 201) {
            record(fd, "X manifest %ld %s\n", sm, code);
            continue;
        }
        /* Acknowledged: its blobs must be there, GC running or not. */
        get_blob(repo, bd, &w1);
        get_blob(repo, cd, &w2);
        if (!w1 || !w2)
            record(fd, "X lost %s %s %s %d %d\n", md, bd, cd, w1, w2);
        if (i % 4) {
            char path[1024];

            snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, md);
            sm = http_status(&srv, "DELETE", path, code, sizeof(code));
            if (sm != 202)
                record(fd, "X delete %ld %s\n", sm, code);
            else
                record(fd, "D %s\n", md);
        } else {
            record(fd, "K %s %s %s %s\n", ref, md, bd, cd);
        }
    }
    free(blob);
    close(fd);
    _exit(0);
}

Test(gc_race, gc_racing_repushes_of_a_blob_never_acknowledges_a_manifest_whose_blob_it_removes)
{
    double deadline;
    pid_t kid[2];
    int p, kept = 0, retry = 0, deleted = 0, runs;

    server_start(&srv, CONF_GC0);
    deadline = now_s() + 8.0;
    for (p = 0; p < 2; p++) {
        char file[400];

        snprintf(file, sizeof(file), "%s/repush%d", srv.root, p);
        kid[p] = fork();
        cr_assert_geq(kid[p], 0);
        if (kid[p] == 0)
            repusher(p, deadline, file);
    }
    while (now_s() < deadline) {
        kill(srv.pid, SIGUSR1);
        usleep(5000);
    }
    for (p = 0; p < 2; p++) {
        int st = 0;

        waitpid(kid[p], &st, 0);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pusher %d died (%d)", p, st);
    }
    runs = server_log_find(&srv, "gc: freed ", NULL, 0);
    cr_assert_geq(runs, 20, "only %d GC runs during the race", runs);

    for (p = 0; p < 2; p++) {
        char file[400], *line = NULL, repo[64];
        size_t cap = 0;
        FILE *f;

        snprintf(file, sizeof(file), "%s/repush%d", srv.root, p);
        snprintf(repo, sizeof(repo), "gcrace/p%d", p);
        f = fopen(file, "r");
        cr_assert(f);
        while (getline(&line, &cap, f) > 0) {
            char ref[32], md[200], bd[200], cd[200];
            int whole;

            cr_assert_neq(line[0], 'X', "pusher %d: %s", p, line);
            retry += line[0] == 'U' || line[0] == 'R';
            deleted += line[0] == 'D';
            if (line[0] != 'K')
                continue;
            cr_assert_eq(sscanf(line, "K %31s %199s %199s %199s", ref, md, bd, cd), 4);
            cr_assert_eq(get_manifest(repo, ref, md, &whole, NULL), 200, "%s:%s lost", repo, ref);
            cr_assert(whole);
            expect_blob_whole(repo, bd, "kept manifest's layer");
            expect_blob_whole(repo, cd, "kept manifest's config");
            kept++;
        }
        free(line);
        fclose(f);
    }
    cr_log_info("GC vs re-push: %d GC runs, %d manifests kept, %d deleted, %d clean retries", runs,
                kept, deleted, retry);
    cr_assert_gt(kept, 3, "too few acknowledged manifests (%d) to prove anything", kept);
}

Test(gc_race, fifty_parallel_pushes_of_one_blob_while_gc_loops_keep_every_acknowledged_image)
{
    const size_t blen = 256 * 1024;
    const char *c = "{\"architecture\":\"amd64\",\"os\":\"linux\",\"fifty\":1}";
    char *blob = rand_bytes(blen), bd[200], cd[200], lay[1][DLEN], md[200], *m;
    size_t len[1] = {blen};
    pid_t kid[50];
    int go[2], res[2], i, n = 0, acked = 0, retry = 0, alive, reaped[50] = {0}, under_gc = 0;
    double t0, gc_end;
    struct freed fr;

    server_start(&srv, CONF_GC0);
    digest_str("sha256", blob, blen, bd, sizeof(bd));
    digest_str("sha256", c, strlen(c), cd, sizeof(cd));
    snprintf(lay[0], sizeof(lay[0]), "%s", bd);
    m = manifest_text(cd, strlen(c), 1, lay, len, NULL);
    digest_str("sha256", m, strlen(m), md, sizeof(md));
    cr_assert_eq(pipe(go), 0);
    cr_assert_eq(pipe(res), 0);
    /* GC loops for 5 s at most: with grace = 0 a push whose manifest comes
     * a GC run later fails cleanly, and under load every try may; once GC
     * rests, every retry must succeed. */
    t0 = now_s();
    gc_end = t0 + 5;
    for (i = 0; i < 50; i++) {
        kid[i] = fork();
        cr_assert_geq(kid[i], 0);
        if (kid[i] == 0) {
            struct outcome o;
            char repo[64], d[200];
            struct resp r;

            close(go[1]);
            close(res[0]);
            srv.no_assert = 1;
            memset(&o, 0, sizeof(o));
            o.who = i;
            snprintf(repo, sizeof(repo), "fifty/r%d", i);
            wait_start(go[0]);
            /* As a client does: a clean error, and it pushes again. */
            for (o.tries = 1; now_s() < t0 + 30; o.tries++) {
                o.put = 0;
                o.put_code[0] = '\0';
                o.del = push_status(repo, blob, blen, d, sizeof(d), o.del_code, sizeof(o.del_code));
                if (o.del == 201)
                    o.del = push_status(repo, c, strlen(c), d, sizeof(d), o.del_code,
                                        sizeof(o.del_code));
                if (o.del != 201 && clean_retry(o.del, o.del_code)) {
                    usleep(10000);
                    continue;
                }
                if (o.del != 201)
                    break;
                o.put = put_manifest(repo, "v1", OCI_MANIFEST, m, &r);
                resp_error_code(&r, o.put_code, sizeof(o.put_code));
                resp_free(&r);
                if (!(o.put == 400 && !strcmp(o.put_code, "MANIFEST_BLOB_UNKNOWN")))
                    break;
                usleep(10000);
            }
            o.gc_on = now_s() < gc_end;
            _exit(write(res[1], &o, sizeof(o)) == (ssize_t)sizeof(o) ? 0 : 1);
        }
    }
    close(go[0]);
    close(res[1]);
    close(go[1]);
    /* GC every 20 ms until every pusher is done, or for 5 s. */
    for (alive = 50; alive > 0 && now_s() - t0 < 40;) {
        if (now_s() < gc_end)
            kill(srv.pid, SIGUSR1);
        usleep(20000);
        for (i = 0; i < 50; i++)
            if (!reaped[i] && waitpid(kid[i], NULL, WNOHANG) == kid[i]) {
                reaped[i] = 1;
                alive--;
            }
    }
    cr_assert_eq(alive, 0, "pushers still running after 40 s");
    for (n = 0; n < 50; n++) {
        struct outcome o;
        char repo[64];
        int whole;

        cr_assert_eq(read(res[0], &o, sizeof(o)), (ssize_t)sizeof(o), "a pusher said nothing");
        snprintf(repo, sizeof(repo), "fifty/r%d", o.who);
        retry += o.tries - 1;
        under_gc += o.gc_on;
        cr_assert_eq(o.del, 201, "pusher %d: blob push %ld %s (try %d)", o.who, o.del, o.del_code,
                     o.tries);
        cr_assert_eq(o.put, 201, "pusher %d: manifest PUT %ld %s (try %d)", o.who, o.put,
                     o.put_code, o.tries);
        cr_assert_eq(get_manifest(repo, "v1", md, &whole, NULL), 200, "%s:v1 lost", repo);
        cr_assert(whole);
        expect_blob_whole(repo, bd, "the shared blob");
        expect_blob_whole(repo, cd, "the shared config");
        acked++;
    }
    close(res[0]);
    /* One more run with nothing in flight keeps them all. */
    gc_now(&fr);
    for (i = 0; i < 50; i++) {
        char repo[64];
        int whole;

        snprintf(repo, sizeof(repo), "fifty/r%d", i);
        cr_assert_eq(get_manifest(repo, "v1", md, &whole, NULL), 200, "%s:v1 lost", repo);
        expect_blob_whole(repo, bd, "after a quiet GC run");
    }
    cr_log_info("50 pushes under GC: %d manifests acknowledged (%d while GC looped) after %d "
                "clean retries, %d GC runs",
                acked, under_gc, retry, server_log_find(&srv, "gc: freed ", NULL, 0));
    cr_assert_eq(acked, 50);
    free(blob);
    free(m);
}

/* ---- crash loop ---------------------------------------------------------------- */

/* Acknowledgement files, shared by every round: one per pusher, one for the
 * deleter. Lines:
 *   T repo digest            manifest PUT about to be sent
 *   M repo digest tag layer  manifest PUT acknowledged (201)
 *   A repo digest            manifest DELETE about to be sent
 *   DM repo digest           manifest DELETE acknowledged (202, or 404 after an A)
 *   B repo digest            blob DELETE about to be sent
 *   DB repo digest           blob DELETE acknowledged
 *   X ...                    a status no client should ever see */
#define CL_PUSHERS 2

static void cl_pusher(int p, int round, const char *file)
{
    int fd = open(file, O_WRONLY | O_CREAT | O_APPEND, 0644), i;
    size_t slen = 32 * 1024;
    char *shared = pattern(1000 + p, 0, slen), repo[64], sd[200];

    srv.no_assert = 1; /* the server dies under us: stop quietly */
    snprintf(repo, sizeof(repo), "crash/p%d", p);
    for (i = round * 10000;; i++) {
        char c[120], cd[200], lay[2][DLEN], md[200], code[64] = "", tag[32], *m, *data;
        size_t len[2] = {slen, 8192 + (size_t)(i % 7) * 5000};
        long st;
        struct resp r;

        /* The shared layer again every time: dedup against GC. */
        st = push_status(repo, shared, slen, sd, sizeof(sd), code, sizeof(code));
        if (st < 0)
            break;
        if (st != 201) {
            record(fd, "%s blob %ld %s\n", clean_retry(st, code) ? "R" : "X", st, code);
            continue;
        }
        data = pattern(p, i, len[1]);
        if (i % 2) {
            st = push_status(repo, data, len[1], lay[1], sizeof(lay[1]), code, sizeof(code));
        } else {
            char loc[400], full[1024], cr[64], path[200];
            const char *h[] = {cr, NULL};

            digest_str("sha256", data, len[1], lay[1], sizeof(lay[1]));
            snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
            http(&srv, "POST", path, NULL, 0, NULL, &r);
            st = r.status;
            if (st == 202 && !resp_header(&r, "Location", loc, sizeof(loc)))
                st = -2;
            resp_free(&r);
            if (st == 202) {
                snprintf(cr, sizeof(cr), "Content-Range: 0-%zu", len[1] / 2 - 1);
                http(&srv, "PATCH", loc, data, len[1] / 2, h, &r);
                st = r.status;
                resp_free(&r);
            }
            if (st == 202) {
                snprintf(full, sizeof(full), "%s?digest=%s", loc, lay[1]);
                http(&srv, "PUT", full, data + len[1] / 2, len[1] - len[1] / 2, NULL, &r);
                st = r.status;
                resp_error_code(&r, code, sizeof(code));
                resp_free(&r);
            }
        }
        free(data);
        if (st < 0)
            break;
        if (st != 201) {
            record(fd, "%s layer %ld %s\n", clean_retry(st, code) ? "R" : "X", st, code);
            continue;
        }
        snprintf(c, sizeof(c), "{\"architecture\":\"amd64\",\"pusher\":%d,\"i\":%d}", p, i);
        st = push_status(repo, c, strlen(c), cd, sizeof(cd), code, sizeof(code));
        if (st < 0)
            break;
        if (st != 201) {
            record(fd, "%s config %ld %s\n", clean_retry(st, code) ? "R" : "X", st, code);
            continue;
        }
        snprintf(lay[0], sizeof(lay[0]), "%s", sd);
        m = manifest_text(cd, strlen(c), 2, lay, len, NULL);
        digest_str("sha256", m, strlen(m), md, sizeof(md));
        snprintf(tag, sizeof(tag), "t%d", i);
        record(fd, "T %s %s\n", repo, md);
        st = put_manifest(repo, tag, OCI_MANIFEST, m, &r);
        resp_error_code(&r, code, sizeof(code));
        resp_free(&r);
        free(m);
        if (st < 0)
            break;
        if (st == 201)
            record(fd, "M %s %s %s %s\n", repo, md, tag, lay[1]);
        else if (!(st == 400 && !strcmp(code, "MANIFEST_BLOB_UNKNOWN")))
            record(fd, "X manifest %ld %s\n", st, code);
    }
    free(shared);
    _exit(0);
}

/* Deletes every third acknowledged manifest of the pushers, then its own
 * layer. Reads the pushers' files as they grow. */
static void cl_deleter(const char *root, const char *mine)
{
    int fd = open(mine, O_WRONLY | O_CREAT | O_APPEND, 0644), p, n = 0;
    char done[400][200];
    FILE *f;

    srv.no_assert = 1;
    /* What earlier rounds already deleted for sure. */
    f = fopen(mine, "r");
    if (f) {
        char kind[4], repo[64], d[200];

        while (n < 400 && fscanf(f, "%3s %63s %199s", kind, repo, d) == 3)
            if (!strcmp(kind, "DM"))
                snprintf(done[n++], sizeof(done[0]), "%s", d);
        fclose(f);
    }
    for (;;) {
        int did = 0;

        for (p = 0; p < CL_PUSHERS; p++) {
            char file[400], *line = NULL;
            size_t cap = 0;
            int k = 0, j;

            snprintf(file, sizeof(file), "%s/cl_push%d", root, p);
            f = fopen(file, "r");
            if (!f)
                continue;
            while (getline(&line, &cap, f) > 0) {
                char repo[64], md[200], tag[32], ld[200], path[1024], code[64] = "";
                long st;
                int known = 0;

                if (line[0] != 'M' || line[strlen(line) - 1] != '\n' ||
                    sscanf(line, "M %63s %199s %31s %199s", repo, md, tag, ld) != 4)
                    continue;
                if (k++ % 3)
                    continue;
                for (j = 0; j < n && !known; j++)
                    known = !strcmp(done[j], md);
                if (known || n >= 400)
                    continue;
                record(fd, "A %s %s\n", repo, md);
                snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, md);
                st = http_status(&srv, "DELETE", path, code, sizeof(code));
                if (st < 0)
                    _exit(0);
                if (st == 202 || (st == 404 && !strcmp(code, "MANIFEST_UNKNOWN"))) {
                    /* 404: an earlier, unanswered attempt took it. */
                    record(fd, "DM %s %s\n", repo, md);
                    snprintf(done[n++], sizeof(done[0]), "%s", md);
                } else {
                    record(fd, "X delete manifest %ld %s\n", st, code);
                    continue;
                }
                record(fd, "B %s %s\n", repo, ld);
                snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, ld);
                st = http_status(&srv, "DELETE", path, code, sizeof(code));
                if (st < 0)
                    _exit(0);
                if (st == 202)
                    record(fd, "DB %s %s\n", repo, ld);
                else if (!(st == 404 && !strcmp(code, "BLOB_UNKNOWN")))
                    record(fd, "X delete blob %ld %s\n", st, code);
                did++;
            }
            free(line);
            fclose(f);
        }
        if (!did) {
            /* Nothing to do: make sure there is still a server to do it to. */
            if (http_status(&srv, "GET", "/v2/", NULL, 0) < 0)
                _exit(0);
            usleep(20000);
        }
    }
}

/* Is digest named by a line "kind repo digest..." of file? */
static int file_has(const char *file, const char *kind, const char *digest)
{
    char *line = NULL, k[4], repo[64], d[200];
    size_t cap = 0;
    int found = 0;
    FILE *f = fopen(file, "r");

    if (!f)
        return 0;
    while (!found && getline(&line, &cap, f) > 0)
        found = sscanf(line, "%3s %63s %199s", k, repo, d) == 3 && !strcmp(k, kind) &&
                !strcmp(d, digest);
    free(line);
    fclose(f);
    return found;
}

Test(gc_crash, kill_9_while_pushers_deleters_and_gc_race_loses_nothing_and_resurrects_nothing)
{
    char dfile[400], args[1024], out[8192];
    int round, kills = 0, manifests = 0, gone = 0, blobs_gone = 0, p;
    double t0 = now_s();

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    server_start(&srv, CONF_GC0);
    snprintf(dfile, sizeof(dfile), "%s/cl_del", srv.root);
    for (round = 0; round < 40 && (kills < 20 || now_s() - t0 < 35) && now_s() - t0 < 75; round++) {
        pid_t kid[CL_PUSHERS + 1];
        double until = now_s() + 0.6 + (double)(rand() % 1400) / 1000.0;

        for (p = 0; p <= CL_PUSHERS; p++) {
            kid[p] = fork();
            cr_assert_geq(kid[p], 0);
            if (kid[p] == 0 && p < CL_PUSHERS) {
                char file[400];

                snprintf(file, sizeof(file), "%s/cl_push%d", srv.root, p);
                cl_pusher(p, round, file);
            }
            if (kid[p] == 0)
                cl_deleter(srv.root, dfile);
        }
        /* GC as often as it will go, then a kill at a random moment. */
        while (now_s() < until) {
            kill(srv.pid, SIGUSR1);
            usleep(10000);
        }
        server_kill9(&srv);
        kills++;
        for (p = 0; p <= CL_PUSHERS; p++) {
            int st;

            /* The deleter may sleep between polls: it stops at its next request. */
            waitpid(kid[p], &st, 0);
        }
        server_restart(&srv);
    }
    cr_assert_geq(kills, 20, "only %d kills in the time allowed", kills);

    /* The verdict, on a quiet server. */
    for (p = 0; p < CL_PUSHERS; p++) {
        char file[400], *line = NULL;
        size_t cap = 0;
        FILE *f;

        snprintf(file, sizeof(file), "%s/cl_push%d", srv.root, p);
        f = fopen(file, "r");
        cr_assert(f);
        while (getline(&line, &cap, f) > 0) {
            char repo[64], md[200], tag[32], ld[200], *body = NULL;
            int whole, attempted;
            long st;

            cr_assert_neq(line[0], 'X', "pusher %d saw: %s", p, line);
            if (line[0] != 'M')
                continue;
            cr_assert_eq(sscanf(line, "M %63s %199s %31s %199s", repo, md, tag, ld), 4);
            manifests++;
            attempted = file_has(dfile, "A", md);
            st = get_manifest(repo, md, md, &whole, &body);
            if (file_has(dfile, "DM", md)) {
                cr_assert_eq(st, 404, "%s@%s came back after its acknowledged DELETE", repo, md);
                gone++;
            } else if (attempted) {
                cr_assert(st == 404 || (st == 200 && whole), "%s@%s: %ld after a cut DELETE", repo,
                          md, st);
            } else {
                json_t *j, *layers;
                size_t k;

                cr_assert_eq(st, 200, "acknowledged %s@%s lost (%ld)", repo, md, st);
                cr_assert(whole, "%s@%s reads back with other bytes", repo, md);
                cr_assert_eq(get_manifest(repo, tag, md, &whole, NULL), 200, "%s:%s lost", repo,
                             tag);
                cr_assert(whole, "%s:%s points elsewhere", repo, tag);
                j = json_loads(body, 0, NULL);
                cr_assert(j);
                expect_blob_whole(
                    repo,
                    json_string_value(json_object_get(json_object_get(j, "config"), "digest")),
                    "config of an acknowledged manifest");
                layers = json_object_get(j, "layers");
                for (k = 0; k < json_array_size(layers); k++)
                    expect_blob_whole(
                        repo,
                        json_string_value(json_object_get(json_array_get(layers, k), "digest")),
                        "layer of an acknowledged manifest");
                json_decref(j);
            }
            free(body);
        }
        free(line);
        fclose(f);
    }
    {
        char *line = NULL;
        size_t cap = 0;
        FILE *f = fopen(dfile, "r");

        while (f && getline(&line, &cap, f) > 0) {
            char repo[64], d[200], path[1024];

            cr_assert_neq(line[0], 'X', "deleter saw: %s", line);
            if (strncmp(line, "DB ", 3) || sscanf(line, "DB %63s %199s", repo, d) != 2)
                continue;
            snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, d);
            cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 404, "deleted blob %s came back",
                         path);
            blobs_gone++;
        }
        free(line);
        if (f)
            fclose(f);
    }
    cr_log_info("crash loop: %d kills in %.0f s, %d manifests acknowledged, %d deleted, %d "
                "blobs deleted",
                kills, now_s() - t0, manifests, gone, blobs_gone);
    cr_assert_gt(manifests, 20, "only %d manifests acknowledged: the test proved little",
                 manifests);
    cr_assert_gt(gone, 3, "only %d deletes acknowledged", gone);

    /* Everything both ways: blobs rehashed, records and files, counts. */
    {
        int rc;

        cr_assert_eq(server_stop(&srv), 0);
        snprintf(args, sizeof(args), "fsck --root %s/data --config %s", srv.root, srv.config);
        rc = registry_run(args, out, sizeof(out));
        cr_assert_eq(rc, 0, "fsck after the crash loop: exit %d: %s", rc, out);
    }
}
