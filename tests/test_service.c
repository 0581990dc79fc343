/* Unit tests for the service layer (service/service.h) and manifest
 * validation (service/manifest.h), on a real blob store and LMDB index: the
 * registry's operations without HTTP. */
#include <stdarg.h>

#include "fixture.h"

#include "../service/manifest.h"

static void setup(void)
{
    fixture_open(1);
}

static void teardown(void)
{
    fixture_close();
}

TestSuite(service, .init = setup, .fini = teardown);
TestSuite(manifest);

/* --- helpers ------------------------------------------------------------------ */

#define CFG_TYPE "application/vnd.oci.image.config.v1+json"
#define LAYER_TYPE "application/vnd.oci.image.layer.v1.tar+gzip"

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, f);
    cr_assert_geq(vasprintf(&s, f, ap), 0);
    va_end(ap);
    return s;
}

/* An image manifest with a config and one layer; subject may be NULL. */
static char *image(const struct digest *cfg, const struct digest *layer, const char *subject,
                   const char *artifact_type)
{
    char *subj = subject ? fmt(",\"subject\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":1}",
                               MT_OCI_MANIFEST, subject)
                         : fmt("%s", "");
    char *at = artifact_type ? fmt(",\"artifactType\":\"%s\"", artifact_type) : fmt("%s", "");
    char *s = fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\"%s%s,"
                  "\"config\":{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":2},"
                  "\"layers\":[{\"mediaType\":\"%s\",\"digest\":\"%s\",\"size\":3}]}",
                  MT_OCI_MANIFEST, at, subj, CFG_TYPE, cfg->str, LAYER_TYPE, layer->str);

    free(subj);
    free(at);
    return s;
}

static struct svc_ref by_tag(const char *tag)
{
    struct svc_ref r;

    memset(&r, 0, sizeof(r));
    r.tag = tag;
    return r;
}

static struct svc_ref by_digest(const char *digest)
{
    struct svc_ref r;

    memset(&r, 0, sizeof(r));
    cr_assert_eq(digest_parse(digest, strlen(digest), &r.d), REG_OK);
    return r;
}

/* Push a config and a layer to repo and the manifest that uses them under
 * tag; its digest goes to out. */
static void push_image(const char *repo, const char *tag, struct digest *cfg, struct digest *layer,
                       char *out)
{
    struct svc_ref ref = by_tag(tag);
    struct svc_manifest m;
    char *body;

    fixture_blob(repo, "{}", 2, cfg);
    fixture_blob(repo, "abc", 3, layer);
    body = image(cfg, layer, NULL, NULL);
    cr_assert_eq(svc_manifest_put(fx.svc, repo, &ref, MT_OCI_MANIFEST, body, strlen(body), &m),
                 REG_OK);
    strcpy(out, m.digest);
    free(body);
}

/* The strings manifest_parse hands out borrow from the JSON: keep it. */
static json_t *kept;

static int parse(const char *json, const char *content_type, struct manifest_info *m)
{
    json_decref(kept);
    kept = json_loads(json, 0, NULL);
    cr_assert_not_null(kept, "test JSON must parse: %s", json);
    reg_detail_clear();
    return manifest_parse(kept, content_type, m);
}

/* --- manifest validation ------------------------------------------------------ */

static struct manifest_info mi;

Test(manifest, an_image_lists_its_config_and_layers_and_takes_the_config_type)
{
    struct digest c, l;
    char *s;

    digest_of(DIGEST_SHA256, "c", 1, &c);
    digest_of(DIGEST_SHA256, "l", 1, &l);
    s = image(&c, &l, NULL, NULL);
    cr_assert_eq(parse(s, NULL, &mi), REG_OK);
    cr_assert_eq(mi.nblobs, 2);
    cr_assert_eq(mi.nchildren, 0);
    cr_assert_not(mi.is_index);
    cr_assert_str_eq(mi.blobs[0], c.str);
    cr_assert_str_eq(mi.blobs[1], l.str);
    cr_assert_str_eq(mi.artifact_type, CFG_TYPE);
    cr_assert_null(mi.subject);
    free(s);
}

Test(manifest, an_index_lists_its_manifests)
{
    struct digest a;
    char *s;

    digest_of(DIGEST_SHA256, "a", 1, &a);
    s = fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
            "\"digest\":\"%s\",\"size\":7}]}",
            MT_OCI_INDEX, MT_OCI_MANIFEST, a.str);
    cr_assert_eq(parse(s, MT_OCI_INDEX, &mi), REG_OK);
    cr_assert(mi.is_index);
    cr_assert_eq(mi.nchildren, 1);
    cr_assert_str_eq(mi.children[0], a.str);
    free(s);
}

Test(manifest, schema_1_is_refused_with_a_reason)
{
    cr_assert_eq(parse("{\"schemaVersion\":1,\"name\":\"x\"}", NULL, &mi), REG_E_MANIFEST_INVALID);
    cr_assert_not_null(strstr(reg_detail(), "schema 1"));
}

Test(manifest, a_content_type_that_contradicts_the_media_type_is_refused)
{
    struct digest c;
    char *s;

    digest_of(DIGEST_SHA256, "c", 1, &c);
    s = image(&c, &c, NULL, NULL);
    cr_assert_eq(parse(s, MT_DOCKER_MANIFEST, &mi), REG_E_MANIFEST_INVALID);
    cr_assert_not_null(strstr(reg_detail(), "Content-Type"));
    free(s);
}

Test(manifest, bad_descriptors_and_annotations_are_refused)
{
    static const char *const bad[] = {
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST
        "\",\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:00\",\"size\":1},\"layers\":[]}",
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_MANIFEST "\",\"annotations\":{\"a\":1}}",
        "{\"schemaVersion\":2,\"mediaType\":\"" MT_OCI_INDEX "\"}",
        "{\"schemaVersion\":2}",
        "[]",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(parse(bad[i], NULL, &mi), REG_E_MANIFEST_INVALID, "accepted %s", bad[i]);
        cr_assert_not_null(reg_detail(), "no reason for %s", bad[i]);
    }
}

Test(manifest, non_distributable_layers_need_not_be_pushed)
{
    struct digest c;
    char *s;

    digest_of(DIGEST_SHA256, "c", 1, &c);
    s = fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"config\":{\"mediaType\":\"%s\","
            "\"digest\":\"%s\",\"size\":1},\"layers\":[{\"mediaType\":"
            "\"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip\",\"digest\":\"%s\","
            "\"size\":1}]}",
            MT_OCI_MANIFEST, CFG_TYPE, c.str, c.str);
    cr_assert_eq(parse(s, NULL, &mi), REG_OK);
    cr_assert_eq(mi.nblobs, 2);
    cr_assert_not(mi.skip[0]);
    cr_assert(mi.skip[1]);
    free(s);
}

/* --- manifests ---------------------------------------------------------------- */

Test(service, a_manifest_without_its_blobs_is_refused_and_nothing_is_stored)
{
    struct svc_ref ref = by_tag("v1");
    struct svc_manifest m;
    struct digest c, l;
    char *body;

    fixture_blob("app", "{}", 2, &c);
    digest_of(DIGEST_SHA256, "never pushed", 12, &l);
    body = image(&c, &l, NULL, NULL);
    cr_assert_eq(svc_manifest_put(fx.svc, "app", &ref, NULL, body, strlen(body), &m),
                 REG_E_MANIFEST_BLOB_UNKNOWN);
    cr_assert_not_null(strstr(reg_detail(), l.str), "the detail names the missing blob");
    cr_assert_eq(svc_manifest_get(fx.svc, "app", &ref, 1, NULL, &m), REG_E_MANIFEST_UNKNOWN);
    cr_assert_eq(fixture_refcount(c.str), 0);
    free(body);
}

Test(service, a_put_manifest_reads_back_by_tag_and_by_digest)
{
    struct svc_ref tag = by_tag("v1"), dig;
    struct svc_manifest a, b;
    struct digest c, l;
    char digest[DIGEST_STR_MAX];

    push_image("app", "v1", &c, &l, digest);
    dig = by_digest(digest);
    cr_assert_eq(svc_manifest_get(fx.svc, "app", &tag, 1, NULL, &a), REG_OK);
    cr_assert_eq(svc_manifest_get(fx.svc, "app", &dig, 1, NULL, &b), REG_OK);
    cr_assert_str_eq(a.digest, digest);
    cr_assert_str_eq(a.media_type, MT_OCI_MANIFEST);
    cr_assert_eq(a.len, b.len);
    cr_assert_eq(memcmp(a.data, b.data, a.len), 0);
    free(a.data);
    free(b.data);
    /* A HEAD needs no copy of the bytes. */
    cr_assert_eq(svc_manifest_get(fx.svc, "app", &tag, 0, NULL, &a), REG_OK);
    cr_assert_null(a.data);
    cr_assert_eq(a.len, b.len);
}

Test(service, a_body_that_does_not_hash_to_its_digest_is_refused)
{
    struct digest c, l, other;
    struct svc_ref ref;
    struct svc_manifest m;
    char *body;

    fixture_blob("app", "{}", 2, &c);
    fixture_blob("app", "abc", 3, &l);
    digest_of(DIGEST_SHA256, "something else", 14, &other);
    ref = by_digest(other.str);
    body = image(&c, &l, NULL, NULL);
    cr_assert_eq(svc_manifest_put(fx.svc, "app", &ref, NULL, body, strlen(body), &m),
                 REG_E_DIGEST_INVALID);
    cr_assert_not_null(reg_detail());
    free(body);
}

Test(service, reference_counts_follow_manifests_across_repositories)
{
    struct digest c, l, c2, l2;
    char d1[DIGEST_STR_MAX], d2[DIGEST_STR_MAX];
    struct svc_ref ref;

    push_image("one", "v1", &c, &l, d1);
    cr_assert_eq(fixture_refcount(c.str), 1);
    cr_assert_eq(fixture_refcount(l.str), 1);
    push_image("two", "v1", &c2, &l2, d2); /* the same bytes: the same blobs */
    cr_assert_str_eq(d1, d2);
    cr_assert_eq(fixture_refcount(l.str), 2);
    ref = by_digest(d1);
    cr_assert_eq(svc_manifest_delete(fx.svc, "one", &ref), REG_OK);
    cr_assert_eq(fixture_refcount(l.str), 1);
    cr_assert_eq(svc_manifest_delete(fx.svc, "two", &ref), REG_OK);
    cr_assert_eq(fixture_refcount(l.str), 0);
}

Test(service, a_blob_in_use_cannot_be_deleted_until_its_manifest_is)
{
    struct digest c, l;
    char digest[DIGEST_STR_MAX];
    struct svc_ref ref;

    push_image("app", "v1", &c, &l, digest);
    cr_assert_eq(svc_blob_delete(fx.svc, "app", &l), REG_E_IN_USE);
    cr_assert_not_null(strstr(reg_detail(), digest), "the detail names the manifest");
    ref = by_digest(digest);
    cr_assert_eq(svc_manifest_delete(fx.svc, "app", &ref), REG_OK);
    cr_assert_eq(svc_blob_delete(fx.svc, "app", &l), REG_OK);
    cr_assert_eq(svc_blob_delete(fx.svc, "app", &l), REG_E_BLOB_UNKNOWN);
}

Test(service, a_child_of_an_index_stays_while_the_index_does)
{
    struct digest c, l;
    char child[DIGEST_STR_MAX], *idx;
    struct svc_ref tag = by_tag("multi"), ref;
    struct svc_manifest m;

    push_image("app", "v1", &c, &l, child);
    idx = fmt("{\"schemaVersion\":2,\"mediaType\":\"%s\",\"manifests\":[{\"mediaType\":\"%s\","
              "\"digest\":\"%s\",\"size\":1}]}",
              MT_OCI_INDEX, MT_OCI_MANIFEST, child);
    cr_assert_eq(svc_manifest_put(fx.svc, "app", &tag, MT_OCI_INDEX, idx, strlen(idx), &m), REG_OK);
    ref = by_digest(child);
    cr_assert_eq(svc_manifest_delete(fx.svc, "app", &ref), REG_E_IN_USE);
    cr_assert_not_null(strstr(reg_detail(), m.digest), "the detail names the index");
    ref = by_digest(m.digest);
    cr_assert_eq(svc_manifest_delete(fx.svc, "app", &ref), REG_OK);
    ref = by_digest(child);
    cr_assert_eq(svc_manifest_delete(fx.svc, "app", &ref), REG_OK);
    free(idx);
}

Test(service, deleting_a_tag_keeps_the_manifest)
{
    struct digest c, l;
    char digest[DIGEST_STR_MAX];
    struct svc_ref tag = by_tag("v1"), dig;
    struct svc_manifest m;

    push_image("app", "v1", &c, &l, digest);
    cr_assert_eq(svc_manifest_delete(fx.svc, "app", &tag), REG_OK);
    cr_assert_eq(svc_manifest_get(fx.svc, "app", &tag, 0, NULL, &m), REG_E_MANIFEST_UNKNOWN);
    dig = by_digest(digest);
    cr_assert_eq(svc_manifest_get(fx.svc, "app", &dig, 0, NULL, &m), REG_OK);
}

Test(service, deletes_are_refused_when_disabled)
{
    struct digest c, l;
    char digest[DIGEST_STR_MAX];
    struct svc_ref ref;

    push_image("app", "v1", &c, &l, digest);
    svc_set_delete(fx.svc, 0);
    ref = by_digest(digest);
    cr_assert_eq(svc_manifest_delete(fx.svc, "app", &ref), REG_E_UNSUPPORTED);
    cr_assert_eq(svc_blob_delete(fx.svc, "app", &c), REG_E_UNSUPPORTED);
    svc_set_delete(fx.svc, 1);
    cr_assert_eq(svc_manifest_delete(fx.svc, "app", &ref), REG_OK);
}

/* --- blobs: mount --------------------------------------------------------------- */

static int allow_only(void *arg, const char *repo)
{
    return !strcmp(repo, arg);
}

Test(service, a_mount_links_a_blob_only_from_where_the_caller_may_read)
{
    struct svc_blob b;
    struct digest d;
    int mounted;

    fixture_blob("src", "layer", 5, &d);
    cr_assert_eq(svc_blob_open(fx.svc, "dst", &d, 0, NULL, &b), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(svc_blob_mount(fx.svc, "dst", &d, "elsewhere", NULL, NULL, &mounted), REG_OK);
    cr_assert_not(mounted);
    cr_assert_eq(svc_blob_mount(fx.svc, "dst", &d, NULL, allow_only, "nothing", &mounted), REG_OK);
    cr_assert_not(mounted);
    cr_assert_eq(svc_blob_mount(fx.svc, "dst", &d, NULL, allow_only, "src", &mounted), REG_OK);
    cr_assert(mounted);
    cr_assert_eq(svc_blob_open(fx.svc, "dst", &d, 0, NULL, &b), REG_OK);
    cr_assert_geq(b.fd, 0);
    cr_assert_eq(b.size, 5);
    close(b.fd);
    cr_assert_eq(svc_blob_mount(fx.svc, "dst2", &d, "src", NULL, NULL, &mounted), REG_OK);
    cr_assert(mounted);
}

/* --- listings ------------------------------------------------------------------- */

Test(service, tags_come_in_pages_that_say_where_the_next_begins)
{
    static const char *const tags[] = {"a", "b", "c"};
    struct digest c, l;
    struct svc_page p;
    struct svc_manifest m;
    char digest[DIGEST_STR_MAX], last[SVC_NAME_MAX + 1];
    size_t i;

    push_image("app", "a", &c, &l, digest);
    for (i = 1; i < 3; i++) {
        struct svc_ref ref = by_tag(tags[i]);
        char *body = image(&c, &l, NULL, NULL);

        cr_assert_eq(svc_manifest_put(fx.svc, "app", &ref, NULL, body, strlen(body), &m), REG_OK);
        free(body);
    }
    cr_assert_eq(svc_tags(fx.svc, "app", NULL, 2, &p), REG_OK);
    cr_assert_eq(json_array_size(p.names), 2);
    cr_assert(p.more);
    cr_assert_str_eq(p.last, "b");
    json_decref(p.names);
    strcpy(last, p.last);
    cr_assert_eq(svc_tags(fx.svc, "app", last, 2, &p), REG_OK);
    cr_assert_eq(json_array_size(p.names), 1);
    cr_assert_str_eq(json_string_value(json_array_get(p.names, 0)), "c");
    cr_assert_not(p.more);
    json_decref(p.names);
    cr_assert_eq(svc_tags(fx.svc, "nope", NULL, 10, &p), REG_E_NAME_UNKNOWN);
    cr_assert_null(p.names);
}

static int not_secret(void *arg, const char *repo)
{
    (void)arg;
    return strncmp(repo, "secret", 6) != 0;
}

Test(service, the_catalog_lists_only_what_the_filter_allows)
{
    struct digest d;
    struct svc_page p;

    fixture_blob("public/a", "x", 1, &d);
    fixture_blob("secret/b", "x", 1, &d);
    fixture_blob("public/c", "x", 1, &d);
    cr_assert_eq(svc_catalog(fx.svc, NULL, 10, NULL, NULL, &p), REG_OK);
    cr_assert_eq(json_array_size(p.names), 3);
    json_decref(p.names);
    cr_assert_eq(svc_catalog(fx.svc, NULL, 10, not_secret, NULL, &p), REG_OK);
    cr_assert_eq(json_array_size(p.names), 2);
    cr_assert_str_eq(json_string_value(json_array_get(p.names, 1)), "public/c");
    json_decref(p.names);
}

Test(service, referrers_are_listed_and_filtered_by_artifact_type)
{
    struct digest c, l;
    char subject[DIGEST_STR_MAX];
    struct svc_manifest m;
    struct digest sd;
    json_t *list;
    const char *types[] = {"application/x-sbom", "application/x-sig"};
    size_t i;

    push_image("app", "v1", &c, &l, subject);
    for (i = 0; i < 2; i++) {
        char *body = image(&c, &l, subject, types[i]);
        struct digest d;
        struct svc_ref ref;

        digest_of(DIGEST_SHA256, body, strlen(body), &d);
        ref = by_digest(d.str);
        cr_assert_eq(svc_manifest_put(fx.svc, "app", &ref, NULL, body, strlen(body), &m), REG_OK);
        cr_assert_str_eq(m.subject, subject);
        free(body);
    }
    cr_assert_eq(digest_parse(subject, strlen(subject), &sd), REG_OK);
    cr_assert_eq(svc_referrers(fx.svc, "app", &sd, NULL, &list), REG_OK);
    cr_assert_eq(json_array_size(list), 2);
    json_decref(list);
    cr_assert_eq(svc_referrers(fx.svc, "app", &sd, "application/x-sig", &list), REG_OK);
    cr_assert_eq(json_array_size(list), 1);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(list, 0), "artifactType")),
                     "application/x-sig");
    json_decref(list);
}
