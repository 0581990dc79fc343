/* Names and digests at their longest: every index key still fits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct server srv;

static void setup(void)
{
    server_start(&srv, "[storage]\ndelete = true\n");
}

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(keys, .init = setup, .fini = teardown, .timeout = 60);

Test(keys, sha512_referrer_of_a_sha512_subject_in_a_250_character_repository)
{
    char name[260], cfg[200], body[2000], path[1200], digest[200], subject[200];
    const char *ct[] = {"Content-Type: application/vnd.oci.image.manifest.v1+json", NULL};
    struct resp r;

    memset(name, 'a', 250);
    name[0] = 'k';
    name[1] = '/';
    name[250] = '\0';
    push_blob(&srv, name, "{}", 2, cfg, sizeof(cfg));
    digest_str("sha512", "a subject that is not here", 26, subject, sizeof(subject));
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"artifactType\":\"application/example\",\"config\":{\"mediaType\":"
             "\"application/vnd.oci.empty.v1+json\",\"digest\":\"%s\",\"size\":2},\"layers\":[],"
             "\"subject\":{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"digest\":\"%s\",\"size\":10}}",
             cfg, subject);
    digest_str("sha512", body, strlen(body), digest, sizeof(digest));
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", name, digest);
    http(&srv, "PUT", path, body, strlen(body), ct, &r);
    cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
    resp_free(&r);

    snprintf(path, sizeof(path), "/v2/%s/referrers/%s", name, subject);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert(strstr(r.body, digest), "the referrer is listed: %s", r.body);
    resp_free(&r);

    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", name, digest);
    http(&srv, "DELETE", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 202, "%ld %s", r.status, r.body);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/%s/referrers/%s", name, subject);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_null(strstr(r.body, digest), "gone with its manifest: %s", r.body);
    resp_free(&r);
}
