/* registry fsck and registry backup, against roots a real server wrote. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct server srv;

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(fsck, .fini = teardown, .timeout = 120);

#define DELETE_ON "[storage]\ndelete = true\n[gc]\ninterval = 0\n"

/* An image: config and one layer of len bytes; its manifest digest out. */
static void push_image(const char *repo, const char *tag, size_t len, char *layer, char *mdigest)
{
    char cfg[200], body[1500], path[600];
    const char *h[] = {"Content-Type: application/vnd.oci.image.manifest.v1+json", NULL};
    char *data = rand_bytes(len), cfgdata[64];
    struct resp r;

    snprintf(cfgdata, sizeof(cfgdata), "{\"n\":%d}", rand());
    push_blob(&srv, repo, cfgdata, strlen(cfgdata), cfg, sizeof(cfg));
    push_blob(&srv, repo, data, len, layer, 200);
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
             "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":%zu}]}",
             cfg, strlen(cfgdata), layer, len);
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, tag);
    http(&srv, "PUT", path, body, strlen(body), h, &r);
    cr_assert_eq(r.status, 201, "manifest PUT: %ld %s", r.status, r.body);
    digest_str("sha256", body, strlen(body), mdigest, 200);
    resp_free(&r);
    free(data);
}

static const char *blob_path(const char *root, const char *digest)
{
    static char p[1400];

    snprintf(p, sizeof(p), "%s/data/blobs/sha256/%.2s/%s", root, digest + 7, digest + 7);
    return p;
}

Test(fsck, clean_root_passes_beside_a_live_server)
{
    char layer[200], m[200], out[8192], args[600];

    server_start(&srv, DELETE_ON);
    push_image("fsck/a", "v1", 300000, layer, m);
    snprintf(args, sizeof(args), "fsck --root %s/data", srv.root);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "0 problems (clean)"), "%s", out);
    cr_assert(strstr(out, "rehashed 2 blobs"), "%s", out);
}

Test(fsck, corrupt_blob_is_found_repaired_and_its_image_named)
{
    char layer[200], m[200], out[8192], args[600];
    FILE *f;

    server_start(&srv, DELETE_ON);
    push_image("fsck/b", "v1", 200000, layer, m);
    f = fopen(blob_path(srv.root, layer), "a");
    cr_assert(f);
    fputc('x', f);
    fclose(f);
    snprintf(args, sizeof(args), "fsck --root %s/data", srv.root);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "is corrupt") && strstr(out, layer), "%s", out);
    /* Repair needs the root: refused while the server holds it. */
    snprintf(args, sizeof(args), "fsck --repair --root %s/data", srv.root);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, "in use by process"), "%s", out);
    cr_assert_eq(server_stop(&srv), 0);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "is broken") && strstr(out, m), "repair names the image: %s", out);
    cr_assert(access(blob_path(srv.root, layer), F_OK) != 0, "corrupt file removed");
    server_restart(&srv);
    {
        char p[600];
        struct resp r;

        snprintf(p, sizeof(p), "/v2/fsck/b/blobs/%s", layer);
        http(&srv, "GET", p, NULL, 0, NULL, &r);
        cr_assert_eq(r.status, 404);
        resp_free(&r);
        snprintf(p, sizeof(p), "/v2/fsck/b/manifests/%s", m);
        http(&srv, "DELETE", p, NULL, 0, NULL, &r);
        cr_assert_eq(r.status, 202, "%s", r.body);
        resp_free(&r);
    }
    snprintf(args, sizeof(args), "fsck --root %s/data", srv.root);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "clean once the broken image is gone: %s",
                 out);
}

Test(fsck, orphan_file_is_noted_as_a_crash_leftover_and_removed_by_repair)
{
    char layer[200], m[200], out[8192], args[600], orphan[600];
    FILE *f;

    server_start(&srv, DELETE_ON);
    push_image("fsck/c", "v1", 1000, layer, m);
    cr_assert_eq(server_stop(&srv), 0);
    snprintf(orphan, sizeof(orphan), "%s/data/blobs/sha256/cd/cd%062d", srv.root, 7);
    f = fopen(orphan, "w");
    cr_assert(f);
    fputs("left by a crash", f);
    fclose(f);
    /* What a crash leaves by design is noted, not a problem. */
    snprintf(args, sizeof(args), "fsck --root %s/data", srv.root);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "note: blob file") && strstr(out, "is not in the index"), "%s", out);
    cr_assert(strstr(out, "1 crash leftovers"), "%s", out);
    snprintf(args, sizeof(args), "fsck --repair --root %s/data", srv.root);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(access(orphan, F_OK) != 0);
    snprintf(args, sizeof(args), "fsck --root %s/data", srv.root);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "0 crash leftovers"), "%s", out);
}

Test(fsck, backup_of_a_live_root_serves_and_checks_clean)
{
    char layer[3][200], m[3][200], out[8192], args[900], dest[400];
    struct server copy;
    struct stat st;
    int i;

    server_start(&srv, DELETE_ON);
    for (i = 0; i < 3; i++) {
        char repo[32];

        snprintf(repo, sizeof(repo), "bk/r%d", i);
        push_image(repo, "latest", 100000 + (size_t)i, layer[i], m[i]);
    }
    snprintf(dest, sizeof(dest), "%s/backup", srv.root);
    snprintf(args, sizeof(args), "backup %s --root %s/data", dest, srv.root);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "6 blobs"), "%s", out);
    /* Same file system: hard links, not copies. */
    cr_assert_eq(stat(blob_path(srv.root, layer[0]), &st), 0);
    cr_assert_geq(st.st_nlink, 2);
    /* A second backup into a non-empty directory is refused. */
    cr_assert_eq(registry_run(args, out, sizeof(out)), 1, "%s", out);
    snprintf(args, sizeof(args), "fsck --root %s", dest);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "%s", out);

    /* Serve the copy (its root is <copy.root>/data: move the backup there). */
    server_prepare(&copy);
    snprintf(args, sizeof(args), "%s/data", copy.root);
    cr_assert_eq(rename(dest, args), 0);
    server_launch(&copy, NULL);
    for (i = 0; i < 3; i++) {
        char p[600], d[200];
        struct resp r;
        const char *h[] = {"Accept: application/vnd.oci.image.manifest.v1+json", NULL};

        snprintf(p, sizeof(p), "/v2/bk/r%d/manifests/latest", i);
        http(&copy, "GET", p, NULL, 0, h, &r);
        cr_assert_eq(r.status, 200);
        digest_str("sha256", r.body, r.len, d, sizeof(d));
        cr_assert_str_eq(d, m[i]);
        resp_free(&r);
        snprintf(p, sizeof(p), "/v2/bk/r%d/blobs/%s", i, layer[i]);
        http(&copy, "GET", p, NULL, 0, NULL, &r);
        cr_assert_eq(r.status, 200);
        digest_str("sha256", r.body, r.len, d, sizeof(d));
        cr_assert_str_eq(d, layer[i]);
        resp_free(&r);
    }
    server_destroy(&copy);
}
