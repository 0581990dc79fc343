/* Runner, HTTP client and auth for the conformance suite. */
#include "suite.h"
#include "httpc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

struct cf_config cf;

static const char *const workflow_names[CF__WORKFLOWS] = {"pull", "push", "content-discovery",
                                                          "content-management", "extra"};

#define ACCEPT_MANIFESTS                                                                           \
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, "        \
    "application/vnd.docker.distribution.manifest.v2+json, "                                       \
    "application/vnd.docker.distribution.manifest.list.v2+json"

static CURL *curl;
static char auth_header[8192]; /* "Authorization: ..." for the current scope, or "" */

/* ---- results ------------------------------------------------------------- */

enum outcome { PASS, FAIL, SKIP };

struct result {
    const struct cf_test *t;
    enum outcome outcome;
    char msg[1024];
    double secs;
};

static jmp_buf test_jmp;
static struct result *current;

void cf_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    int n;

    n = snprintf(current->msg, sizeof(current->msg), "%s:%d: ", file, line);
    va_start(ap, fmt);
    vsnprintf(current->msg + n, sizeof(current->msg) - (size_t)n, fmt, ap);
    va_end(ap);
    current->outcome = FAIL;
    longjmp(test_jmp, 1);
}

void cf_skip(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(current->msg, sizeof(current->msg), fmt, ap);
    va_end(ap);
    current->outcome = SKIP;
    longjmp(test_jmp, 1);
}

/* ---- HTTP ------------------------------------------------------------------ */

void cf_resp_free(struct cf_resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

const char *cf_header(const struct cf_resp *r, const char *name, char *buf, size_t size)
{
    return httpc_header(r->headers, name, buf, size);
}

const char *cf_error_code(const struct cf_resp *r, char *buf, size_t size)
{
    return httpc_error_code(r->body, r->len, buf, size);
}

static int perform(const char *method, const char *url, const char *const *hdrs, const void *body,
                   size_t len, const char *auth, struct cf_resp *out)
{
    struct curl_slist *list = NULL;
    struct httpc_buf b = {NULL, 0}, h = {NULL, 0};
    CURLcode rc;

    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 120L);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    if (body || !strcmp(method, "PUT") || !strcmp(method, "POST") || !strcmp(method, "PATCH")) {
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    list = curl_slist_append(list, "Expect:");
    /* Clients say which manifest types they take; some registries answer
     * 404 to a manifest GET that does not list its type. */
    if (strstr(url, "/manifests/") && (!strcmp(method, "GET") || !strcmp(method, "HEAD")))
        list = curl_slist_append(list, "Accept: " ACCEPT_MANIFESTS);
    if (body || len == 0)
        list = curl_slist_append(list, "Content-Type:"); /* no default form type */
    if (auth && *auth)
        list = curl_slist_append(list, auth);
    for (; hdrs && *hdrs; hdrs++)
        list = curl_slist_append(list, *hdrs);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, httpc_on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, httpc_on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &h);
    rc = curl_easy_perform(curl);
    curl_slist_free_all(list);
    memset(out, 0, sizeof(*out));
    if (rc != CURLE_OK) {
        free(b.p);
        free(h.p);
        return -1;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
    out->body = b.p ? b.p : strdup("");
    out->len = b.len;
    out->headers = h.p ? h.p : strdup("");
    return 0;
}

/* Value of key="..." in a challenge. */
static int challenge_param(const char *ch, const char *key, char *out, size_t size)
{
    char pat[64];
    const char *p, *e;

    snprintf(pat, sizeof(pat), "%s=\"", key);
    p = strcasestr(ch, pat);
    if (!p)
        return -1;
    p += strlen(pat);
    e = strchr(p, '"');
    if (!e || (size_t)(e - p) >= size)
        return -1;
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
    return 0;
}

static void basic_header(char *out, size_t size)
{
    char creds[1024];
    unsigned char enc[1500];
    int n = snprintf(creds, sizeof(creds), "%s:%s", cf.user ? cf.user : "", cf.pass ? cf.pass : "");

    EVP_EncodeBlock(enc, (const unsigned char *)creds, n);
    snprintf(out, size, "Authorization: Basic %s", enc);
}

/* Answer a 401 challenge: Basic with the credentials, or fetch a token.
 * For a cross-repository mount, ask for pull on the source too, as docker
 * does. */
static int authenticate(const char *challenge, const char *request_url)
{
    char realm[1024], service[512] = "", scope[1024] = "", url[4096], basic[2048];
    char from[512] = "";
    const char *f = strstr(request_url, "&from=");
    struct cf_resp r;
    json_t *j;
    const char *tok = NULL;
    char *esc_service, *esc_scope;
    int rc = -1;

    if (strncasecmp(challenge, "Basic", 5) == 0) {
        if (!cf.user)
            return -1;
        basic_header(auth_header, sizeof(auth_header));
        return 0;
    }
    if (strncasecmp(challenge, "Bearer", 6) != 0 ||
        challenge_param(challenge, "realm", realm, sizeof(realm)))
        return -1;
    challenge_param(challenge, "service", service, sizeof(service));
    challenge_param(challenge, "scope", scope, sizeof(scope));
    if (f && strstr(request_url, "mount=")) {
        size_t n = strcspn(f + 6, "&");
        char *esc;

        snprintf(from, sizeof(from), "repository:%.*s:pull", (int)n, f + 6);
        esc = curl_easy_escape(curl, from, 0);
        snprintf(from, sizeof(from), "&scope=%s", esc);
        curl_free(esc);
    }
    esc_service = curl_easy_escape(curl, service, 0);
    esc_scope = curl_easy_escape(curl, scope, 0);
    snprintf(url, sizeof(url), "%s%sservice=%s%s%s%s", realm, strchr(realm, '?') ? "&" : "?",
             esc_service, scope[0] ? "&scope=" : "", scope[0] ? esc_scope : "", from);
    curl_free(esc_service);
    curl_free(esc_scope);
    if (cf.user)
        basic_header(basic, sizeof(basic));
    if (perform("GET", url, NULL, NULL, 0, cf.user ? basic : NULL, &r))
        return -1;
    j = r.status == 200 ? json_loadb(r.body, r.len, 0, NULL) : NULL;
    if (j) {
        tok = json_string_value(json_object_get(j, "token"));
        if (!tok)
            tok = json_string_value(json_object_get(j, "access_token"));
    }
    if (tok) {
        snprintf(auth_header, sizeof(auth_header), "Authorization: Bearer %s", tok);
        rc = 0;
    }
    json_decref(j);
    cf_resp_free(&r);
    return rc;
}

int cf_http(const char *method, const char *path, const char *const *hdrs, const void *body,
            size_t len, struct cf_resp *out)
{
    char url[8192], challenge[2048];
    int tries;

    if (!strncmp(path, "http://", 7) || !strncmp(path, "https://", 8))
        snprintf(url, sizeof(url), "%s", path);
    else
        snprintf(url, sizeof(url), "%s%s", cf.root, path);
    for (tries = 0; tries < 2; tries++) {
        if (perform(method, url, hdrs, body, len, auth_header, out))
            CHECK(0, "%s %s: no response (connection failed)", method, url);
        if (out->status != 401 || !cf_header(out, "WWW-Authenticate", challenge, sizeof(challenge)))
            return 0;
        if (tries == 1 || authenticate(challenge, url)) {
            return 0; /* the 401 stands */
        }
        cf_resp_free(out);
    }
    return 0;
}

/* ---- helpers ----------------------------------------------------------------- */

void cf_digest(const char *algo, const void *data, size_t len, char *out, size_t size)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    size_t off;

    EVP_Digest(data, len, md, &n, !strcmp(algo, "sha512") ? EVP_sha512() : EVP_sha256(), NULL);
    off = (size_t)snprintf(out, size, "%s:", algo);
    for (i = 0; i < n && off + 2 < size; i++)
        off += (size_t)snprintf(out + off, size - off, "%02x", md[i]);
}

void *cf_random(size_t len)
{
    unsigned char *p = malloc(len ? len : 1);

    if (!p || RAND_bytes(p, (int)len) != 1) {
        fprintf(stderr, "conformance: out of memory or randomness\n");
        exit(2);
    }
    return p;
}

/* ---- report ------------------------------------------------------------------ */

static void xml_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '&':
            fputs("&amp;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\n' || *s == '\t')
                fputc(*s, f);
        }
    }
}

static void write_junit(const struct result *res, size_t n, int failed, int skipped, double secs)
{
    char path[4096];
    FILE *f;
    size_t i;

    snprintf(path, sizeof(path), "%s/junit.xml", cf.report_dir);
    f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "conformance: cannot write %s\n", path);
        return;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f,
            "<testsuites><testsuite name=\"OCI distribution conformance\" tests=\"%zu\" "
            "failures=\"%d\" skipped=\"%d\" time=\"%.3f\">\n",
            n, failed, skipped, secs);
    for (i = 0; i < n; i++) {
        fprintf(f, "  <testcase classname=\"%s\" name=\"", workflow_names[res[i].t->workflow]);
        xml_escaped(f, res[i].t->name);
        fprintf(f, "\" time=\"%.3f\">", res[i].secs);
        if (res[i].outcome != PASS) {
            fputs(res[i].outcome == FAIL ? "<failure message=\"" : "<skipped message=\"", f);
            xml_escaped(f, res[i].msg);
            fputs("\"/>", f);
        }
        fputs("</testcase>\n", f);
    }
    fputs("</testsuite></testsuites>\n", f);
    fclose(f);
}

/* ---- main -------------------------------------------------------------------- */

static int env_flag(const char *name, int def)
{
    const char *v = getenv(name);

    if (!v || !*v)
        return def;
    return !strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes");
}

static const char *env_str(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v && *v ? v : def;
}

/* Run one test; longjmp from a failed check lands here. */
static void run_one(const struct cf_test *t)
{
    if (setjmp(test_jmp) == 0)
        t->fn();
}

static double now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    static char root[4096];
    struct result *res;
    size_t n = 0, i;
    int passed = 0, failed = 0, skipped = 0, any;
    double start = now();

    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        printf("usage: conformance\n\nEnvironment: OCI_ROOT_URL (required), OCI_NAMESPACE, "
               "OCI_CROSSMOUNT_NAMESPACE,\nOCI_USERNAME, OCI_PASSWORD, OCI_TEST_PULL, "
               "OCI_TEST_PUSH, OCI_TEST_CONTENT_DISCOVERY,\nOCI_TEST_CONTENT_MANAGEMENT, "
               "OCI_TEST_EXTRA, OCI_DELETE_MANIFEST_BEFORE_BLOBS,\nOCI_RESTART_CMD, OCI_REFERRERS, "
               "OCI_REPORT_DIR. See docs/conformance.md.\n");
        return 0;
    }
    snprintf(root, sizeof(root), "%s", env_str("OCI_ROOT_URL", ""));
    while (*root && root[strlen(root) - 1] == '/')
        root[strlen(root) - 1] = '\0';
    if (!*root) {
        fprintf(stderr, "conformance: set OCI_ROOT_URL (e.g. http://127.0.0.1:5000)\n");
        return 2;
    }
    cf.root = root;
    cf.ns = env_str("OCI_NAMESPACE", "conformance/test");
    cf.cross_ns = env_str("OCI_CROSSMOUNT_NAMESPACE", "conformance/crossmount");
    cf.user = getenv("OCI_USERNAME");
    cf.pass = getenv("OCI_PASSWORD");
    cf.enabled[CF_PULL] = env_flag("OCI_TEST_PULL", 0);
    cf.enabled[CF_PUSH] = env_flag("OCI_TEST_PUSH", 0);
    cf.enabled[CF_DISCOVERY] = env_flag("OCI_TEST_CONTENT_DISCOVERY", 0);
    cf.enabled[CF_MANAGEMENT] = env_flag("OCI_TEST_CONTENT_MANAGEMENT", 0);
    any = cf.enabled[CF_PULL] || cf.enabled[CF_PUSH] || cf.enabled[CF_DISCOVERY] ||
          cf.enabled[CF_MANAGEMENT];
    if (!any) /* like the official suite with nothing chosen: everything */
        cf.enabled[CF_PULL] = cf.enabled[CF_PUSH] = cf.enabled[CF_DISCOVERY] =
            cf.enabled[CF_MANAGEMENT] = 1;
    cf.enabled[CF_EXTRA] = env_flag("OCI_TEST_EXTRA", 1);
    cf.delete_manifest_before_blobs = env_flag("OCI_DELETE_MANIFEST_BEFORE_BLOBS", 1);
    cf.restart_cmd = getenv("OCI_RESTART_CMD");
    cf.report_dir = getenv("OCI_REPORT_DIR");
    cf.require_referrers = env_flag("OCI_REFERRERS", 0);
    curl_global_init(CURL_GLOBAL_ALL);
    curl = curl_easy_init();
    for (n = 0; cf_tests[n].name; n++)
        ;
    res = calloc(n, sizeof(*res));
    if (!res || !curl)
        return 2;
    printf("OCI distribution conformance against %s (namespace %s)\n", cf.root, cf.ns);
    for (i = 0; i < n; i++) {
        double t0 = now();

        current = &res[i];
        res[i].t = &cf_tests[i];
        res[i].outcome = PASS;
        if (!cf.enabled[cf_tests[i].workflow]) {
            res[i].outcome = SKIP;
            snprintf(res[i].msg, sizeof(res[i].msg), "workflow %s not enabled",
                     workflow_names[cf_tests[i].workflow]);
        } else {
            run_one(&cf_tests[i]);
        }
        res[i].secs = now() - t0;
        switch (res[i].outcome) {
        case PASS:
            passed++;
            break;
        case FAIL:
            failed++;
            break;
        case SKIP:
            skipped++;
            break;
        }
        printf("%s  %s: %s%s%s\n",
               res[i].outcome == PASS   ? "PASS"
               : res[i].outcome == FAIL ? "FAIL"
                                        : "SKIP",
               workflow_names[cf_tests[i].workflow], cf_tests[i].name,
               res[i].msg[0] ? "\n      " : "", res[i].msg);
        fflush(stdout);
    }
    if (cf.report_dir)
        write_junit(res, n, failed, skipped, now() - start);
    printf("Conformance: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    free(res);
    curl_easy_cleanup(curl);
    curl_global_cleanup();
    return failed ? 1 : 0;
}
