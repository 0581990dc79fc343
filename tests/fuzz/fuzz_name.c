/* Repository names, tags and references: api_name_valid and api_tag_valid
 * against the spec's regular expressions, router_match (a path parsed from
 * the right) against the path rebuilt from its route, and the manifest
 * reference parser. */
#include "fuzz.h"

#include <regex.h>

#include "../../api/manifests.c"
#include "../../api/router.h"

/* The grammar as the distribution spec writes it. */
#define NAME_RE "^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$"
#define TAG_RE "^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$"

static regex_t name_re, tag_re;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    if (regcomp(&name_re, NAME_RE, REG_EXTENDED | REG_NOSUB) ||
        regcomp(&tag_re, TAG_RE, REG_EXTENDED | REG_NOSUB))
        abort();
    return 0;
}

/* The path a route came from; alt is the other spelling, if any. */
static void rebuild(const struct route *rt, char *buf, size_t size, char *alt, size_t asize)
{
    alt[0] = '\0';
    switch (rt->kind) {
    case ROUTE_BASE:
        snprintf(buf, size, "/v2/");
        snprintf(alt, asize, "/v2");
        break;
    case ROUTE_CATALOG:
        snprintf(buf, size, "/v2/_catalog");
        break;
    case ROUTE_TOKEN:
        snprintf(buf, size, "/token");
        break;
    case ROUTE_HEALTHZ:
        snprintf(buf, size, "/healthz");
        break;
    case ROUTE_READYZ:
        snprintf(buf, size, "/readyz");
        break;
    case ROUTE_METRICS:
        snprintf(buf, size, "/metrics");
        break;
    case ROUTE_TAGS:
        snprintf(buf, size, "/v2/%s/tags/list", rt->name);
        break;
    case ROUTE_BLOB:
        snprintf(buf, size, "/v2/%s/blobs/%s", rt->name, rt->ref);
        break;
    case ROUTE_UPLOAD_START:
        snprintf(buf, size, "/v2/%s/blobs/uploads/", rt->name);
        snprintf(alt, asize, "/v2/%s/blobs/uploads", rt->name);
        break;
    case ROUTE_UPLOAD:
        snprintf(buf, size, "/v2/%s/blobs/uploads/%s", rt->name, rt->ref);
        break;
    case ROUTE_MANIFEST:
        snprintf(buf, size, "/v2/%s/manifests/%s", rt->name, rt->ref);
        break;
    case ROUTE_REFERRERS:
        snprintf(buf, size, "/v2/%s/referrers/%s", rt->name, rt->ref);
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    char *str = fuzz_cstr(data, size), buf[1024], alt[1024];
    struct route rt;
    struct svc_ref ref;
    int name_ok = api_name_valid(s, size), tag_ok = api_tag_valid(s, size);

    /* Differential: the same answer as the regular expressions (on inputs
     * regexec can see whole). */
    if (strlen(str) == size) {
        FUZZ_CHECK(name_ok == (size <= ROUTE_NAME_MAX && !regexec(&name_re, str, 0, NULL, 0)));
        FUZZ_CHECK(tag_ok == !regexec(&tag_re, str, 0, NULL, 0));
    }
    if (router_match(str, &rt) == REG_OK) {
        FUZZ_CHECK(strlen(rt.ref) <= ROUTE_REF_MAX);
        if (rt.kind != ROUTE_BASE && rt.kind != ROUTE_CATALOG && rt.kind != ROUTE_TOKEN &&
            rt.kind != ROUTE_HEALTHZ && rt.kind != ROUTE_READYZ && rt.kind != ROUTE_METRICS)
            FUZZ_CHECK(api_name_valid(rt.name, strlen(rt.name)));
        rebuild(&rt, buf, sizeof(buf), alt, sizeof(alt));
        FUZZ_CHECK(!strcmp(buf, str) || !strcmp(alt, str));
        if (rt.kind == ROUTE_MANIFEST && parse_reference(rt.ref, &ref) == REG_OK)
            FUZZ_CHECK(!ref.tag ? !strcmp(ref.d.str, rt.ref)
                                : api_tag_valid(rt.ref, strlen(rt.ref)));
    }
    if (parse_reference(str, &ref) == REG_OK)
        FUZZ_CHECK(!ref.tag ? !strcmp(ref.d.str, str) : api_tag_valid(str, strlen(str)));
    free(str);
    return 0;
}
