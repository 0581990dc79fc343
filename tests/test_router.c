/* Unit tests for server/router (path -> route) and the name and tag
 * grammars of api/errors.c. */
#include <stdio.h>
#include <string.h>

#include <criterion/criterion.h>

#include "../api/api.h"
#include "../api/router.h"
#include "../auth/acl.h"
#include "../common/err.h"

#define DGST "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define UUID "0f6a3e1c-2b4d-4c8e-9a1f-3d5e7b9c1a2f"

/* Match path and check that it gives kind, name and ref. */
static void expect_route(const char *path, enum route_kind kind, const char *name, const char *ref)
{
    struct route rt;
    int rc = router_match(path, &rt);

    cr_assert_eq(rc, REG_OK, "%s: rc %d", path, rc);
    cr_assert_eq(rt.kind, kind, "%s: kind %d, want %d", path, rt.kind, kind);
    cr_assert_str_eq(rt.name, name, "%s: name '%s', want '%s'", path, rt.name, name);
    cr_assert_str_eq(rt.ref, ref, "%s: ref '%s', want '%s'", path, rt.ref, ref);
}

static void expect_err(const char *path, int want)
{
    struct route rt;
    int rc = router_match(path, &rt);

    cr_assert_eq(rc, want, "%s: rc %d, want %d", path, rc, want);
}

static int name_ok(const char *s)
{
    return api_name_valid(s, strlen(s));
}

static int tag_ok(const char *s)
{
    return api_tag_valid(s, strlen(s));
}

/* A path-component of n 'a's (n < size). */
static void fill(char *buf, size_t size, size_t n, char c)
{
    cr_assert_lt(n, size);
    memset(buf, c, n);
    buf[n] = '\0';
}

/* --- router_match: endpoints ------------------------------------------------ */

Test(router, base_with_and_without_trailing_slash)
{
    expect_route("/v2/", ROUTE_BASE, "", "");
    expect_route("/v2", ROUTE_BASE, "", "");
}

Test(router, catalog)
{
    expect_route("/v2/_catalog", ROUTE_CATALOG, "", "");
}

Test(router, blob_in_multi_component_repo)
{
    expect_route("/v2/a/b/c/blobs/" DGST, ROUTE_BLOB, "a/b/c", DGST);
}

Test(router, upload_start_with_trailing_slash)
{
    expect_route("/v2/x/blobs/uploads/", ROUTE_UPLOAD_START, "x", "");
}

Test(router, upload_start_without_trailing_slash)
{
    expect_route("/v2/x/blobs/uploads", ROUTE_UPLOAD_START, "x", "");
}

Test(router, upload_session_carries_uuid_as_ref)
{
    expect_route("/v2/x/blobs/uploads/" UUID, ROUTE_UPLOAD, "x", UUID);
    expect_route("/v2/a/b/blobs/uploads/" UUID, ROUTE_UPLOAD, "a/b", UUID);
}

Test(router, manifest_by_tag_and_by_digest)
{
    expect_route("/v2/x/manifests/latest", ROUTE_MANIFEST, "x", "latest");
    expect_route("/v2/x/y/manifests/" DGST, ROUTE_MANIFEST, "x/y", DGST);
}

Test(router, tags_list)
{
    expect_route("/v2/x/tags/list", ROUTE_TAGS, "x", "");
    expect_route("/v2/a/b/tags/list", ROUTE_TAGS, "a/b", "");
}

Test(router, referrers)
{
    expect_route("/v2/x/referrers/" DGST, ROUTE_REFERRERS, "x", DGST);
}

Test(router, repo_named_like_an_endpoint_is_parsed_from_the_right)
{
    expect_route("/v2/a/blobs/blobs/uploads/", ROUTE_UPLOAD_START, "a/blobs", "");
    expect_route("/v2/a/blobs/blobs/uploads", ROUTE_UPLOAD_START, "a/blobs", "");
    expect_route("/v2/a/blobs/blobs/" DGST, ROUTE_BLOB, "a/blobs", DGST);
    expect_route("/v2/manifests/manifests/latest", ROUTE_MANIFEST, "manifests", "latest");
    expect_route("/v2/tags/list/tags/list", ROUTE_TAGS, "tags/list", "");
}

Test(router, ref_of_255_bytes_fits_and_256_does_not)
{
    char path[600], ref[300];

    fill(ref, sizeof(ref), ROUTE_REF_MAX, 'a');
    snprintf(path, sizeof(path), "/v2/x/manifests/%s", ref);
    expect_route(path, ROUTE_MANIFEST, "x", ref);
    fill(ref, sizeof(ref), ROUTE_REF_MAX + 1, 'a');
    snprintf(path, sizeof(path), "/v2/x/manifests/%s", ref);
    expect_err(path, REG_E_NOT_FOUND);
}

/* --- router_match: no such endpoint ------------------------------------------ */

Test(router, paths_outside_v2_are_not_found)
{
    expect_err("", REG_E_NOT_FOUND);
    expect_err("/", REG_E_NOT_FOUND);
    expect_err("/v1/", REG_E_NOT_FOUND);
    expect_err("/v2x", REG_E_NOT_FOUND);
    expect_err("/v2x/x/manifests/latest", REG_E_NOT_FOUND);
    expect_err("v2/x/manifests/latest", REG_E_NOT_FOUND);
}

Test(router, unknown_resources_are_not_found)
{
    expect_err("/v2/x", REG_E_NOT_FOUND);
    expect_err("/v2/x/", REG_E_NOT_FOUND);
    expect_err("/v2/x/blobs", REG_E_NOT_FOUND);
    expect_err("/v2/x/unknown/y", REG_E_NOT_FOUND);
    expect_err("/v2/x/tags/lists", REG_E_NOT_FOUND);
    expect_err("/v2/x/tags/", REG_E_NOT_FOUND);
    expect_err("/v2/_catalog/x", REG_E_NOT_FOUND);
}

Test(router, endpoints_without_a_reference_are_not_found)
{
    expect_err("/v2/x/blobs/", REG_E_NOT_FOUND);
    expect_err("/v2/x/manifests/", REG_E_NOT_FOUND);
    expect_err("/v2/x/referrers/", REG_E_NOT_FOUND);
}

Test(router, endpoints_without_a_repository_are_not_found)
{
    expect_err("/v2/blobs/uploads/", REG_E_NOT_FOUND);
    expect_err("/v2/manifests/latest", REG_E_NOT_FOUND);
    expect_err("/v2/tags/list", REG_E_NOT_FOUND);
}

/* --- router_match: bad repository names -------------------------------------- */

Test(router, uppercase_name_is_invalid)
{
    expect_err("/v2/Library/x/manifests/latest", REG_E_NAME_INVALID);
    expect_err("/v2/X/blobs/uploads/", REG_E_NAME_INVALID);
}

Test(router, dot_dot_component_is_invalid)
{
    expect_err("/v2/../manifests/latest", REG_E_NAME_INVALID);
    expect_err("/v2/a/../b/manifests/latest", REG_E_NAME_INVALID);
    expect_err("/v2/a/../b/blobs/" DGST, REG_E_NAME_INVALID);
}

Test(router, empty_component_is_invalid)
{
    expect_err("/v2/a//b/manifests/latest", REG_E_NAME_INVALID);
    expect_err("/v2//a/manifests/latest", REG_E_NAME_INVALID);
    expect_err("/v2/a//tags/list", REG_E_NAME_INVALID);
}

Test(router, name_of_255_bytes_is_accepted_and_256_refused)
{
    char name[300], path[600];

    fill(name, sizeof(name), ROUTE_NAME_MAX, 'a');
    snprintf(path, sizeof(path), "/v2/%s/manifests/latest", name);
    expect_route(path, ROUTE_MANIFEST, name, "latest");
    fill(name, sizeof(name), ROUTE_NAME_MAX + 1, 'a');
    snprintf(path, sizeof(path), "/v2/%s/manifests/latest", name);
    expect_err(path, REG_E_NAME_INVALID);
    snprintf(path, sizeof(path), "/v2/%s/tags/list", name);
    expect_err(path, REG_E_NAME_INVALID);
}

/* --- api_name_valid ---------------------------------------------------------- */

Test(api_name_valid, accepts_each_separator_form)
{
    cr_assert(name_ok("a"));
    cr_assert(name_ok("a0"));
    cr_assert(name_ok("a.b"));
    cr_assert(name_ok("a_b"));
    cr_assert(name_ok("a__b"));
    cr_assert(name_ok("a-b"));
    cr_assert(name_ok("a---b"));
    cr_assert(name_ok("a.b_c__d-e--f"));
    cr_assert(name_ok("library/ubuntu"));
    cr_assert(name_ok("a/b/c/d"));
}

Test(api_name_valid, refuses_triple_underscore_and_mixed_separators)
{
    cr_assert_not(name_ok("a___b"));
    cr_assert_not(name_ok("a..b"));
    cr_assert_not(name_ok("a._b"));
    cr_assert_not(name_ok("a_-b"));
    cr_assert_not(name_ok("a-.b"));
}

Test(api_name_valid, refuses_separator_at_either_end)
{
    cr_assert_not(name_ok("a-"));
    cr_assert_not(name_ok("-a"));
    cr_assert_not(name_ok("a."));
    cr_assert_not(name_ok(".a"));
    cr_assert_not(name_ok("a_"));
    cr_assert_not(name_ok("_a"));
    cr_assert_not(name_ok("a/b-"));
    cr_assert_not(name_ok("a/-b"));
}

Test(api_name_valid, refuses_empty_names_and_components)
{
    cr_assert_not(name_ok(""));
    cr_assert_not(name_ok("/"));
    cr_assert_not(name_ok("/a"));
    cr_assert_not(name_ok("a/"));
    cr_assert_not(name_ok("a//b"));
}

Test(api_name_valid, refuses_characters_outside_the_grammar)
{
    cr_assert_not(name_ok("A"));
    cr_assert_not(name_ok("aB"));
    cr_assert_not(name_ok("a b"));
    cr_assert_not(name_ok("a:b"));
    cr_assert_not(name_ok("a@b"));
    cr_assert_not(name_ok(".."));
    cr_assert_not(name_ok("a/../b"));
}

Test(api_name_valid, length_limit_is_255)
{
    char buf[300];

    fill(buf, sizeof(buf), 255, 'a');
    cr_assert(name_ok(buf));
    fill(buf, sizeof(buf), 256, 'a');
    cr_assert_not(name_ok(buf));
}

Test(api_name_valid, reads_only_len_bytes)
{
    cr_assert(api_name_valid("abc/", 3));
    cr_assert(api_name_valid("a-", 1));
    cr_assert_not(api_name_valid("abc", 0));
}

/* --- api_tag_valid ----------------------------------------------------------- */

Test(api_tag_valid, accepts_common_tags)
{
    cr_assert(tag_ok("latest"));
    cr_assert(tag_ok("v1.2.3-rc.1_build"));
    cr_assert(tag_ok("A"));
    cr_assert(tag_ok("_"));
    cr_assert(tag_ok("_private"));
    cr_assert(tag_ok("0"));
    cr_assert(tag_ok("a--..__"));
}

Test(api_tag_valid, refuses_leading_dot_or_dash)
{
    cr_assert_not(tag_ok(".a"));
    cr_assert_not(tag_ok("-a"));
    cr_assert_not(tag_ok("."));
    cr_assert_not(tag_ok("-"));
}

Test(api_tag_valid, refuses_empty_and_foreign_characters)
{
    cr_assert_not(tag_ok(""));
    cr_assert_not(tag_ok("a/b"));
    cr_assert_not(tag_ok("a:b"));
    cr_assert_not(tag_ok("a b"));
    cr_assert_not(tag_ok("a+b"));
    cr_assert_not(tag_ok("sha256:abc"));
}

Test(api_tag_valid, length_limit_is_128)
{
    char buf[200];

    fill(buf, sizeof(buf), 128, 'a');
    cr_assert(tag_ok(buf));
    fill(buf, sizeof(buf), 129, 'a');
    cr_assert_not(tag_ok(buf));
}

/* --- router_rights ---------------------------------------------------------------- */

Test(router_rights, each_route_asks_for_what_its_method_does)
{
    int wide;

    cr_assert_eq(router_rights(ROUTE_MANIFEST, "GET", &wide), ACL_PULL);
    cr_assert_not(wide);
    cr_assert_eq(router_rights(ROUTE_MANIFEST, "HEAD", &wide), ACL_PULL);
    cr_assert_eq(router_rights(ROUTE_MANIFEST, "PUT", &wide), ACL_PUSH);
    cr_assert_eq(router_rights(ROUTE_MANIFEST, "DELETE", &wide), ACL_DELETE);
    cr_assert_eq(router_rights(ROUTE_BLOB, "DELETE", &wide), ACL_DELETE);
    cr_assert_eq(router_rights(ROUTE_BLOB, "GET", &wide), ACL_PULL);
    cr_assert_eq(router_rights(ROUTE_UPLOAD_START, "POST", &wide), ACL_PUSH);
    cr_assert_eq(router_rights(ROUTE_UPLOAD, "GET", &wide), ACL_PUSH);
    cr_assert_eq(router_rights(ROUTE_TAGS, "GET", &wide), ACL_PULL);
    cr_assert_eq(router_rights(ROUTE_REFERRERS, "GET", &wide), ACL_PULL);
}

Test(router_rights, the_catalog_is_registry_wide_and_probes_need_nothing)
{
    int wide;

    cr_assert_eq(router_rights(ROUTE_CATALOG, "GET", &wide), 0);
    cr_assert(wide);
    cr_assert_eq(router_rights(ROUTE_HEALTHZ, "GET", &wide), 0);
    cr_assert_not(wide);
    cr_assert_eq(router_rights(ROUTE_BASE, "GET", &wide), 0);
    cr_assert_eq(router_rights(ROUTE_TOKEN, "POST", &wide), 0);
}

Test(router, metrics_is_its_own_route_and_only_at_the_root)
{
    int wide = 1;

    expect_route("/metrics", ROUTE_METRICS, "", "");
    expect_err("/metrics/", REG_E_NOT_FOUND);
    expect_err("/v2/metrics", REG_E_NOT_FOUND);
    cr_assert_eq(router_rights(ROUTE_METRICS, "GET", &wide), 0, "open, like the probes");
    cr_assert_not(wide);
}
