/* Manifests, tags, referrers and catalog against a real server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

#define OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"

static struct server srv;

static void setup(void)
{
    server_start(&srv, "[storage]\ndelete = true\n");
}

static void setup_nodelete(void)
{
    server_start(&srv, NULL);
}

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(manifests, .init = setup, .fini = teardown, .timeout = 120);
TestSuite(manifests_nodelete, .init = setup_nodelete, .fini = teardown, .timeout = 60);
TestSuite(listing, .init = setup, .fini = teardown, .timeout = 120);

/* An image in repo: a config and one layer pushed, manifest text in out. */
static void make_image(const char *repo, const char *mt, const char *extra, char *out, size_t size)
{
    char cfg[200], layer[200], *data = rand_bytes(512);
    const char *cfg_body = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";
    int docker = !strcmp(mt, DOCKER_MANIFEST);

    push_blob(&srv, repo, cfg_body, strlen(cfg_body), cfg, sizeof(cfg));
    push_blob(&srv, repo, data, 512, layer, sizeof(layer));
    snprintf(out, size,
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":\"%s\",\"digest\":"
             "\"%s\",\"size\":512}]%s}",
             mt,
             docker ? "application/vnd.docker.container.image.v1+json"
                    : "application/vnd.oci.image.config.v1+json",
             cfg, strlen(cfg_body),
             docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
                    : "application/vnd.oci.image.layer.v1.tar+gzip",
             layer, extra ? extra : "");
    free(data);
}

static void expect_put_error(const char *repo, const char *ref, const char *ct, const char *body,
                             size_t len, long status, const char *code)
{
    struct resp r;
    char c[64];

    http_put_manifest(&srv, repo, ref, ct, body, len, &r);
    cr_expect_eq(r.status, status, "PUT %s:%s: %ld %s", repo, ref, r.status, r.body);
    cr_expect_str_eq(resp_error_code(&r, c, sizeof(c)), code, "%s", r.body);
    resp_free(&r);
}

Test(manifests, oci_manifest_by_tag_round_trips_byte_identical)
{
    char m[2048], d[200], path[600], v[256];
    struct resp r;

    make_image("app", OCI_MANIFEST, NULL, m, sizeof(m));
    digest_str("sha256", m, strlen(m), d, sizeof(d));
    cr_assert_eq(http_put_manifest(&srv, "app", "v1", OCI_MANIFEST, m, strlen(m), &r), 201, "%s",
                 r.body);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    snprintf(path, sizeof(path), "/v2/app/manifests/%s", d);
    cr_assert_str_eq(resp_header(&r, "Location", v, sizeof(v)), path);
    resp_free(&r);
    http(&srv, "GET", "/v2/app/manifests/v1", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, strlen(m));
    cr_assert_eq(memcmp(r.body, m, r.len), 0);
    cr_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof(v)), OCI_MANIFEST);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    resp_free(&r);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(memcmp(r.body, m, r.len), 0);
    resp_free(&r);
    http(&srv, "HEAD", "/v2/app/manifests/v1", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 0);
    snprintf(path, sizeof(path), "%zu", strlen(m));
    cr_assert_str_eq(resp_header(&r, "Content-Length", v, sizeof(v)), path);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    resp_free(&r);
}

Test(manifests, docker_schema2_and_manifest_list_are_stored_with_their_type)
{
    char m[2048], d[200], list[2048], v[256];
    struct resp r;

    make_image("dock", DOCKER_MANIFEST, NULL, m, sizeof(m));
    digest_str("sha256", m, strlen(m), d, sizeof(d));
    cr_assert_eq(http_put_manifest(&srv, "dock", d, DOCKER_MANIFEST, m, strlen(m), NULL), 201);
    snprintf(list, sizeof(list),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":%zu,\"platform\":{\"architecture\":\"amd64\","
             "\"os\":\"linux\"}}]}",
             DOCKER_LIST, DOCKER_MANIFEST, d, strlen(m));
    cr_assert_eq(http_put_manifest(&srv, "dock", "multi", DOCKER_LIST, list, strlen(list), NULL),
                 201);
    http(&srv, "GET", "/v2/dock/manifests/multi", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof(v)), DOCKER_LIST);
    resp_free(&r);
}

Test(manifests, index_naming_absent_manifest_is_manifest_blob_unknown)
{
    char idx[1024];

    snprintf(idx, sizeof(idx),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
             "\"digest\":\"sha256:%064d\",\"size\":10}]}",
             OCI_INDEX, OCI_MANIFEST, 0);
    expect_put_error("idx", "latest", OCI_INDEX, idx, strlen(idx), 400, "MANIFEST_BLOB_UNKNOWN");
    cr_assert_eq(http_status(&srv, "GET", "/v2/idx/manifests/latest", NULL, 0), 404);
}

Test(manifests, manifest_naming_absent_blob_is_rejected_and_not_stored)
{
    char m[2048], code[64];

    snprintf(m, sizeof(m),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"sha256:%064d\","
             "\"size\":2},\"layers\":[]}",
             OCI_MANIFEST, 0);
    expect_put_error("nob", "v1", OCI_MANIFEST, m, strlen(m), 400, "MANIFEST_BLOB_UNKNOWN");
    cr_assert_eq(http_status(&srv, "GET", "/v2/nob/manifests/v1", code, sizeof(code)), 404);
    cr_assert_str_eq(code, "MANIFEST_UNKNOWN");
}

Test(manifests, blobs_of_another_repository_do_not_count)
{
    char m[2048];

    make_image("owner", OCI_MANIFEST, NULL, m, sizeof(m));
    expect_put_error("thief", "v1", OCI_MANIFEST, m, strlen(m), 400, "MANIFEST_BLOB_UNKNOWN");
}

Test(manifests, invalid_manifests_are_manifest_invalid)
{
    char m[2048], bad[2200];
    const char *schema1 = "{\"schemaVersion\":1,\"name\":\"x\",\"tag\":\"y\",\"fsLayers\":[]}";

    make_image("bad", OCI_MANIFEST, NULL, m, sizeof(m));
    expect_put_error("bad", "a", OCI_MANIFEST, "{not json", 9, 400, "MANIFEST_INVALID");
    expect_put_error("bad", "a", OCI_MANIFEST, "[]", 2, 400, "MANIFEST_INVALID");
    expect_put_error("bad", "a", "application/vnd.docker.distribution.manifest.v1+prettyjws",
                     schema1, strlen(schema1), 400, "MANIFEST_INVALID");
    /* Content-Type says index, body says manifest. */
    expect_put_error("bad", "a", OCI_INDEX, m, strlen(m), 400, "MANIFEST_INVALID");
    /* mediaType missing and Content-Type generic. */
    snprintf(bad, sizeof(bad), "%s", m);
    {
        char *p = strstr(bad, "\"mediaType\":\"" OCI_MANIFEST "\",");

        cr_assert(p);
        memmove(p, p + strlen("\"mediaType\":\"" OCI_MANIFEST "\","),
                strlen(p + strlen("\"mediaType\":\"" OCI_MANIFEST "\",")) + 1);
    }
    expect_put_error("bad", "a", "application/json", bad, strlen(bad), 400, "MANIFEST_INVALID");
    /* ... but the same with the right Content-Type is a valid OCI manifest. */
    cr_assert_eq(http_put_manifest(&srv, "bad", "ok", OCI_MANIFEST, bad, strlen(bad), NULL), 201);
    /* Unknown mediaType. */
    snprintf(bad, sizeof(bad), "%s", m);
    memcpy(strstr(bad, "oci.image.manifest"), "oci.image.manifesX", 18);
    expect_put_error("bad", "a", "application/json", bad, strlen(bad), 400, "MANIFEST_INVALID");
    /* Duplicate keys, a broken descriptor. */
    expect_put_error("bad", "a", OCI_MANIFEST, "{\"schemaVersion\":2,\"schemaVersion\":2}", 37, 400,
                     "MANIFEST_INVALID");
    snprintf(bad, sizeof(bad),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"x\","
             "\"digest\":\"sha256:nothex\",\"size\":2},\"layers\":[]}",
             OCI_MANIFEST);
    expect_put_error("bad", "a", OCI_MANIFEST, bad, strlen(bad), 400, "MANIFEST_INVALID");
    cr_assert_eq(http_status(&srv, "GET", "/v2/bad/manifests/a", NULL, 0), 404);
}

Test(manifests, oversized_manifest_is_413)
{
    size_t len = (4 << 20) + 10;
    char *big = malloc(len);

    memset(big, ' ', len);
    big[0] = '{';
    big[len - 1] = '}';
    expect_put_error("big", "v1", OCI_MANIFEST, big, len, 413, "SIZE_INVALID");
    free(big);
}

Test(manifests, invalid_tag_and_mismatching_digest_reference)
{
    char m[2048], tag[200];

    make_image("ref", OCI_MANIFEST, NULL, m, sizeof(m));
    expect_put_error("ref", "-bad", OCI_MANIFEST, m, strlen(m), 400, "MANIFEST_INVALID");
    expect_put_error("ref", ".bad", OCI_MANIFEST, m, strlen(m), 400, "MANIFEST_INVALID");
    memset(tag, 'a', 129);
    tag[129] = '\0';
    expect_put_error("ref", tag, OCI_MANIFEST, m, strlen(m), 400, "MANIFEST_INVALID");
    tag[128] = '\0';
    cr_assert_eq(http_put_manifest(&srv, "ref", tag, OCI_MANIFEST, m, strlen(m), NULL), 201);
    expect_put_error("ref",
                     "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                     OCI_MANIFEST, m, strlen(m), 400, "DIGEST_INVALID");
}

Test(manifests, pushing_the_same_manifest_again_is_idempotent)
{
    char m[2048], d1[200], d2[200];
    struct resp r;

    make_image("idem", OCI_MANIFEST, NULL, m, sizeof(m));
    cr_assert_eq(http_put_manifest(&srv, "idem", "v1", OCI_MANIFEST, m, strlen(m), &r), 201);
    resp_header(&r, "Docker-Content-Digest", d1, sizeof(d1));
    resp_free(&r);
    cr_assert_eq(http_put_manifest(&srv, "idem", "v1", OCI_MANIFEST, m, strlen(m), &r), 201);
    resp_header(&r, "Docker-Content-Digest", d2, sizeof(d2));
    resp_free(&r);
    cr_assert_str_eq(d1, d2);
    cr_assert_eq(http_put_manifest(&srv, "idem", d1, OCI_MANIFEST, m, strlen(m), NULL), 201);
}

Test(manifests, subject_is_accepted_before_it_exists_and_listed_as_referrer)
{
    char m[2048], art[4096], subj[200], ad[200], path[600], v[256], extra[1024];
    struct resp r;

    make_image("ref", OCI_MANIFEST, NULL, m, sizeof(m));
    digest_str("sha256", m, strlen(m), subj, sizeof(subj));
    snprintf(extra, sizeof(extra),
             ",\"artifactType\":\"application/vnd.example.sbom\",\"subject\":{\"mediaType\":"
             "\"%s\",\"digest\":\"%s\",\"size\":%zu},\"annotations\":{\"org.example\":\"yes\"}",
             OCI_MANIFEST, subj, strlen(m));
    make_image("ref", OCI_MANIFEST, extra, art, sizeof(art));
    digest_str("sha256", art, strlen(art), ad, sizeof(ad));
    /* The subject is not pushed yet. */
    cr_assert_eq(http_put_manifest(&srv, "ref", ad, OCI_MANIFEST, art, strlen(art), &r), 201, "%s",
                 r.body);
    cr_assert_str_eq(resp_header(&r, "OCI-Subject", v, sizeof(v)), subj);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/ref/referrers/%s", subj);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(resp_header(&r, "Content-Type", v, sizeof(v)), OCI_INDEX);
    cr_assert(strstr(r.body, ad), "%s", r.body);
    cr_assert(strstr(r.body, "\"artifactType\":\"application/vnd.example.sbom\""), "%s", r.body);
    cr_assert(strstr(r.body, "\"org.example\":\"yes\""), "%s", r.body);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/ref/referrers/%s?artifactType=application/vnd.example.sbom",
             subj);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert(strstr(r.body, ad));
    cr_assert_str_eq(resp_header(&r, "OCI-Filters-Applied", v, sizeof(v)), "artifactType");
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/ref/referrers/%s?artifactType=application/other", subj);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(!strstr(r.body, ad));
    cr_assert(strstr(r.body, "\"manifests\":[]"), "%s", r.body);
    resp_free(&r);
    /* Deleting the referrer removes it from the list. */
    snprintf(path, sizeof(path), "/v2/ref/manifests/%s", ad);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    snprintf(path, sizeof(path), "/v2/ref/referrers/%s", subj);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert(!strstr(r.body, ad), "%s", r.body);
    resp_free(&r);
}

Test(manifests, referrers_of_unknown_digest_is_empty_index)
{
    struct resp r;
    char code[64];

    http(&srv, "GET",
         "/v2/none/referrers/sha256:"
         "1111111111111111111111111111111111111111111111111111111111111111",
         NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"manifests\":[]"));
    resp_free(&r);
    cr_assert_eq(http_status(&srv, "GET", "/v2/none/referrers/sha256:bad", code, sizeof(code)),
                 400);
    cr_assert_str_eq(code, "DIGEST_INVALID");
}

Test(manifests, delete_by_tag_removes_only_the_tag)
{
    char m[2048], d[200], path[600];

    make_image("del", OCI_MANIFEST, NULL, m, sizeof(m));
    digest_str("sha256", m, strlen(m), d, sizeof(d));
    cr_assert_eq(http_put_manifest(&srv, "del", "a", OCI_MANIFEST, m, strlen(m), NULL), 201);
    cr_assert_eq(http_put_manifest(&srv, "del", "b", OCI_MANIFEST, m, strlen(m), NULL), 201);
    cr_assert_eq(http_status(&srv, "DELETE", "/v2/del/manifests/a", NULL, 0), 202);
    cr_assert_eq(http_status(&srv, "GET", "/v2/del/manifests/a", NULL, 0), 404);
    cr_assert_eq(http_status(&srv, "GET", "/v2/del/manifests/b", NULL, 0), 200);
    snprintf(path, sizeof(path), "/v2/del/manifests/%s", d);
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 200);
}

Test(manifests, delete_by_digest_removes_manifest_and_its_tags)
{
    char m[2048], d[200], path[600], code[64];
    struct resp r;

    make_image("del", OCI_MANIFEST, NULL, m, sizeof(m));
    digest_str("sha256", m, strlen(m), d, sizeof(d));
    cr_assert_eq(http_put_manifest(&srv, "del", "a", OCI_MANIFEST, m, strlen(m), NULL), 201);
    cr_assert_eq(http_put_manifest(&srv, "del", "b", OCI_MANIFEST, m, strlen(m), NULL), 201);
    snprintf(path, sizeof(path), "/v2/del/manifests/%s", d);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    cr_assert_eq(http_status(&srv, "GET", path, code, sizeof(code)), 404);
    cr_assert_str_eq(code, "MANIFEST_UNKNOWN");
    cr_assert_eq(http_status(&srv, "GET", "/v2/del/manifests/a", NULL, 0), 404);
    cr_assert_eq(http_status(&srv, "GET", "/v2/del/manifests/b", NULL, 0), 404);
    http(&srv, "GET", "/v2/del/tags/list", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"tags\":[]"), "%s", r.body);
    resp_free(&r);
    cr_assert_eq(http_status(&srv, "DELETE", path, code, sizeof(code)), 404);
    cr_assert_str_eq(code, "MANIFEST_UNKNOWN");
    cr_assert_eq(http_status(&srv, "DELETE", "/v2/del/manifests/nosuchtag", code, sizeof(code)),
                 404);
}

Test(manifests_nodelete, delete_is_unsupported_when_disabled)
{
    char m[2048], code[64];

    make_image("nd", OCI_MANIFEST, NULL, m, sizeof(m));
    cr_assert_eq(http_put_manifest(&srv, "nd", "a", OCI_MANIFEST, m, strlen(m), NULL), 201);
    cr_assert_eq(http_status(&srv, "DELETE", "/v2/nd/manifests/a", code, sizeof(code)), 405);
    cr_assert_str_eq(code, "UNSUPPORTED");
    cr_assert_eq(http_status(&srv, "GET", "/v2/nd/manifests/a", NULL, 0), 200);
}

Test(manifests, mount_without_from_links_a_blob_stored_elsewhere)
{
    char data[] = "dedup me", d[200], path[600], v[256];
    struct resp r;

    push_blob(&srv, "somewhere/else", data, strlen(data), d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/mine/blobs/uploads/?mount=%s", d);
    http(&srv, "POST", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 201);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", v, sizeof(v)), d);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/mine/blobs/%s", d);
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 200);
    snprintf(path, sizeof(path), "/v2/mine/blobs/uploads/?mount=sha256:%064d", 0);
    cr_assert_eq(http_status(&srv, "POST", path, NULL, 0), 202, "unknown blob: a plain session");
}

/* Follow Link headers from first, collecting the JSON bodies' names. */
static int follow(const char *first, const char *key, char *all, size_t size)
{
    char url[1024], link[1024];
    struct resp r;
    int pages = 0;

    snprintf(url, sizeof(url), "%s", first);
    all[0] = '\0';
    for (;;) {
        const char *p, *q;

        http(&srv, "GET", url, NULL, 0, NULL, &r);
        cr_assert_eq(r.status, 200, "%s: %s", url, r.body);
        p = strstr(r.body, key);
        cr_assert(p, "%s", r.body);
        strncat(all, p + strlen(key), size - strlen(all) - 1);
        pages++;
        if (!resp_header(&r, "Link", link, sizeof(link))) {
            resp_free(&r);
            break;
        }
        p = strchr(link, '<');
        q = strchr(link, '>');
        cr_assert(p && q && strstr(link, "rel=\"next\""), "%s", link);
        snprintf(url, sizeof(url), "%.*s", (int)(q - p - 1), p + 1);
        resp_free(&r);
        cr_assert_lt(pages, 100);
    }
    return pages;
}

Test(listing, tags_list_pages_in_case_insensitive_lexical_order_with_link)
{
    const char *tags[] = {"v3", "latest", "v1", "v10", "v2", "a", "B", "A"};
    char m[2048], all[4096];
    struct resp r;
    size_t i;

    make_image("pg", OCI_MANIFEST, NULL, m, sizeof(m));
    for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        cr_assert_eq(http_put_manifest(&srv, "pg", tags[i], OCI_MANIFEST, m, strlen(m), NULL), 201);
    http(&srv, "GET", "/v2/pg/tags/list", NULL, 0, NULL, &r);
    cr_assert_str_eq(
        r.body, "{\"name\":\"pg\",\"tags\":[\"A\",\"a\",\"B\",\"latest\",\"v1\",\"v10\",\"v2\","
                "\"v3\"]}");
    cr_assert(!resp_header(&r, "Link", all, sizeof(all)));
    resp_free(&r);
    cr_assert_eq(follow("/v2/pg/tags/list?n=3", "\"tags\":", all, sizeof(all)), 3);
    cr_assert_str_eq(all, "[\"A\",\"a\",\"B\"]}[\"latest\",\"v1\",\"v10\"]}[\"v2\",\"v3\"]}");
    http(&srv, "GET", "/v2/pg/tags/list?n=0", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert(strstr(r.body, "\"tags\":[]"));
    cr_assert(!resp_header(&r, "Link", all, sizeof(all)), "n=0: no Link");
    resp_free(&r);
    /* last need not exist: the list goes on after it lexically. */
    http(&srv, "GET", "/v2/pg/tags/list?last=v0&n=2", NULL, 0, NULL, &r);
    cr_assert(strstr(r.body, "[\"v1\",\"v10\"]"), "%s", r.body);
    resp_free(&r);
    http(&srv, "GET", "/v2/pg/tags/list?last=zzz", NULL, 0, NULL, &r);
    cr_assert(strstr(r.body, "\"tags\":[]"), "%s", r.body);
    resp_free(&r);
}

Test(listing, bad_n_is_400_and_unknown_repository_404)
{
    char code[64], m[2048];

    make_image("n", OCI_MANIFEST, NULL, m, sizeof(m));
    cr_assert_eq(http_put_manifest(&srv, "n", "t", OCI_MANIFEST, m, strlen(m), NULL), 201);
    cr_assert_eq(http_status(&srv, "GET", "/v2/n/tags/list?n=-1", code, sizeof(code)), 400);
    cr_assert_str_neq(code, "");
    cr_assert_eq(http_status(&srv, "GET", "/v2/n/tags/list?n=abc", NULL, 0), 400);
    cr_assert_eq(http_status(&srv, "GET", "/v2/n/tags/list?n=99999999999999999999999", NULL, 0),
                 400);
    cr_assert_eq(http_status(&srv, "GET", "/v2/n/tags/list?n=1000000", NULL, 0), 200,
                 "huge n clamps");
    cr_assert_eq(http_status(&srv, "GET", "/v2/_catalog?n=x", NULL, 0), 400);
    cr_assert_eq(http_status(&srv, "GET", "/v2/nosuch/tags/list", code, sizeof(code)), 404);
    cr_assert_str_eq(code, "NAME_UNKNOWN");
}

Test(listing, catalog_pages_through_repositories)
{
    const char *repos[] = {"zeta", "alpha/one", "alpha/two", "beta", "alpha"};
    char all[4096], data[] = "x", d[200];
    size_t i;

    for (i = 0; i < sizeof(repos) / sizeof(repos[0]); i++)
        push_blob(&srv, repos[i], data, 1, d, sizeof(d));
    cr_assert_eq(follow("/v2/_catalog?n=2", "\"repositories\":", all, sizeof(all)), 3);
    cr_assert_str_eq(all, "[\"alpha\",\"alpha/one\"]}[\"alpha/two\",\"beta\"]}[\"zeta\"]}");
    cr_assert_eq(follow("/v2/_catalog", "\"repositories\":", all, sizeof(all)), 1);
    cr_assert_str_eq(all, "[\"alpha\",\"alpha/one\",\"alpha/two\",\"beta\",\"zeta\"]}");
}

Test(manifests, a_manifest_deleted_in_one_repository_stays_in_another)
{
    char cfgd[200], m[2048], d[200], path[600];
    const char *cfg = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";

    push_blob(&srv, "one", cfg, strlen(cfg), cfgd, sizeof(cfgd));
    push_blob(&srv, "two", cfg, strlen(cfg), cfgd, sizeof(cfgd));
    snprintf(m, sizeof(m),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[]}",
             OCI_MANIFEST, cfgd, strlen(cfg));
    digest_str("sha256", m, strlen(m), d, sizeof(d));
    cr_assert_eq(http_put_manifest(&srv, "one", "v1", OCI_MANIFEST, m, strlen(m), NULL), 201);
    cr_assert_eq(http_put_manifest(&srv, "two", "v1", OCI_MANIFEST, m, strlen(m), NULL), 201);
    snprintf(path, sizeof(path), "/v2/one/manifests/%s", d);
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 404);
    snprintf(path, sizeof(path), "/v2/two/manifests/%s", d);
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 200, "the bytes are shared, not owned");
    cr_assert_eq(http_status(&srv, "DELETE", path, NULL, 0), 202);
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 404);
    cr_assert_eq(http_put_manifest(&srv, "two", "v2", OCI_MANIFEST, m, strlen(m), NULL), 201,
                 "pushing it again after both deletes stores it anew");
    cr_assert_eq(http_status(&srv, "GET", "/v2/two/manifests/v2", NULL, 0), 200);
}

Test(manifests, non_string_annotations_are_manifest_invalid_wherever_they_are)
{
    char m[2048], bad[4096], subj[200];
    const char *where[] = {"top", "config", "layer", "subject", NULL};
    const char *values[] = {"1", "true", "null", "{}", "[\"x\"]", NULL};
    size_t i, j;

    make_image("ann", OCI_MANIFEST, NULL, m, sizeof(m));
    digest_str("sha256", m, strlen(m), subj, sizeof(subj));
    for (i = 0; where[i]; i++)
        for (j = 0; values[j]; j++) {
            char ann[64], *p;

            snprintf(ann, sizeof(ann), "\"annotations\":{\"k\":\"v\",\"x\":%s}", values[j]);
            snprintf(bad, sizeof(bad), "%s", m);
            if (!strcmp(where[i], "top")) {
                snprintf(bad + strlen(bad) - 1, sizeof(bad) - strlen(bad) + 1, ",%s}", ann);
            } else if (!strcmp(where[i], "subject")) {
                snprintf(bad + strlen(bad) - 1, sizeof(bad) - strlen(bad) + 1,
                         ",\"subject\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1,%s}}",
                         OCI_MANIFEST, subj, ann);
            } else {
                /* Before the size of the config, or of the (only) layer. */
                p = !strcmp(where[i], "config") ? strstr(bad, "\"config\":{")
                                                : strstr(bad, "\"layers\":[{");
                cr_assert(p);
                p = strstr(p, "\"size\":");
                memmove(p + strlen(ann) + 1, p, strlen(p) + 1);
                memcpy(p, ann, strlen(ann));
                p[strlen(ann)] = ',';
            }
            expect_put_error("ann", "v1", OCI_MANIFEST, bad, strlen(bad), 400, "MANIFEST_INVALID");
        }
    /* Annotations that are not an object, and in an index's manifests. */
    snprintf(bad, sizeof(bad), "%.*s,\"annotations\":\"x\"}", (int)strlen(m) - 1, m);
    expect_put_error("ann", "v1", OCI_MANIFEST, bad, strlen(bad), 400, "MANIFEST_INVALID");
    cr_assert_eq(http_put_manifest(&srv, "ann", "base", OCI_MANIFEST, m, strlen(m), NULL), 201);
    snprintf(bad, sizeof(bad),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"n\":2}}]}",
             OCI_INDEX, OCI_MANIFEST, subj, strlen(m));
    expect_put_error("ann", "v1", OCI_INDEX, bad, strlen(bad), 400, "MANIFEST_INVALID");
    cr_assert_eq(http_status(&srv, "GET", "/v2/ann/manifests/v1", NULL, 0), 404,
                 "nothing was stored");
    /* String values everywhere are fine. */
    snprintf(bad, sizeof(bad),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
             "\"digest\":\"%s\",\"size\":%zu,\"annotations\":{\"n\":\"2\"}}],"
             "\"annotations\":{\"a\":\"b\"}}",
             OCI_INDEX, OCI_MANIFEST, subj, strlen(m));
    cr_assert_eq(http_put_manifest(&srv, "ann", "v1", OCI_INDEX, bad, strlen(bad), NULL), 201);
}

/* An image whose one layer has type layer_type and was never pushed. */
static long put_with_unpushed_layer(const char *mt, const char *layer_type)
{
    char cfg[200], m[2048], layer[200];
    const char *cfg_body = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";

    push_blob(&srv, "nd", cfg_body, strlen(cfg_body), cfg, sizeof(cfg));
    digest_str("sha256", layer_type, strlen(layer_type), layer, sizeof(layer));
    snprintf(m, sizeof(m),
             "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
             "\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":10,\"urls\":"
             "[\"https://example.com/layer\"]}]}",
             mt, cfg, strlen(cfg_body), layer_type, layer);
    return http_put_manifest(&srv, "nd", "v1", mt, m, strlen(m), NULL);
}

Test(manifests, only_exact_non_distributable_layer_types_skip_the_blob_check)
{
    const char *exempt[] = {"application/vnd.oci.image.layer.nondistributable.v1.tar",
                            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", NULL};
    const char *not_exempt[] = {"application/vnd.example.foreign",
                                "application/vnd.docker.image.rootfs.foreign.diff.tar",
                                "application/vnd.oci.image.layer.nondistributable.v1.tar+gzipx",
                                "foreign",
                                "application/vnd.oci.image.layer.v1.tar",
                                NULL};
    size_t i;

    for (i = 0; exempt[i]; i++)
        cr_expect_eq(put_with_unpushed_layer(OCI_MANIFEST, exempt[i]), 201, "%s", exempt[i]);
    cr_expect_eq(put_with_unpushed_layer(
                     DOCKER_MANIFEST, "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"),
                 201);
    for (i = 0; not_exempt[i]; i++) {
        struct resp r;
        char c[64], cfg[200], m[2048], layer[200];
        const char *cfg_body = "{\"architecture\":\"amd64\",\"os\":\"linux\"}";

        push_blob(&srv, "nd", cfg_body, strlen(cfg_body), cfg, sizeof(cfg));
        digest_str("sha256", not_exempt[i], strlen(not_exempt[i]), layer, sizeof(layer));
        snprintf(m, sizeof(m),
                 "{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":"
                 "\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\",\"size\":%zu},"
                 "\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":10}]}",
                 OCI_MANIFEST, cfg, strlen(cfg_body), not_exempt[i], layer);
        http_put_manifest(&srv, "nd", "no", OCI_MANIFEST, m, strlen(m), &r);
        cr_expect_eq(r.status, 400, "%s: %ld %s", not_exempt[i], r.status, r.body);
        cr_expect_str_eq(resp_error_code(&r, c, sizeof(c)), "MANIFEST_BLOB_UNKNOWN", "%s: %s",
                         not_exempt[i], r.body);
        resp_free(&r);
    }
    cr_expect_eq(http_status(&srv, "GET", "/v2/nd/manifests/no", NULL, 0), 404);
}

Test(manifests, invalid_reference_on_get_head_delete_is_404_manifest_unknown)
{
    char m[2048], code[64], path[600], d[200];
    const char *refs[] = {"-bad",
                          ".bad",
                          "sha256:abc",
                          "md5:d41d8cd98f00b204e9800998ecf8427e",
                          "sha256:" /* empty hex */,
                          "a%2bb",
                          NULL};
    const char *methods[] = {"GET", "HEAD", "DELETE", NULL};
    size_t i, j;

    make_image("inv", OCI_MANIFEST, NULL, m, sizeof(m));
    cr_assert_eq(http_put_manifest(&srv, "inv", "v1", OCI_MANIFEST, m, strlen(m), NULL), 201);
    digest_str("sha256", m, strlen(m), d, sizeof(d));
    for (i = 0; refs[i]; i++)
        for (j = 0; methods[j]; j++) {
            snprintf(path, sizeof(path), "/v2/inv/manifests/%s", refs[i]);
            code[0] = '\0';
            cr_expect_eq(http_status(&srv, methods[j], path, code, sizeof(code)), 404, "%s %s",
                         methods[j], path);
            if (strcmp(methods[j], "HEAD") != 0)
                cr_expect_str_eq(code, "MANIFEST_UNKNOWN", "%s %s", methods[j], path);
        }
    /* Nothing went: the tag and the manifest are still there. */
    cr_expect_eq(http_status(&srv, "GET", "/v2/inv/manifests/v1", NULL, 0), 200);
    snprintf(path, sizeof(path), "/v2/inv/manifests/%s", d);
    cr_expect_eq(http_status(&srv, "GET", path, NULL, 0), 200);
    /* A PUT with an invalid tag stays 400. */
    expect_put_error("inv", "-bad", OCI_MANIFEST, m, strlen(m), 400, "MANIFEST_INVALID");
}
