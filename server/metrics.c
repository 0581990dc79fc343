#include "metrics.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "../common/err.h"
#include "../common/log.h"
#include "../service/gc.h"
#include "../service/proxy.h"
#include "../service/service.h"
#include "http.h"

#ifndef REGISTRY_VERSION
#define REGISTRY_VERSION "0.1.0-dev"
#endif

/* Label values. Each table ends with its catch-all. */
static const char *const methods[] = {"GET",   "HEAD",   "PUT",     "POST",
                                      "PATCH", "DELETE", "OPTIONS", "other"};
#define N_METHODS (sizeof(methods) / sizeof(methods[0]))

enum {
    R_BASE,
    R_CATALOG,
    R_BLOB,
    R_UPLOAD,
    R_MANIFEST,
    R_TAGS,
    R_REFERRERS,
    R_TOKEN,
    R_HEALTHZ,
    R_READYZ,
    R_METRICS,
    R_OTHER,
    N_ROUTES
};
static const char *const routes[N_ROUTES] = {"base",     "catalog", "blob",      "upload",
                                             "manifest", "tags",    "referrers", "token",
                                             "healthz",  "readyz",  "metrics",   "other"};

/* Every status the registry answers with, and some a proxy-facing server
 * might; anything else (or libmicrohttpd's own refusals, status 0) is
 * "other". */
static const unsigned codes[] = {200, 201, 202, 204, 206, 301, 302, 304, 307, 308, 400, 401,
                                 403, 404, 405, 406, 408, 409, 411, 412, 413, 414, 415, 416,
                                 417, 429, 431, 499, 500, 501, 502, 503, 504, 505, 507};
#define N_CODES (sizeof(codes) / sizeof(codes[0]) + 1)

/* Upper bounds of the duration buckets, in nanoseconds, and as labels.
 * From a cached HEAD (tens of microseconds) to a large layer's PUT. */
static const uint64_t bounds_ns[] = {500000ULL,     1000000ULL,     2500000ULL,     5000000ULL,
                                     10000000ULL,   25000000ULL,    50000000ULL,    100000000ULL,
                                     250000000ULL,  500000000ULL,   1000000000ULL,  2500000000ULL,
                                     5000000000ULL, 10000000000ULL, 30000000000ULL, 60000000000ULL};
static const char *const bounds_le[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                        "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5",
                                        "5",      "10",    "30",     "60"};
#define N_BOUNDS (sizeof(bounds_ns) / sizeof(bounds_ns[0]))

/* One thread's counters. The histogram keeps per-bucket (not cumulative)
 * counts, so that an observation is one addition; +Inf is the last. */
struct shard {
    atomic_ullong requests[N_METHODS][N_ROUTES][N_CODES];
    atomic_ullong buckets[N_METHODS][N_ROUTES][N_BOUNDS + 1];
    atomic_ullong duration_ns[N_METHODS][N_ROUTES];
    atomic_ullong bytes_in[N_ROUTES];
    atomic_ullong bytes_out[N_ROUTES];
} __attribute__((aligned(64)));

/* More threads than shards share one (still exact: the additions are
 * atomic). libmicrohttpd's pool, two workers and the metrics listener fit. */
#define METRICS_SHARDS 16

static struct shard shards[METRICS_SHARDS];
static atomic_uint next_shard;
static _Thread_local unsigned my_shard; /* index + 1; 0: not yet picked */

static atomic_ullong auth_failures[METRICS_AUTH__COUNT];
static const char *const auth_reasons[METRICS_AUTH__COUNT] = {"missing", "invalid", "throttled",
                                                              "denied"};

static struct {
    atomic_ullong runs, failures, manifests, blobs, bytes, repos, uploads;
    atomic_ullong evicted;          /* cached repositories evicted, by runs that failed later too */
    atomic_ullong last_end_ms;      /* unix milliseconds the last run ended; 0: none yet */
    atomic_ullong last_duration_us; /* how long it took */
} gc;

static struct http_server *watched;
static double start_time; /* unix seconds */

void metrics_start(struct http_server *srv)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    start_time = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    watched = srv;
}

static struct shard *shard(void)
{
    if (!my_shard)
        my_shard =
            atomic_fetch_add_explicit(&next_shard, 1, memory_order_relaxed) % METRICS_SHARDS + 1;
    return &shards[my_shard - 1];
}

static void add(atomic_ullong *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static uint64_t get(const atomic_ullong *c)
{
    return atomic_load_explicit((atomic_ullong *)c, memory_order_relaxed);
}

static unsigned method_slot(const char *m)
{
    unsigned i;

    if (!m)
        return N_METHODS - 1;
    for (i = 0; i < N_METHODS - 1; i++)
        if (!strcmp(m, methods[i]))
            return i;
    return N_METHODS - 1;
}

static unsigned route_slot(int kind)
{
    switch (kind) {
    case ROUTE_BASE:
        return R_BASE;
    case ROUTE_CATALOG:
        return R_CATALOG;
    case ROUTE_BLOB:
        return R_BLOB;
    case ROUTE_UPLOAD_START:
    case ROUTE_UPLOAD:
        return R_UPLOAD;
    case ROUTE_MANIFEST:
        return R_MANIFEST;
    case ROUTE_TAGS:
        return R_TAGS;
    case ROUTE_REFERRERS:
        return R_REFERRERS;
    case ROUTE_TOKEN:
        return R_TOKEN;
    case ROUTE_HEALTHZ:
        return R_HEALTHZ;
    case ROUTE_READYZ:
        return R_READYZ;
    case ROUTE_METRICS:
        return R_METRICS;
    default:
        return R_OTHER;
    }
}

static unsigned code_slot(unsigned status)
{
    unsigned lo = 0, hi = N_CODES - 1, mid;

    while (lo < hi) {
        mid = (lo + hi) / 2;
        if (codes[mid] < status)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < N_CODES - 1 && codes[lo] == status ? lo : N_CODES - 1;
}

static unsigned bucket_slot(uint64_t ns)
{
    unsigned i;

    for (i = 0; i < N_BOUNDS && ns > bounds_ns[i]; i++)
        ;
    return i;
}

void metrics_request(const char *method, int route, unsigned status, uint64_t nanoseconds,
                     uint64_t bytes_in, uint64_t bytes_out)
{
    struct shard *s = shard();
    unsigned m = method_slot(method), r = route_slot(route);

    add(&s->requests[m][r][code_slot(status)], 1);
    add(&s->buckets[m][r][bucket_slot(nanoseconds)], 1);
    add(&s->duration_ns[m][r], nanoseconds);
    if (bytes_in)
        add(&s->bytes_in[r], bytes_in);
    if (bytes_out)
        add(&s->bytes_out[r], bytes_out);
}

void metrics_auth_failure(enum metrics_auth_reason why)
{
    if ((unsigned)why < METRICS_AUTH__COUNT)
        add(&auth_failures[why], 1);
}

void metrics_gc_run(int rc, const struct gc_stats *st)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    add(&gc.runs, 1);
    add(&gc.evicted, st->evicted);
    if (rc) {
        add(&gc.failures, 1);
    } else {
        add(&gc.manifests, st->manifests);
        add(&gc.blobs, st->blobs + st->orphans);
        add(&gc.bytes, st->blob_bytes + st->orphan_bytes + st->uploads.bytes);
        add(&gc.repos, st->repos);
        add(&gc.uploads, st->uploads.sessions);
        atomic_store_explicit(&gc.last_duration_us, (uint64_t)(st->seconds * 1e6),
                              memory_order_relaxed);
    }
    atomic_store_explicit(&gc.last_end_ms,
                          (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
                          memory_order_relaxed);
}

/* ---- rendering ------------------------------------------------------------ */

/* A scrape's text. Grows up to OUT_MAX; past it (or without memory) the
 * scrape fails rather than sending half a page. */
#define OUT_MAX ((size_t)16 << 20)

struct out {
    char *buf;
    size_t len, cap;
    int failed;
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        {
            size_t cap = o->cap * 2 > o->len + (size_t)n + 1 ? o->cap * 2 : o->len + (size_t)n + 1;
            char *nb = cap <= OUT_MAX ? realloc(o->buf, cap) : NULL;

            if (!nb) {
                o->failed = 1;
                return;
            }
            o->buf = nb;
            o->cap = cap;
        }
    }
}

static void head(struct out *o, const char *name, const char *type, const char *help)
{
    emit(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void scalar(struct out *o, const char *name, const char *type, const char *help,
                   unsigned long long v)
{
    head(o, name, type, help);
    emit(o, "%s %llu\n", name, v);
}

static void scalar_f(struct out *o, const char *name, const char *type, const char *help, double v)
{
    head(o, name, type, help);
    emit(o, "%s %.6f\n", name, v);
}

/* The shards added up. */
struct totals {
    uint64_t requests[N_METHODS][N_ROUTES][N_CODES];
    uint64_t buckets[N_METHODS][N_ROUTES][N_BOUNDS + 1];
    uint64_t duration_ns[N_METHODS][N_ROUTES];
    uint64_t bytes_in[N_ROUTES], bytes_out[N_ROUTES];
};

static void sum_shards(struct totals *t)
{
    unsigned i, m, r, k;

    memset(t, 0, sizeof(*t));
    for (i = 0; i < METRICS_SHARDS; i++) {
        const struct shard *s = &shards[i];

        for (m = 0; m < N_METHODS; m++)
            for (r = 0; r < N_ROUTES; r++) {
                for (k = 0; k < N_CODES; k++)
                    t->requests[m][r][k] += get(&s->requests[m][r][k]);
                for (k = 0; k <= N_BOUNDS; k++)
                    t->buckets[m][r][k] += get(&s->buckets[m][r][k]);
                t->duration_ns[m][r] += get(&s->duration_ns[m][r]);
            }
        for (r = 0; r < N_ROUTES; r++) {
            t->bytes_in[r] += get(&s->bytes_in[r]);
            t->bytes_out[r] += get(&s->bytes_out[r]);
        }
    }
}

static void render_http(struct out *o, const struct totals *t)
{
    unsigned m, r, k;
    uint64_t cum;

    head(o, "registry_http_requests_total", "counter",
         "HTTP requests answered, by method, route kind and status code (499: the client went "
         "away first).");
    for (m = 0; m < N_METHODS; m++)
        for (r = 0; r < N_ROUTES; r++)
            for (k = 0; k < N_CODES; k++) {
                if (!t->requests[m][r][k])
                    continue;
                if (k < N_CODES - 1)
                    emit(o,
                         "registry_http_requests_total{method=\"%s\",route=\"%s\",code=\"%u\"} "
                         "%llu\n",
                         methods[m], routes[r], codes[k], (unsigned long long)t->requests[m][r][k]);
                else
                    emit(o,
                         "registry_http_requests_total{method=\"%s\",route=\"%s\",code=\"other\"} "
                         "%llu\n",
                         methods[m], routes[r], (unsigned long long)t->requests[m][r][k]);
            }
    head(o, "registry_http_request_duration_seconds", "histogram",
         "Time from the request line to the end of the reply, by method and route kind.");
    for (m = 0; m < N_METHODS; m++)
        for (r = 0; r < N_ROUTES; r++) {
            cum = 0;
            for (k = 0; k <= N_BOUNDS; k++)
                cum += t->buckets[m][r][k];
            if (!cum)
                continue;
            cum = 0;
            for (k = 0; k <= N_BOUNDS; k++) {
                cum += t->buckets[m][r][k];
                emit(o,
                     "registry_http_request_duration_seconds_bucket{method=\"%s\",route=\"%s\","
                     "le=\"%s\"} %llu\n",
                     methods[m], routes[r], k < N_BOUNDS ? bounds_le[k] : "+Inf",
                     (unsigned long long)cum);
            }
            emit(o, "registry_http_request_duration_seconds_sum{method=\"%s\",route=\"%s\"} %.9f\n",
                 methods[m], routes[r], (double)t->duration_ns[m][r] / 1e9);
            emit(o,
                 "registry_http_request_duration_seconds_count{method=\"%s\",route=\"%s\"} %llu\n",
                 methods[m], routes[r], (unsigned long long)cum);
        }
    head(o, "registry_http_request_bytes_total", "counter",
         "Request body bytes received, by route kind.");
    for (r = 0; r < N_ROUTES; r++)
        if (t->bytes_in[r])
            emit(o, "registry_http_request_bytes_total{route=\"%s\"} %llu\n", routes[r],
                 (unsigned long long)t->bytes_in[r]);
    head(o, "registry_http_response_bytes_total", "counter",
         "Response body bytes answered (HEAD: none), by route kind; a reply cut off by its "
         "client counts whole.");
    for (r = 0; r < N_ROUTES; r++)
        if (t->bytes_out[r])
            emit(o, "registry_http_response_bytes_total{route=\"%s\"} %llu\n", routes[r],
                 (unsigned long long)t->bytes_out[r]);
}

static void render_auth_gc(struct out *o)
{
    unsigned i;
    uint64_t end_ms = get(&gc.last_end_ms);

    head(o, "registry_auth_failures_total", "counter",
         "Requests the auth check refused, by reason: missing (no credentials; every login "
         "starts so), invalid (bad password or token), throttled, denied (no right).");
    for (i = 0; i < METRICS_AUTH__COUNT; i++)
        emit(o, "registry_auth_failures_total{reason=\"%s\"} %llu\n", auth_reasons[i],
             (unsigned long long)get(&auth_failures[i]));
    scalar(o, "registry_gc_runs_total", "counter", "Garbage collection runs finished.",
           get(&gc.runs));
    scalar(o, "registry_gc_failures_total", "counter", "Garbage collection runs that failed.",
           get(&gc.failures));
    scalar(o, "registry_gc_freed_manifests_total", "counter",
           "Untagged manifests garbage collection removed.", get(&gc.manifests));
    scalar(o, "registry_gc_freed_blobs_total", "counter",
           "Blobs garbage collection removed (unreferenced, and orphan files).", get(&gc.blobs));
    scalar(o, "registry_gc_freed_bytes_total", "counter",
           "Bytes garbage collection freed on disk (blobs, orphan files, stale uploads).",
           get(&gc.bytes));
    scalar(o, "registry_gc_freed_repositories_total", "counter",
           "Empty repositories garbage collection dropped from the catalog.", get(&gc.repos));
    scalar(o, "registry_gc_expired_uploads_total", "counter",
           "Idle upload sessions garbage collection expired.", get(&gc.uploads));
    scalar_f(o, "registry_gc_last_run_timestamp_seconds", "gauge",
             "When the last garbage collection run ended (unix seconds; 0: none yet).",
             (double)end_ms / 1e3);
    scalar_f(o, "registry_gc_last_run_duration_seconds", "gauge",
             "How long the last successful garbage collection run took.",
             (double)get(&gc.last_duration_us) / 1e6);
}

static void render_storage(struct out *o, struct registry *reg)
{
    struct svc_stats st;
    int rc = svc_stats(reg->svc, &st);

    if (rc) {
        log_warn("metrics: cannot read the index totals: %s", reg_strerror(rc));
        return;
    }
    scalar(o, "registry_storage_blobs", "gauge", "Blobs stored (each digest once).", st.blobs);
    scalar(o, "registry_storage_blob_bytes", "gauge", "Bytes of the blobs stored.", st.blob_bytes);
    scalar(o, "registry_storage_repositories", "gauge", "Repositories in the catalog.", st.repos);
    scalar(o, "registry_uploads_in_progress", "gauge",
           "Upload sessions open (until they finish, are cancelled or expire).", st.uploads);
    scalar(o, "registry_index_size_bytes", "gauge",
           "Bytes of the metadata index written so far (high-water mark; freed pages are "
           "reused).",
           st.index_used_bytes);
    scalar(o, "registry_index_limit_bytes", "gauge",
           "index_max_size: writes that add metadata stop here.", st.index_limit);
    scalar(o, "registry_index_map_bytes", "gauge",
           "LMDB map size: index_max_size plus the headroom kept for deletes and GC.",
           st.index_map_bytes);
}

/* Only with a pull-through cache configured; every series then, zeros too. */
static void render_proxy(struct out *o, struct registry *reg)
{
    static const char *const kinds[PROXY__KINDS] = {"manifest", "blob"};
    static const char *const results[PROXY__RESULTS] = {"hit", "miss", "revalidated", "stale",
                                                        "error"};
    struct proxy_stats st;
    int k, r;

    if (svc_proxy_stats(reg->svc, &st) != REG_OK)
        return;
    head(o, "registry_proxy_requests_total", "counter",
         "Requests the pull-through cache answered, by kind and result: hit (from the store), "
         "miss (the upstream asked), revalidated (a tag checked after its tag_ttl), stale (a "
         "tag served when the upstream could not be asked), error (the upstream failed).");
    for (k = 0; k < PROXY__KINDS; k++)
        for (r = 0; r < PROXY__RESULTS; r++)
            emit(o, "registry_proxy_requests_total{kind=\"%s\",result=\"%s\"} %llu\n", kinds[k],
                 results[r], (unsigned long long)st.n[k][r]);
    scalar(o, "registry_proxy_evicted_repositories_total", "counter",
           "Cached repositories evicted by garbage collection: unpulled for their proxy's "
           "evict_after, holding only cached content.",
           get(&gc.evicted));
}

static unsigned long long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    unsigned long long n = 0;

    if (!d)
        return 0;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n ? n - 1 : 0; /* not the directory's own descriptor */
}

static void render_process(struct out *o)
{
    unsigned long long vsize = 0, rss = 0;
    long page = sysconf(_SC_PAGESIZE);
    struct rusage ru;
    struct rlimit rl;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f) {
        if (fscanf(f, "%llu %llu", &vsize, &rss) != 2)
            vsize = rss = 0;
        fclose(f);
    }
    if (getrusage(RUSAGE_SELF, &ru) == 0)
        scalar_f(o, "process_cpu_seconds_total", "counter", "User and system CPU time spent.",
                 (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                     (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    scalar(o, "process_resident_memory_bytes", "gauge", "Resident memory size.",
           rss * (unsigned long long)page);
    scalar(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size.",
           vsize * (unsigned long long)page);
    scalar(o, "process_open_fds", "gauge", "Open file descriptors.", open_fds());
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        scalar(o, "process_max_fds", "gauge", "Limit on open file descriptors.",
               (unsigned long long)rl.rlim_cur);
    scalar_f(o, "process_start_time_seconds", "gauge", "Start time of the process (unix seconds).",
             start_time);
}

/* The whole page; NULL without memory. *len is its length; free() it. */
static char *render(struct registry *reg, size_t *len)
{
    struct out o = {NULL, 0, 0, 0};
    struct totals *t = malloc(sizeof(*t));

    o.cap = 64 << 10;
    o.buf = malloc(o.cap);
    if (!t || !o.buf) {
        free(t);
        free(o.buf);
        return NULL;
    }
    sum_shards(t);
    head(&o, "registry_build_info", "gauge", "The registry's version (value 1).");
    emit(&o, "registry_build_info{version=\"%s\"} 1\n", REGISTRY_VERSION);
    render_http(&o, t);
    free(t);
    if (watched) {
        scalar(&o, "registry_http_connections", "gauge",
               "Open client connections on the main listener.", http_connections(watched));
        scalar(&o, "registry_http_requests_in_flight", "gauge",
               "Requests begun and not yet completed on the main listener.",
               http_in_flight(watched));
    }
    render_auth_gc(&o);
    render_storage(&o, reg);
    render_proxy(&o, reg);
    render_process(&o);
    if (o.failed) {
        free(o.buf);
        return NULL;
    }
    *len = o.len;
    return o.buf;
}

static int metrics_begin(struct req *r, const struct route *rt)
{
    size_t len = 0;
    char *page = render(req_registry(r), &len);

    (void)rt;
    if (!page)
        return REG_E_NOMEM;
    req_reply_buf(r, 200, "text/plain; version=0.0.4; charset=utf-8", page, len);
    free(page);
    return REG_OK;
}

static const struct handler metrics_get = {metrics_begin, NULL, NULL};

const struct handler *metrics_handler(const char *method)
{
    return !strcmp(method, "GET") || !strcmp(method, "HEAD") ? &metrics_get : NULL;
}
