/* GET /metrics: counters move by exactly what clients did, storage totals
 * follow pushes and GC, the page passes `promtool check metrics`, no
 * repository name leaks into it, and the separate listener serves it alone. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct server srv;

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(metrics, .fini = teardown, .timeout = 90);

/* The page at url (a path on srv, or a full URL); asserts 200 and the
 * exposition format's content type. To free(). */
static char *scrape(const char *url)
{
    struct resp r;
    char ct[128];
    char *body;

    http(&srv, "GET", url, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", url, r.status, r.body);
    cr_assert_not_null(resp_header(&r, "Content-Type", ct, sizeof(ct)));
    cr_assert_str_eq(ct, "text/plain; version=0.0.4; charset=utf-8");
    body = strdup(r.body);
    resp_free(&r);
    return body;
}

/* The value of one series ("name" or "name{labels}") in a page; -1 when
 * the page has no such line. */
static double value(const char *page, const char *series)
{
    size_t n = strlen(series);
    const char *p = page;

    while (p && *p) {
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return -1;
}

/* The requests the page has counted, scrapes (successful ones) aside. */
static double requests_counted(const char *page)
{
    static const char name[] = "registry_http_requests_total{";
    static const char scrapes[] = "method=\"GET\",route=\"metrics\",code=\"200\"}";
    const char *p = page, *sp;
    double n = 0;

    while ((p = strstr(p, name)) != NULL) {
        sp = strstr(p, "} ");
        if (!sp)
            break;
        if (strncmp(p + strlen(name), scrapes, strlen(scrapes)) != 0)
            n += strtod(sp + 2, NULL);
        p = sp;
    }
    return n;
}

/* A request is counted when its reply has been sent, so the client may
 * see the reply (and scrape) a moment before: scrape until the page has
 * counted at least n requests (every one the test made but its scrapes),
 * for up to 10 s. */
static char *scrape_after(const char *url, double n)
{
    char *page = scrape(url);
    int i;

    for (i = 0; i < 1000 && requests_counted(page) < n; i++) {
        free(page);
        usleep(10000);
        page = scrape(url);
    }
    cr_assert_geq(requests_counted(page), n, "the page counts %.0f requests, the test made %.0f",
                  requests_counted(page), n);
    return page;
}

/* A counter's value, 0 when the series has not appeared yet. */
static double counter(const char *page, const char *series)
{
    double v = value(page, series);

    return v < 0 ? 0 : v;
}

/* `promtool check metrics` on the page: exit 0, nothing to say. */
static void promtool_accepts(const char *page)
{
    char cmd[1200], out[4096] = "";
    const char *file = server_file(&srv, "scrape.txt", page);
    FILE *f;
    size_t n;
    int st;

    cr_assert_eq(system("command -v promtool >/dev/null"), 0,
                 "promtool is missing: make deps-test installs Debian's prometheus package");
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s 2>&1", file);
    f = popen(cmd, "r");
    cr_assert_not_null(f);
    n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    st = pclose(f);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "promtool check metrics: %s", out);
}

#define REPO "secret-team/payroll"
#define MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"

Test(metrics, counters_move_by_exactly_what_was_pushed_and_pulled)
{
    char cfg_d[160], layer_d[160], manifest[2048], path[512], series[256];
    size_t layer_len = 100000;
    void *layer = rand_bytes(layer_len);
    char *before, *after;
    struct resp r;
    int mlen;

    server_start(&srv, NULL);
    before = scrape("/metrics");
    cr_assert_eq(value(before, "registry_storage_blobs"), 0);
    cr_assert_eq(value(before, "registry_storage_repositories"), 0);

    push_blob(&srv, REPO, "{}", 2, cfg_d, sizeof(cfg_d));
    push_blob(&srv, REPO, layer, layer_len, layer_d, sizeof(layer_d));
    mlen = snprintf(manifest, sizeof(manifest),
                    "{\"schemaVersion\":2,\"mediaType\":\"" MT_MANIFEST "\",\"config\":{"
                    "\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":\"%s\","
                    "\"size\":2},\"layers\":[{\"mediaType\":"
                    "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":%zu}]}",
                    cfg_d, layer_d, layer_len);
    cr_assert_eq(http_put_manifest(&srv, REPO, "v1", MT_MANIFEST, manifest, (size_t)mlen, NULL),
                 201);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", REPO, layer_d);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, layer_len);
    resp_free(&r);
    cr_assert_eq(http_status(&srv, "HEAD", "/v2/" REPO "/manifests/v1", NULL, 0), 200);
    cr_assert_eq(http_status(&srv, "GET", "/v2/" REPO "/manifests/v2", NULL, 0), 404);
    cr_assert_eq(http_status(&srv, "GET", "/nowhere", NULL, 0), 404);
    after = scrape_after("/metrics", 7);

#define DELTA(s) (counter(after, s) - counter(before, s))
    cr_assert_eq(DELTA("registry_http_requests_total{method=\"POST\",route=\"upload\",code="
                       "\"201\"}"),
                 2, "two monolithic pushes");
    cr_assert_eq(DELTA("registry_http_requests_total{method=\"PUT\",route=\"manifest\",code="
                       "\"201\"}"),
                 1);
    cr_assert_eq(DELTA("registry_http_requests_total{method=\"GET\",route=\"blob\",code=\"200\"}"),
                 1);
    cr_assert_eq(
        DELTA("registry_http_requests_total{method=\"HEAD\",route=\"manifest\",code=\"200\"}"), 1);
    cr_assert_eq(
        DELTA("registry_http_requests_total{method=\"GET\",route=\"manifest\",code=\"404\"}"), 1);
    cr_assert_eq(DELTA("registry_http_requests_total{method=\"GET\",route=\"other\",code=\"404\"}"),
                 1);
    cr_assert_geq(
        DELTA("registry_http_requests_total{method=\"GET\",route=\"metrics\",code=\"200\"}"), 1,
        "the first scrape is counted (and any repeated while waiting)");
    cr_assert_eq(DELTA("registry_http_request_bytes_total{route=\"upload\"}"), layer_len + 2);
    cr_assert_eq(DELTA("registry_http_request_bytes_total{route=\"manifest\"}"), mlen);
    cr_assert_eq(DELTA("registry_http_response_bytes_total{route=\"blob\"}"), layer_len,
                 "one GET of the layer");
    cr_assert_eq(
        DELTA("registry_http_request_duration_seconds_count{method=\"GET\",route=\"blob\"}"), 1);
    cr_assert_eq(DELTA("registry_http_request_duration_seconds_bucket{method=\"GET\",route="
                       "\"blob\",le=\"+Inf\"}"),
                 1);
    cr_assert_geq(
        value(after, "registry_http_request_duration_seconds_sum{method=\"GET\",route=\"blob\"}"),
        0);
#undef DELTA

    cr_assert_eq(value(after, "registry_storage_blobs"), 2);
    cr_assert_eq(value(after, "registry_storage_blob_bytes"), layer_len + 2);
    cr_assert_eq(value(after, "registry_storage_repositories"), 1);
    cr_assert_eq(value(after, "registry_uploads_in_progress"), 0);
    cr_assert_geq(value(after, "registry_http_connections"), 1, "the scrape's own");
    cr_assert_geq(value(after, "registry_http_requests_in_flight"), 1, "the scrape itself");
    cr_assert_gt(value(after, "registry_index_size_bytes"), 0);
    cr_assert_gt(value(after, "registry_index_map_bytes"),
                 value(after, "registry_index_limit_bytes"));
    cr_assert_gt(value(after, "process_resident_memory_bytes"), 0);
    cr_assert_gt(value(after, "process_open_fds"), 0);
    cr_assert_gt(value(after, "process_start_time_seconds"), 1e9);

    cr_assert_null(strstr(after, "secret-team"), "a repository name is in the page");
    cr_assert_null(strstr(after, "payroll"), "a repository name is in the page");
    snprintf(series, sizeof(series), "%.20s", layer_d + 7);
    cr_assert_null(strstr(after, series), "a digest is in the page");
    promtool_accepts(after);
    free(before);
    free(after);
    free(layer);
}

Test(metrics, histogram_buckets_are_cumulative_and_end_in_the_count)
{
    char *page, series[256];
    const char *les[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                         "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5",
                         "5",      "10",    "30",     "60",    "+Inf"};
    double prev = 0, v;
    size_t i;
    int k;

    server_start(&srv, NULL);
    for (k = 0; k < 5; k++)
        cr_assert_eq(http_status(&srv, "GET", "/v2/", NULL, 0), 200);
    page = scrape_after("/metrics", 5);
    for (i = 0; i < sizeof(les) / sizeof(les[0]); i++) {
        snprintf(series, sizeof(series),
                 "registry_http_request_duration_seconds_bucket{method=\"GET\",route=\"base\","
                 "le=\"%s\"}",
                 les[i]);
        v = value(page, series);
        cr_assert_geq(v, prev, "%s", series);
        prev = v;
    }
    cr_assert_eq(prev, 5);
    cr_assert_eq(
        value(page, "registry_http_request_duration_seconds_count{method=\"GET\",route=\"base\"}"),
        5);
    free(page);
}

Test(metrics, gc_counts_what_it_freed_and_the_stored_totals_follow)
{
    char d[160], line[1024];
    size_t len = 54321;
    void *data = rand_bytes(len);
    char *page;
    int before, i;

    server_start(&srv, "[gc]\ngrace = 0\ninterval = 0\n");
    push_blob(&srv, "scratch", data, len, d, sizeof(d));
    page = scrape("/metrics");
    cr_assert_eq(value(page, "registry_storage_blobs"), 1);
    cr_assert_eq(value(page, "registry_storage_blob_bytes"), len);
    cr_assert_eq(value(page, "registry_gc_runs_total"), 0);
    cr_assert_eq(value(page, "registry_gc_last_run_timestamp_seconds"), 0);
    free(page);

    before = server_log_find(&srv, "gc: freed ", NULL, 0);
    kill(srv.pid, SIGUSR1);
    for (i = 0; i < 3000 && server_log_find(&srv, "gc: freed ", line, sizeof(line)) == before; i++)
        usleep(10000);
    cr_assert_gt(server_log_find(&srv, "gc: freed ", line, sizeof(line)), before,
                 "no GC run was logged within 30 s of SIGUSR1");
    page = scrape("/metrics");
    cr_assert_eq(value(page, "registry_gc_runs_total"), 1, "%s", line);
    cr_assert_eq(value(page, "registry_gc_failures_total"), 0);
    cr_assert_eq(value(page, "registry_gc_freed_blobs_total"), 1, "%s", line);
    cr_assert_eq(value(page, "registry_gc_freed_bytes_total"), len, "%s", line);
    cr_assert_eq(value(page, "registry_gc_freed_repositories_total"), 1, "%s", line);
    cr_assert_gt(value(page, "registry_gc_last_run_timestamp_seconds"),
                 value(page, "process_start_time_seconds") - 1);
    cr_assert_eq(value(page, "registry_storage_blobs"), 0);
    cr_assert_eq(value(page, "registry_storage_blob_bytes"), 0);
    cr_assert_eq(value(page, "registry_storage_repositories"), 0);
    promtool_accepts(page);
    free(page);
    free(data);
}

Test(metrics, upload_sessions_in_progress_are_counted)
{
    char loc[1024], *page;

    server_start(&srv, NULL);
    start_upload(&srv, "app", loc, sizeof(loc));
    start_upload(&srv, "app", loc, sizeof(loc));
    page = scrape("/metrics");
    cr_assert_eq(value(page, "registry_uploads_in_progress"), 2);
    free(page);
    cr_assert_eq(http_status(&srv, "DELETE", loc, NULL, 0), 204);
    page = scrape("/metrics");
    cr_assert_eq(value(page, "registry_uploads_in_progress"), 1);
    free(page);
}

/* Users alice/secret. */
static void start_basic(void)
{
    char cmd[1200], cfg[1200];
    const char *bin = getenv("REGISTRY_BIN") ? getenv("REGISTRY_BIN") : "build/registry";

    server_prepare(&srv);
    snprintf(cmd, sizeof(cmd), "echo secret | %s passwd alice > %s 2>/dev/null", bin,
             server_file(&srv, "htpasswd", NULL));
    cr_assert_eq(system(cmd), 0, "registry passwd");
    snprintf(cfg, sizeof(cfg), "[auth]\nmode = basic\nhtpasswd = %s\nrule = user:alice pull a/*\n",
             server_file(&srv, "htpasswd", NULL));
    server_launch(&srv, cfg);
}

Test(metrics, auth_failures_are_counted_by_reason_and_metrics_need_no_credentials)
{
    const char *wrong[] = {"Authorization: Basic YWxpY2U6d3Jvbmc=", NULL}; /* alice:wrong */
    const char *right[] = {"Authorization: Basic YWxpY2U6c2VjcmV0", NULL}; /* alice:secret */
    struct resp r;
    char *page;

    start_basic();
    cr_assert_eq(http_status(&srv, "GET", "/v2/", NULL, 0), 401);
    http(&srv, "GET", "/v2/", NULL, 0, wrong, &r);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    http(&srv, "GET", "/v2/b/tags/list", NULL, 0, right, &r);
    cr_assert_eq(r.status, 403, "alice may pull a/* only");
    resp_free(&r);
    http(&srv, "GET", "/v2/a/x/tags/list", NULL, 0, right, &r);
    cr_assert_eq(r.status, 404, "allowed; no such repository: %ld %s", r.status, r.body);
    resp_free(&r);
    page = scrape_after("/metrics", 4);
    cr_assert_eq(value(page, "registry_auth_failures_total{reason=\"missing\"}"), 1);
    cr_assert_eq(value(page, "registry_auth_failures_total{reason=\"invalid\"}"), 1);
    cr_assert_eq(value(page, "registry_auth_failures_total{reason=\"denied\"}"), 1);
    cr_assert_eq(value(page, "registry_auth_failures_total{reason=\"throttled\"}"), 0);
    cr_assert_eq(value(page, "registry_http_requests_total{method=\"GET\",route=\"base\",code="
                             "\"401\"}"),
                 2);
    free(page);
}

/* The port of the metrics listener, from the server's start lines. */
static unsigned metrics_port(void)
{
    char line[512];
    unsigned port = 0;
    const char *p;

    cr_assert_eq(server_log_find(&srv, "metrics on http ", line, sizeof(line)), 1);
    p = strstr(line, "(port ");
    cr_assert_not_null(p, "%s", line);
    cr_assert_eq(sscanf(p, "(port %u)", &port), 1, "%s", line);
    return port;
}

Test(metrics, separate_listener_serves_metrics_alone_and_the_main_one_does_not)
{
    char url[128], *page;
    unsigned port;
    struct resp r;

    server_start(&srv, "[metrics]\nlisten = 127.0.0.1:0\n");
    port = metrics_port();
    cr_assert_neq(port, 0);
    cr_assert_eq(http_status(&srv, "GET", "/metrics", NULL, 0), 404,
                 "not on the main listener once it has its own");
    cr_assert_eq(http_status(&srv, "GET", "/v2/", NULL, 0), 200);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/v2/", port);
    http(&srv, "GET", url, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 404, "the metrics listener serves nothing else");
    resp_free(&r);
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/metrics", port);
    http(&srv, "POST", url, "x", 1, NULL, &r);
    cr_assert_eq(r.status, 405);
    resp_free(&r);
    page = scrape_after(url, 4);
    cr_assert_eq(
        value(page, "registry_http_requests_total{method=\"GET\",route=\"base\",code=\"200\"}"), 1,
        "the main listener's requests are counted");
    cr_assert_eq(
        value(page, "registry_http_requests_total{method=\"GET\",route=\"metrics\",code=\"404\"}"),
        1, "the main listener's refusal");
    cr_assert_eq(
        value(page, "registry_http_requests_total{method=\"GET\",route=\"base\",code=\"404\"}"), 1,
        "the metrics listener's refusal");
    promtool_accepts(page);
    free(page);
    cr_assert_eq(server_stop(&srv), 0, "both listeners stop cleanly");
}

Test(metrics, disabled_metrics_are_not_found_and_open_no_listener)
{
    char line[512];

    server_start(&srv, "[metrics]\nenabled = false\nlisten = 127.0.0.1:0\n");
    cr_assert_eq(http_status(&srv, "GET", "/metrics", NULL, 0), 404);
    cr_assert_eq(server_log_find(&srv, "metrics on http ", line, sizeof(line)), 0);
    cr_assert_eq(http_status(&srv, "GET", "/v2/", NULL, 0), 200);
}
