/* Unit tests for service/evict: which cached repositories a run evicts and
 * what it leaves, on a real blob store and LMDB index. */
#include <time.h>

#include "../service/evict.h"
#include "fixture.h"

static void setup(void)
{
    fixture_open(1);
}

static void teardown(void)
{
    fixture_close();
}

TestSuite(evict, .init = setup, .fini = teardown);

/* A repository as the cache stores it: a layer, a manifest using it, tag
 * v1, and the cache's marks on both dated when. The layer's digest out. */
static void cached(const char *repo, int64_t when, struct digest *layer)
{
    struct index_txn *t = NULL;
    struct index_manifest m;
    struct digest md;
    const char *refs[1];
    char body[200];
    int created;

    fixture_blob(repo, repo, strlen(repo), layer);
    snprintf(body, sizeof(body), "{\"cached\":\"%s\"}", repo);
    digest_of(DIGEST_SHA256, body, strlen(body), &md);
    refs[0] = layer->str;
    memset(&m, 0, sizeof(m));
    snprintf(m.media_type, sizeof(m.media_type), "application/vnd.oci.image.manifest.v1+json");
    m.size = strlen(body);
    m.created = when;
    cr_assert_eq(index_begin(fx.ix, INDEX_WRITE, &t), REG_OK);
    cr_assert_eq(index_put_manifest(t, repo, md.str, &m, refs, 1, body, strlen(body), &created),
                 REG_OK);
    cr_assert_eq(index_put_tag(t, repo, "v1", md.str), REG_OK);
    cr_assert_eq(index_set_cached(t, repo, "v1", when), REG_OK);
    cr_assert_eq(index_set_cached(t, repo, NULL, when), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
}

/* Push a manifest (a config blob, no layers) into repo through the service,
 * tagged tag, or by digest when tag is NULL. */
static void pushed(const char *repo, const char *tag)
{
    struct svc_manifest out;
    struct svc_ref ref;
    struct digest cfg;
    char body[400];

    fixture_blob(repo, "{}", 2, &cfg);
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":2},\"layers\":[]}",
             cfg.str);
    memset(&ref, 0, sizeof(ref));
    ref.tag = tag;
    if (!tag)
        digest_of(DIGEST_SHA256, body, strlen(body), &ref.d);
    cr_assert_eq(svc_manifest_put(fx.svc, repo, &ref, "application/vnd.oci.image.manifest.v1+json",
                                  body, strlen(body), &out),
                 REG_OK);
}

/* Tag tag of repo names what v1 names, with no cache mark: pushed before
 * pushes were marked. */
static void tag_unmarked(const char *repo, const char *tag)
{
    struct index_txn *t = NULL;
    char digest[DIGEST_STR_MAX];

    cr_assert_eq(index_begin(fx.ix, INDEX_WRITE, &t), REG_OK);
    cr_assert_eq(index_get_tag(t, repo, "v1", digest, sizeof(digest)), REG_OK);
    cr_assert_eq(index_put_tag(t, repo, tag, digest), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
}

static int exists(const char *repo)
{
    struct index_txn *t = NULL;
    int rc;

    cr_assert_eq(index_begin(fx.ix, INDEX_READ, &t), REG_OK);
    rc = index_repo_exists(t, repo);
    index_abort(t);
    return rc == REG_OK;
}

static int64_t mark(const char *repo, const char *tag)
{
    struct index_txn *t = NULL;
    int64_t when = -1;

    cr_assert_eq(index_begin(fx.ix, INDEX_READ, &t), REG_OK);
    if (index_get_cached(t, repo, tag, &when) != REG_OK)
        when = -1;
    index_abort(t);
    return when;
}

static struct evict *rules(int64_t any_after, int64_t mirror_after)
{
    struct evict_rule v[2] = {{"all", "", any_after}, {"m", "mirror", mirror_after}};
    struct evict *e = NULL;

    cr_assert_eq(evict_new(v, 2, fx.ix, &e), REG_OK);
    return e;
}

Test(evict, an_idle_cached_repository_leaves_with_its_tags_manifests_links_and_marks)
{
    struct evict *e = rules(10, 0);
    struct digest layer;
    uint64_t repos = 0, manifests = 0;
    struct index_txn *t = NULL;
    char digest[DIGEST_STR_MAX];

    cached("lib/old", (int64_t)time(NULL) - 100, &layer);
    cr_assert_eq(fixture_refcount(layer.str), 1);
    cr_assert_eq(evict_run(e, 0, &repos, &manifests), REG_OK);
    cr_assert_eq(repos, 1);
    cr_assert_eq(manifests, 1);
    cr_assert_not(exists("lib/old"));
    cr_assert_eq(fixture_refcount(layer.str), 0, "the layer's reference was not dropped");
    cr_assert_eq(mark("lib/old", NULL), -1, "the repository's mark stays");
    cr_assert_eq(mark("lib/old", "v1"), -1, "the tag's mark stays");
    cr_assert_eq(index_begin(fx.ix, INDEX_READ, &t), REG_OK);
    cr_assert_eq(index_get_tag(t, "lib/old", "v1", digest, sizeof(digest)), REG_E_MANIFEST_UNKNOWN);
    cr_assert_eq(index_repo_has_blob(t, "lib/old", layer.str), REG_E_BLOB_UNKNOWN);
    cr_assert_eq(index_repo_empty(t, "lib/old"), REG_OK);
    index_abort(t);
    evict_free(e);
}

Test(evict, pushed_content_a_recent_pull_and_a_prefix_without_evict_after_keep_a_repository)
{
    struct evict *e = rules(10, 0);
    int64_t old = (int64_t)time(NULL) - 100;
    struct digest d;
    uint64_t repos = 0, manifests = 0;
    struct index_txn *t = NULL;

    cached("lib/digest-pushed", old, &d);
    pushed("lib/digest-pushed", NULL);
    cached("lib/tag-pushed", old, &d);
    pushed("lib/tag-pushed", "mine");
    cached("lib/tag-unmarked", old, &d);
    tag_unmarked("lib/tag-unmarked", "mine");
    cached("lib/blob-pushed", old, &d);
    fixture_blob("lib/blob-pushed", "a push under way", 16, &d);
    cached("lib/recent", (int64_t)time(NULL), &d);
    cached("mirror/lib/old", old, &d);
    pushed("local/app", "v1");
    cached("lib/gone", old, &d);
    cr_assert_eq(evict_run(e, 0, &repos, &manifests), REG_OK);
    cr_assert_eq(repos, 1, "%llu evicted", (unsigned long long)repos);
    cr_assert_not(exists("lib/gone"));
    cr_assert(exists("lib/digest-pushed"), "a manifest pushed by digest was evicted");
    cr_assert(exists("lib/tag-pushed"));
    cr_assert(exists("lib/tag-unmarked"), "a tag the cache did not bring was evicted");
    cr_assert(exists("lib/blob-pushed"), "a push under way was evicted");
    cr_assert(exists("lib/recent"));
    cr_assert(exists("mirror/lib/old"), "the empty prefix's rule took a prefix's repository");
    cr_assert(exists("local/app"));
    /* Without their tags: the unmarked tag's repository goes, the pushed
     * one's stays (its mark outlives the tag). */
    cr_assert_eq(index_begin(fx.ix, INDEX_WRITE, &t), REG_OK);
    cr_assert_eq(index_del_tag(t, "lib/tag-pushed", "mine"), REG_OK);
    cr_assert_eq(index_del_tag(t, "lib/tag-unmarked", "mine"), REG_OK);
    cr_assert_eq(index_commit(t), REG_OK);
    cr_assert_eq(evict_run(e, 0, &repos, &manifests), REG_OK);
    cr_assert_eq(repos, 2);
    cr_assert_not(exists("lib/tag-unmarked"));
    cr_assert(exists("lib/tag-pushed"), "the push's mark on the repository went with its tag");
    evict_free(e);
}

Test(evict, a_pull_remembered_in_memory_keeps_a_repository_and_is_written_before_the_run)
{
    struct evict *e = rules(10, 0);
    int64_t old = (int64_t)time(NULL) - 100;
    struct digest d;
    uint64_t repos = 0, manifests = 0;

    cached("lib/old", old, &d);
    cached("mirror/lib/old", old, &d);
    evict_used(e, "lib/old");
    evict_used(e, "mirror/lib/old"); /* no evict_after there: not remembered */
    evict_used(e, "local/never-cached");
    cr_assert_eq(mark("lib/old", NULL), old, "a pull wrote to the index at once");
    cr_assert_eq(evict_run(e, 0, &repos, &manifests), REG_OK);
    cr_assert_eq(repos, 0);
    cr_assert(exists("lib/old"));
    cr_assert_geq(mark("lib/old", NULL), old + 90, "the run did not write the pull first");
    cr_assert_eq(mark("mirror/lib/old", NULL), old);
    cr_assert_eq(mark("local/never-cached", NULL), -1, "a mark for a repository never cached");
    evict_free(e);
}

Test(evict, a_dry_run_counts_and_changes_nothing)
{
    struct evict *e = rules(10, 10);
    int64_t old = (int64_t)time(NULL) - 100;
    struct digest d;
    uint64_t repos = 0, manifests = 0;

    cached("lib/old", old, &d);
    cached("mirror/lib/old", old, &d);
    cr_assert_eq(evict_run(e, 1, &repos, &manifests), REG_OK);
    cr_assert_eq(repos, 2);
    cr_assert_eq(manifests, 2);
    cr_assert(exists("lib/old"));
    cr_assert(exists("mirror/lib/old"));
    cr_assert_eq(fixture_refcount(d.str), 1);
    evict_free(e);
}

Test(evict, without_evict_after_nothing_is_evicted)
{
    struct evict *e = rules(0, 0);
    struct digest d;
    uint64_t repos = 0, manifests = 0;

    cached("lib/old", 1, &d);
    cr_assert_eq(evict_run(e, 0, &repos, &manifests), REG_OK);
    cr_assert_eq(repos, 0);
    cr_assert(exists("lib/old"));
    evict_free(e);
}
