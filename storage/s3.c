/* The S3 client (s3.h). Why libcurl rather than Debian's libs3: libcurl is
 * already what the project's tests and pull-through cache use, it is
 * maintained upstream and in Debian security updates, and since 7.75 it signs
 * requests with SigV4 itself (CURLOPT_AWS_SIGV4), which leaves this file
 * with URL building, retries and reading a handful of XML elements. libs3
 * (4.1, last upstream release 2019) would bring its own request model,
 * libxml2, and a callback API no simpler than curl's for the few requests we
 * send.
 *
 * SigV4 through libcurl has two rules we keep here: the query string is
 * signed as given, so parameters are written in sorted order, each as
 * name=value (also "uploads="), values percent-encoded the AWS way; and the
 * payload is not hashed (x-amz-content-sha256: UNSIGNED-PAYLOAD): the
 * registry hashes every blob itself and checks its digest.
 *
 * XML: S3's replies are read by looking for the few elements we need
 * between <Tag> and </Tag> in a capped buffer, and decoding the five
 * predefined entities; no DTDs, no namespaces, nothing else is trusted. */
#include "s3.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/err.h"
#include "../common/log.h"

/* Curl handles kept for reuse (each holds its keep-alive connections). */
#define POOL_MAX 16
/* Tries for one request: the first and the retries. */
#define TRIES 6
/* First backoff, doubled per retry, capped. */
#define BACKOFF_MS 100
#define BACKOFF_MAX_MS 3000
/* Cap on an XML reply (a page of 1000 keys is about 300 KiB). */
#define REPLY_MAX (4u << 20)
/* A connection that moves less than 1 byte/s for this long has failed. */
#define STALL_SECONDS 60
#define CONNECT_SECONDS 10
/* An encoded key or query: keys are at most 1024 bytes, x3 when encoded. */
#define URL_MAX 8192

struct s3 {
    struct s3_config cfg;
    char base[700];       /* URL of the bucket, no trailing slash */
    char bucket_path[80]; /* "/bucket" for x-amz-copy-source */
    char sigv4[128];      /* CURLOPT_AWS_SIGV4 */
    char userpwd[260];    /* access:secret */
    pthread_mutex_t lock;
    CURL *pool[POOL_MAX];
    size_t npool;
    uint64_t requests; /* atomic */
};

struct req {
    const char *method;      /* GET HEAD PUT POST DELETE */
    const char *key;         /* object key (without prefix); NULL: the bucket */
    const char *query;       /* encoded and sorted, or NULL */
    const char *copy_source; /* object key for x-amz-copy-source, or NULL */
    char copy_range[64];     /* x-amz-copy-source-range value, or "" */
    char range[64];          /* CURLOPT_RANGE value, or "" */
    int fd;                  /* PUT body: len bytes of fd at off, or fd < 0 */
    uint64_t off, len, sent;
    const char *body; /* POST body, or NULL */
    size_t body_len;
    s3_sink_fn sink; /* 2xx body goes here when set, else to reply */
    void *arg;
    int sink_rc;
    uint64_t delivered;
    /* out */
    long status;
    char *reply; /* body (capped), NUL-terminated; always an error's body */
    size_t reply_len, reply_cap;
    char etag[S3_ETAG_MAX];
    uint64_t length; /* Content-Length of a HEAD */
};

/* ---- encoding and XML ---------------------------------------------------------- */

/* AWS's URI encoding: unreserved characters stay, everything else is %XX;
 * slash stays only in paths. 1 on success, 0 when out is too small. */
static int uri_encode(const char *in, int keep_slash, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (; *in; in++) {
        unsigned char c = (unsigned char)*in;
        int plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');

        if (o + 4 > size)
            return 0;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return 1;
}

/* The text of the first <tag>...</tag> in [p, end): *val, *len, and *after
 * just past the closing tag. 0 when there is none. */
static int xml_elem(const char *p, const char *end, const char *tag, const char **val, size_t *len,
                    const char **after)
{
    char open[64], close[64];
    const char *a, *b;
    int no = snprintf(open, sizeof(open), "<%s>", tag),
        nc = snprintf(close, sizeof(close), "</%s>", tag);

    if (no <= 0 || nc <= 0 || (size_t)no >= sizeof(open) || p >= end)
        return 0;
    a = memmem(p, (size_t)(end - p), open, (size_t)no);
    if (!a)
        return 0;
    a += no;
    b = memmem(a, (size_t)(end - a), close, (size_t)nc);
    if (!b)
        return 0;
    *val = a;
    *len = (size_t)(b - a);
    if (after)
        *after = b + nc;
    return 1;
}

/* Decode the predefined entities of [v, v+len) into out. 0 when it does not
 * fit or holds an entity we do not know. */
static int xml_text(const char *v, size_t len, char *out, size_t size)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    size_t i = 0, o = 0, e;

    while (i < len) {
        if (o + 1 >= size)
            return 0;
        if (v[i] != '&') {
            out[o++] = v[i++];
            continue;
        }
        for (e = 0; e < sizeof(ents) / sizeof(ents[0]); e++) {
            size_t n = strlen(ents[e].ent);

            if (len - i >= n && memcmp(v + i, ents[e].ent, n) == 0) {
                out[o++] = ents[e].c;
                i += n;
                break;
            }
        }
        if (e == sizeof(ents) / sizeof(ents[0]))
            return 0;
    }
    out[o] = '\0';
    return 1;
}

static int xml_get(const char *p, const char *end, const char *tag, char *out, size_t size)
{
    const char *v;
    size_t len;

    return xml_elem(p, end, tag, &v, &len, NULL) && xml_text(v, len, out, size);
}

static int xml_u64(const char *p, const char *end, const char *tag, uint64_t *out)
{
    char buf[32], *e;
    unsigned long long x;

    if (!xml_get(p, end, tag, buf, sizeof(buf)) || !buf[0])
        return 0;
    errno = 0;
    x = strtoull(buf, &e, 10);
    if (errno || *e || buf[0] == '-')
        return 0;
    *out = x;
    return 1;
}

static int xml_true(const char *p, const char *end, const char *tag)
{
    char buf[8];

    return xml_get(p, end, tag, buf, sizeof(buf)) && strcmp(buf, "true") == 0;
}

/* XML escaping of an ETag (quotes) into out; 0 when it does not fit. */
static int xml_escape(const char *in, char *out, size_t size)
{
    size_t o = 0;

    for (; *in; in++) {
        const char *rep = *in == '"'   ? "&quot;"
                          : *in == '&' ? "&amp;"
                          : *in == '<' ? "&lt;"
                          : *in == '>' ? "&gt;"
                                       : NULL;
        size_t n = rep ? strlen(rep) : 1;

        if (o + n + 1 > size)
            return 0;
        if (rep)
            memcpy(out + o, rep, n);
        else
            out[o] = *in;
        o += n;
    }
    out[o] = '\0';
    return 1;
}

/* ---- the client ---------------------------------------------------------------- */

int s3_new(const struct s3_config *cfg, struct s3 **out)
{
    struct s3 *s = calloc(1, sizeof(*s));
    const char *host;
    int n;

    *out = NULL;
    if (!s)
        return REG_E_NOMEM;
    s->cfg = *cfg;
    host = strstr(cfg->endpoint, "://");
    if (!host || !cfg->bucket[0] || !cfg->region[0] || strchr(cfg->bucket, '/') ||
        (strncmp(cfg->endpoint, "http://", 7) != 0 && strncmp(cfg->endpoint, "https://", 8) != 0)) {
        free(s);
        return REG_E_CONFIG;
    }
    host += 3;
    if (cfg->path_style)
        n = snprintf(s->base, sizeof(s->base), "%s/%s", cfg->endpoint, cfg->bucket);
    else
        n = snprintf(s->base, sizeof(s->base), "%.*s%s.%s", (int)(host - cfg->endpoint),
                     cfg->endpoint, cfg->bucket, host);
    if (n < 0 || (size_t)n >= sizeof(s->base) ||
        snprintf(s->bucket_path, sizeof(s->bucket_path), "/%s", cfg->bucket) >=
            (int)sizeof(s->bucket_path) ||
        snprintf(s->sigv4, sizeof(s->sigv4), "aws:amz:%s:s3", cfg->region) >=
            (int)sizeof(s->sigv4) ||
        snprintf(s->userpwd, sizeof(s->userpwd), "%s:%s", cfg->access_key, cfg->secret_key) >=
            (int)sizeof(s->userpwd)) {
        free(s);
        return REG_E_CONFIG;
    }
    while (n > 0 && s->base[n - 1] == '/')
        s->base[--n] = '\0';
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return REG_OK;
}

void s3_free(struct s3 *s)
{
    size_t i;

    if (!s)
        return;
    for (i = 0; i < s->npool; i++)
        curl_easy_cleanup(s->pool[i]);
    pthread_mutex_destroy(&s->lock);
    explicit_bzero(s->userpwd, sizeof(s->userpwd));
    explicit_bzero(s->cfg.secret_key, sizeof(s->cfg.secret_key));
    free(s);
}

uint64_t s3_requests(const struct s3 *s)
{
    return __atomic_load_n(&s->requests, __ATOMIC_RELAXED);
}

static CURL *handle_get(struct s3 *s)
{
    CURL *c = NULL;

    pthread_mutex_lock(&s->lock);
    if (s->npool > 0)
        c = s->pool[--s->npool];
    pthread_mutex_unlock(&s->lock);
    if (c)
        curl_easy_reset(c); /* keeps the connection cache */
    else
        c = curl_easy_init();
    return c;
}

static void handle_put(struct s3 *s, CURL *c)
{
    pthread_mutex_lock(&s->lock);
    if (s->npool < POOL_MAX) {
        s->pool[s->npool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (c)
        curl_easy_cleanup(c);
}

static size_t on_read(char *buf, size_t size, size_t nmemb, void *arg)
{
    struct req *r = arg;
    size_t want = size * nmemb;
    ssize_t n;

    if (want > r->len - r->sent)
        want = (size_t)(r->len - r->sent);
    if (want == 0)
        return 0;
    do
        n = pread(r->fd, buf, want, (off_t)(r->off + r->sent));
    while (n < 0 && errno == EINTR);
    if (n <= 0)
        return CURL_READFUNC_ABORT; /* the file shrank or failed: never send short */
    r->sent += (uint64_t)n;
    return (size_t)n;
}

static int reply_add(struct req *r, const void *data, size_t len)
{
    if (r->reply_len + len + 1 > REPLY_MAX)
        return -1;
    if (r->reply_len + len + 1 > r->reply_cap) {
        size_t cap = r->reply_cap ? r->reply_cap : 16384;
        char *p;

        while (cap < r->reply_len + len + 1)
            cap *= 2;
        p = realloc(r->reply, cap);
        if (!p)
            return -1;
        r->reply = p;
        r->reply_cap = cap;
    }
    memcpy(r->reply + r->reply_len, data, len);
    r->reply_len += len;
    r->reply[r->reply_len] = '\0';
    return 0;
}

struct call {
    struct req *r;
    CURL *c;
};

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct call *k = arg;
    struct req *r = k->r;
    size_t len = size * nmemb;
    long status = 0;

    curl_easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &status);
    if (r->sink && status >= 200 && status < 300) {
        r->sink_rc = r->sink(r->arg, data, len);
        if (r->sink_rc)
            return 0;
        r->delivered += len;
        return len;
    }
    return reply_add(r, data, len) ? 0 : len;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct req *r = arg;
    size_t len = size * nmemb, n;

    if (len > 5 && strncasecmp(data, "etag:", 5) == 0) {
        data += 5;
        n = len - 5;
        while (n > 0 && (*data == ' ' || *data == '\t')) {
            data++;
            n--;
        }
        while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n' || data[n - 1] == ' '))
            n--;
        if (n < sizeof(r->etag)) {
            memcpy(r->etag, data, n);
            r->etag[n] = '\0';
        }
    }
    return len;
}

static int retryable(CURLcode cc, long status)
{
    if (cc == CURLE_OK)
        return status == 500 || status == 502 || status == 503 || status == 504 || status == 429;
    return cc == CURLE_COULDNT_CONNECT || cc == CURLE_OPERATION_TIMEDOUT ||
           cc == CURLE_SEND_ERROR || cc == CURLE_RECV_ERROR || cc == CURLE_GOT_NOTHING ||
           cc == CURLE_PARTIAL_FILE;
}

static void backoff(int attempt)
{
    long ms = BACKOFF_MS << attempt;
    struct timespec ts;

    if (ms > BACKOFF_MAX_MS)
        ms = BACKOFF_MAX_MS;
    ms = ms / 2 + (long)((unsigned)rand() % (unsigned)(ms / 2 + 1)); /* jitter */
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    nanosleep(&ts, NULL);
}

/* The S3 error code of a reply body, for logs. */
static void error_code(const struct req *r, char *out, size_t size)
{
    if (!r->reply || !xml_get(r->reply, r->reply + r->reply_len, "Code", out, size))
        snprintf(out, size, "-");
}

static int status_err(const struct req *r)
{
    char code[64];

    error_code(r, code, sizeof(code));
    if (r->status == 404)
        return REG_E_NOT_FOUND;
    if (r->status == 416)
        return REG_E_RANGE;
    log_error("s3: %s %s%s%s: HTTP %ld %s", r->method, r->key ? r->key : "(bucket)",
              r->query ? "?" : "", r->query ? r->query : "", r->status, code);
    if (r->status == 403 || r->status == 401 || r->status == 301)
        return REG_E_CONFIG;
    return REG_E_IO;
}

/* The URL of key (NULL: the bucket) with an encoded query (or NULL); -1 when
 * it does not fit. */
static int build_url(const struct s3 *s, const char *key, const char *query, char *url, size_t size)
{
    char path[URL_MAX], full[1400];
    int n;

    path[0] = '\0';
    if (key) {
        n = snprintf(full, sizeof(full), "%s%s", s->cfg.prefix, key);
        if (n < 0 || (size_t)n >= sizeof(full) || !uri_encode(full, 1, path, sizeof(path)))
            return -1;
    }
    n = snprintf(url, size, "%s%s%s%s%s", s->base, key ? "/" : "", path, query ? "?" : "",
                 query ? query : "");
    return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Options every request sets. */
static void set_common(const struct s3 *s, CURL *c, const char *url, struct curl_slist *h)
{
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_AWS_SIGV4, s->sigv4);
    curl_easy_setopt(c, CURLOPT_USERPWD, s->userpwd);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    /* Nothing from the environment: no proxy variables. */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)CONNECT_SECONDS);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)STALL_SECONDS);
}

/* One request, retried while that is safe: the body can be sent again
 * (it comes from a file) and a download has delivered nothing yet. */
static int perform(struct s3 *s, struct req *r)
{
    char url[URL_MAX + 1024], full[1400], hdr[URL_MAX + 160];
    struct curl_slist *h = NULL, *h2;
    struct call k = {r, NULL};
    CURLcode cc = CURLE_OK;
    int attempt, rc = REG_E_IO, n;

    if (build_url(s, r->key, r->query, url, sizeof(url)))
        return REG_E_INTERNAL;
    h = curl_slist_append(h, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    /* No "Expect:" to suppress 100-continue: libcurl would sign the empty
     * header it then leaves out, and the signature would not match. */
    if (h && r->copy_source) {
        char enc[URL_MAX];

        n = snprintf(full, sizeof(full), "%s%s", s->cfg.prefix, r->copy_source);
        if (n < 0 || (size_t)n >= sizeof(full) || !uri_encode(full, 1, enc, sizeof(enc))) {
            curl_slist_free_all(h);
            return REG_E_INTERNAL;
        }
        snprintf(hdr, sizeof(hdr), "x-amz-copy-source: %s/%s", s->bucket_path, enc);
        h2 = curl_slist_append(h, hdr);
        h = h2 ? h2 : (curl_slist_free_all(h), NULL);
    }
    if (h && r->copy_range[0]) {
        snprintf(hdr, sizeof(hdr), "x-amz-copy-source-range: %s", r->copy_range);
        h2 = curl_slist_append(h, hdr);
        h = h2 ? h2 : (curl_slist_free_all(h), NULL);
    }
    if (!h)
        return REG_E_NOMEM;

    for (attempt = 0; attempt < TRIES; attempt++) {
        CURL *c = handle_get(s);

        if (!c) {
            rc = REG_E_NOMEM;
            break;
        }
        k.c = c;
        r->status = 0;
        r->sent = 0;
        r->reply_len = 0;
        r->sink_rc = REG_OK;
        r->etag[0] = '\0';
        if (r->reply)
            r->reply[0] = '\0';
        set_common(s, c, url, h);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &k);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
        if (r->range[0])
            curl_easy_setopt(c, CURLOPT_RANGE, r->range);
        if (strcmp(r->method, "HEAD") == 0) {
            curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
        } else if (strcmp(r->method, "PUT") == 0) {
            curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
            curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)(r->fd >= 0 ? r->len : 0));
            curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
            curl_easy_setopt(c, CURLOPT_READDATA, r);
        } else if (strcmp(r->method, "POST") == 0) {
            curl_easy_setopt(c, CURLOPT_POST, 1L);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body ? r->body : "");
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)r->body_len);
        } else if (strcmp(r->method, "DELETE") == 0) {
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
        }
        __atomic_add_fetch(&s->requests, 1, __ATOMIC_RELAXED);
        cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        if (cc == CURLE_OK && strcmp(r->method, "HEAD") == 0) {
            curl_off_t cl = -1;

            curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
            r->length = cl > 0 ? (uint64_t)cl : 0;
        }
        handle_put(s, c);
        if (r->sink_rc) {
            rc = r->sink_rc;
            break;
        }
        if (cc == CURLE_OK && r->status >= 200 && r->status < 300) {
            rc = REG_OK;
            break;
        }
        if (!retryable(cc, r->status) || r->delivered > 0 || attempt + 1 == TRIES) {
            if (cc != CURLE_OK) {
                log_error("s3: %s %s: %s", r->method, r->key ? r->key : "(bucket)",
                          curl_easy_strerror(cc));
                rc = REG_E_IO;
            } else {
                rc = status_err(r);
            }
            break;
        }
        log_warn("s3: %s %s: %s (HTTP %ld), retrying", r->method, r->key ? r->key : "(bucket)",
                 cc != CURLE_OK ? curl_easy_strerror(cc) : "server error", r->status);
        backoff(attempt);
    }
    curl_slist_free_all(h);
    return rc;
}

static void req_init(struct req *r, const char *method, const char *key)
{
    memset(r, 0, sizeof(*r));
    r->method = method;
    r->key = key;
    r->fd = -1;
}

/* GET one page of a bucket listing (query: its parameters, sorted). On
 * success r->reply holds the XML (never NULL); on failure nothing is held. */
static int list_page(struct s3 *s, const char *query, struct req *r)
{
    int rc;

    req_init(r, "GET", NULL);
    r->query = query;
    rc = perform(s, r);
    if (!rc && !r->reply)
        rc = reply_add(r, "", 0) ? REG_E_NOMEM : REG_OK;
    if (rc) {
        free(r->reply);
        r->reply = NULL;
    }
    return rc;
}

/* A 200 reply that is an error all the same (CopyObject and
 * CompleteMultipartUpload may fail after the status line went out). */
static int body_error(struct req *r)
{
    char code[64];

    if (!r->reply || !memmem(r->reply, r->reply_len, "<Error>", 7))
        return REG_OK;
    error_code(r, code, sizeof(code));
    log_error("s3: %s %s: %s after 200", r->method, r->key ? r->key : "(bucket)", code);
    return strcmp(code, "NoSuchUpload") == 0 || strcmp(code, "NoSuchKey") == 0 ? REG_E_NOT_FOUND
                                                                               : REG_E_IO;
}

/* ---- requests -------------------------------------------------------------------- */

int s3_bucket_check(struct s3 *s)
{
    struct req r;
    int rc;

    req_init(&r, "HEAD", NULL);
    rc = perform(s, &r);
    free(r.reply);
    return rc;
}

int s3_bucket_create(struct s3 *s)
{
    struct req r;
    int rc;

    req_init(&r, "PUT", NULL);
    rc = perform(s, &r);
    if (rc == REG_E_IO && r.status == 409)
        rc = REG_OK; /* BucketAlreadyOwnedByYou (RGW answers 409 too) */
    free(r.reply);
    return rc;
}

int s3_put(struct s3 *s, const char *key, int fd, uint64_t off, uint64_t len)
{
    struct req r;
    int rc;

    req_init(&r, "PUT", key);
    r.fd = fd;
    r.off = off;
    r.len = len;
    rc = perform(&*s, &r);
    free(r.reply);
    return rc;
}

int s3_get(struct s3 *s, const char *key, uint64_t off, uint64_t len, s3_sink_fn sink, void *arg)
{
    struct req r;
    int rc;

    req_init(&r, "GET", key);
    r.sink = sink;
    r.arg = arg;
    if (len)
        snprintf(r.range, sizeof(r.range), "%" PRIu64 "-%" PRIu64, off, off + len - 1);
    else if (off)
        snprintf(r.range, sizeof(r.range), "%" PRIu64 "-", off);
    rc = perform(s, &r);
    free(r.reply);
    return rc;
}

int s3_head(struct s3 *s, const char *key, uint64_t *size)
{
    struct req r;
    int rc;

    *size = 0;
    req_init(&r, "HEAD", key);
    rc = perform(s, &r);
    if (!rc)
        *size = r.length;
    free(r.reply);
    return rc;
}

int s3_delete(struct s3 *s, const char *key)
{
    struct req r;
    int rc;

    req_init(&r, "DELETE", key);
    rc = perform(s, &r);
    if (rc == REG_E_NOT_FOUND)
        rc = REG_OK;
    free(r.reply);
    return rc;
}

int s3_copy(struct s3 *s, const char *src, const char *dst)
{
    struct req r;
    int rc;

    req_init(&r, "PUT", dst);
    r.copy_source = src;
    rc = perform(s, &r);
    if (!rc)
        rc = body_error(&r);
    free(r.reply);
    return rc;
}

int s3_list(struct s3 *s, const char *prefix, s3_key_fn fn, void *arg)
{
    char full[1400], eprefix[URL_MAX / 2], token[1024], etoken[URL_MAX / 4], query[URL_MAX],
        key[1100];
    size_t plen = strlen(s->cfg.prefix);
    int rc = REG_OK, more = 1, n;

    token[0] = '\0';
    n = snprintf(full, sizeof(full), "%s%s", s->cfg.prefix, prefix);
    if (n < 0 || (size_t)n >= sizeof(full) || !uri_encode(full, 0, eprefix, sizeof(eprefix)))
        return REG_E_INTERNAL;
    while (!rc && more) {
        struct req r;
        const char *p, *end, *v, *after;
        size_t len;

        if (token[0]) {
            if (!uri_encode(token, 0, etoken, sizeof(etoken)))
                return REG_E_IO;
            n = snprintf(query, sizeof(query), "continuation-token=%s&list-type=2&prefix=%s",
                         etoken, eprefix);
        } else {
            n = snprintf(query, sizeof(query), "list-type=2&prefix=%s", eprefix);
        }
        if (n < 0 || (size_t)n >= sizeof(query))
            return REG_E_INTERNAL;
        rc = list_page(s, query, &r);
        if (rc)
            break;
        p = r.reply;
        end = r.reply + r.reply_len;
        while (!rc && xml_elem(p, end, "Contents", &v, &len, &after)) {
            uint64_t size = 0;

            if (!xml_get(v, v + len, "Key", key, sizeof(key)) ||
                strncmp(key, s->cfg.prefix, plen) || !xml_u64(v, v + len, "Size", &size)) {
                log_error("s3: list: an entry without a usable Key or Size");
                rc = REG_E_IO;
                break;
            }
            rc = fn(arg, key + plen, size);
            p = after;
        }
        more = xml_true(r.reply, end, "IsTruncated");
        if (!rc && more && !xml_get(r.reply, end, "NextContinuationToken", token, sizeof(token))) {
            log_error("s3: list: truncated without a continuation token");
            rc = REG_E_IO;
        }
        free(r.reply);
    }
    return rc;
}

/* ---- multipart -------------------------------------------------------------------- */

int s3_mpu_create(struct s3 *s, const char *key, char id[S3_UPLOAD_ID_MAX])
{
    struct req r;
    int rc;

    id[0] = '\0';
    req_init(&r, "POST", key);
    r.query = "uploads=";
    rc = perform(s, &r);
    if (!rc &&
        (!r.reply || !xml_get(r.reply, r.reply + r.reply_len, "UploadId", id, S3_UPLOAD_ID_MAX) ||
         !id[0])) {
        log_error("s3: create multipart upload of %s: no UploadId in the reply", key);
        rc = REG_E_IO;
    }
    free(r.reply);
    return rc;
}

static int part_query(const char *id, int number, char *q, size_t size)
{
    char eid[S3_UPLOAD_ID_MAX * 3];
    int n;

    if (!uri_encode(id, 0, eid, sizeof(eid)))
        return REG_E_INTERNAL;
    n = snprintf(q, size, "partNumber=%d&uploadId=%s", number, eid);
    return n < 0 || (size_t)n >= size ? REG_E_INTERNAL : REG_OK;
}

static int upload_query(const char *id, char *q, size_t size)
{
    char eid[S3_UPLOAD_ID_MAX * 3];
    int n;

    if (!uri_encode(id, 0, eid, sizeof(eid)))
        return REG_E_INTERNAL;
    n = snprintf(q, size, "uploadId=%s", eid);
    return n < 0 || (size_t)n >= size ? REG_E_INTERNAL : REG_OK;
}

int s3_mpu_part(struct s3 *s, const char *key, const char *id, int number, int fd, uint64_t off,
                uint64_t len, char etag[S3_ETAG_MAX])
{
    char q[S3_UPLOAD_ID_MAX * 3 + 64];
    struct req r;
    int rc = part_query(id, number, q, sizeof(q));

    etag[0] = '\0';
    if (rc)
        return rc;
    req_init(&r, "PUT", key);
    r.query = q;
    r.fd = fd;
    r.off = off;
    r.len = len;
    rc = perform(s, &r);
    if (!rc && !r.etag[0]) {
        log_error("s3: part %d of %s: no ETag", number, key);
        rc = REG_E_IO;
    }
    if (!rc)
        memcpy(etag, r.etag, S3_ETAG_MAX);
    free(r.reply);
    return rc;
}

int s3_mpu_part_copy(struct s3 *s, const char *key, const char *id, int number, const char *src,
                     uint64_t off, uint64_t len, char etag[S3_ETAG_MAX])
{
    char q[S3_UPLOAD_ID_MAX * 3 + 64];
    struct req r;
    int rc = part_query(id, number, q, sizeof(q));

    etag[0] = '\0';
    if (rc || len == 0)
        return rc ? rc : REG_E_INTERNAL;
    req_init(&r, "PUT", key);
    r.query = q;
    r.copy_source = src;
    snprintf(r.copy_range, sizeof(r.copy_range), "bytes=%" PRIu64 "-%" PRIu64, off, off + len - 1);
    rc = perform(s, &r);
    if (!rc)
        rc = body_error(&r);
    if (!rc && !(r.reply && xml_get(r.reply, r.reply + r.reply_len, "ETag", etag, S3_ETAG_MAX))) {
        log_error("s3: part copy %d of %s: no ETag", number, key);
        rc = REG_E_IO;
    }
    free(r.reply);
    return rc;
}

int s3_mpu_complete(struct s3 *s, const char *key, const char *id, const struct s3_part *parts,
                    size_t n)
{
    char q[S3_UPLOAD_ID_MAX * 3 + 32], etag[S3_ETAG_MAX * 6], line[S3_ETAG_MAX * 6 + 96];
    struct req r, body;
    size_t i;
    int rc = upload_query(id, q, sizeof(q));

    if (rc)
        return rc;
    req_init(&body, "", NULL);
    if (reply_add(&body, "<CompleteMultipartUpload>", 25))
        return REG_E_NOMEM;
    for (i = 0; i < n; i++) {
        int len;

        if (!xml_escape(parts[i].etag, etag, sizeof(etag))) {
            free(body.reply);
            return REG_E_INTERNAL;
        }
        len =
            snprintf(line, sizeof(line), "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>",
                     parts[i].number, etag);
        if (len < 0 || (size_t)len >= sizeof(line) || reply_add(&body, line, (size_t)len)) {
            free(body.reply);
            return REG_E_NOMEM;
        }
    }
    if (reply_add(&body, "</CompleteMultipartUpload>", 26)) {
        free(body.reply);
        return REG_E_NOMEM;
    }
    req_init(&r, "POST", key);
    r.query = q;
    r.body = body.reply;
    r.body_len = body.reply_len;
    rc = perform(s, &r);
    if (!rc)
        rc = body_error(&r);
    free(r.reply);
    free(body.reply);
    return rc;
}

int s3_mpu_abort(struct s3 *s, const char *key, const char *id)
{
    char q[S3_UPLOAD_ID_MAX * 3 + 32];
    struct req r;
    int rc = upload_query(id, q, sizeof(q));

    if (rc)
        return rc;
    req_init(&r, "DELETE", key);
    r.query = q;
    rc = perform(s, &r);
    if (rc == REG_E_NOT_FOUND)
        rc = REG_OK;
    free(r.reply);
    return rc;
}

int s3_mpu_parts(struct s3 *s, const char *key, const char *id, struct s3_part **parts, size_t *n)
{
    char eid[S3_UPLOAD_ID_MAX * 3], q[S3_UPLOAD_ID_MAX * 3 + 96];
    struct s3_part *all = NULL;
    size_t cnt = 0, cap = 0;
    uint64_t marker = 0;
    int rc = REG_OK, more = 1;

    *parts = NULL;
    *n = 0;
    if (!uri_encode(id, 0, eid, sizeof(eid)))
        return REG_E_INTERNAL;
    while (!rc && more) {
        struct req r;
        const char *p, *end, *v, *after;
        size_t len;

        snprintf(q, sizeof(q), "max-parts=1000&part-number-marker=%" PRIu64 "&uploadId=%s", marker,
                 eid);
        req_init(&r, "GET", key);
        r.query = q;
        rc = perform(s, &r);
        if (!rc && !r.reply)
            rc = reply_add(&r, "", 0) ? REG_E_NOMEM : REG_OK;
        if (rc) {
            free(r.reply);
            break;
        }
        p = r.reply;
        end = r.reply + r.reply_len;
        while (!rc && xml_elem(p, end, "Part", &v, &len, &after)) {
            struct s3_part pt;
            uint64_t num = 0;

            memset(&pt, 0, sizeof(pt));
            if (!xml_u64(v, v + len, "PartNumber", &num) || num < 1 || num > 10000 ||
                !xml_u64(v, v + len, "Size", &pt.size) ||
                !xml_get(v, v + len, "ETag", pt.etag, sizeof(pt.etag))) {
                log_error("s3: list parts of %s: an unusable Part", key);
                rc = REG_E_IO;
                break;
            }
            pt.number = (int)num;
            if (cnt == cap) {
                struct s3_part *g = realloc(all, (cap ? cap * 2 : 16) * sizeof(*g));

                if (!g) {
                    rc = REG_E_NOMEM;
                    break;
                }
                all = g;
                cap = cap ? cap * 2 : 16;
            }
            all[cnt++] = pt;
            p = after;
        }
        more = xml_true(r.reply, end, "IsTruncated");
        if (!rc && more &&
            (!xml_u64(r.reply, end, "NextPartNumberMarker", &marker) || marker == 0)) {
            log_error("s3: list parts of %s: truncated without a marker", key);
            rc = REG_E_IO;
        }
        free(r.reply);
    }
    if (rc) {
        free(all);
        return rc;
    }
    *parts = all;
    *n = cnt;
    return REG_OK;
}

int s3_mpu_list(struct s3 *s, const char *prefix, s3_upload_fn fn, void *arg)
{
    char full[1400], eprefix[URL_MAX / 4], kmark[1100], umark[S3_UPLOAD_ID_MAX],
        ekmark[URL_MAX / 4], eumark[S3_UPLOAD_ID_MAX * 3], q[URL_MAX], key[1100],
        id[S3_UPLOAD_ID_MAX];
    size_t plen = strlen(s->cfg.prefix);
    int rc = REG_OK, more = 1, n;

    kmark[0] = umark[0] = '\0';
    n = snprintf(full, sizeof(full), "%s%s", s->cfg.prefix, prefix);
    if (n < 0 || (size_t)n >= sizeof(full) || !uri_encode(full, 0, eprefix, sizeof(eprefix)))
        return REG_E_INTERNAL;
    while (!rc && more) {
        struct req r;
        const char *p, *end, *v, *after;
        size_t len;

        if (!uri_encode(kmark, 0, ekmark, sizeof(ekmark)) ||
            !uri_encode(umark, 0, eumark, sizeof(eumark)))
            return REG_E_IO;
        if (kmark[0])
            n = snprintf(q, sizeof(q),
                         "key-marker=%s&prefix=%s&upload-id-marker=%s&uploads=", ekmark, eprefix,
                         eumark);
        else
            n = snprintf(q, sizeof(q), "prefix=%s&uploads=", eprefix);
        if (n < 0 || (size_t)n >= sizeof(q))
            return REG_E_INTERNAL;
        rc = list_page(s, q, &r);
        if (rc)
            break;
        p = r.reply;
        end = r.reply + r.reply_len;
        while (!rc && xml_elem(p, end, "Upload", &v, &len, &after)) {
            if (!xml_get(v, v + len, "Key", key, sizeof(key)) ||
                strncmp(key, s->cfg.prefix, plen) ||
                !xml_get(v, v + len, "UploadId", id, sizeof(id))) {
                log_error("s3: list uploads: an unusable Upload");
                rc = REG_E_IO;
                break;
            }
            rc = fn(arg, key + plen, id);
            p = after;
        }
        more = xml_true(r.reply, end, "IsTruncated");
        if (!rc && more &&
            (!xml_get(r.reply, end, "NextKeyMarker", kmark, sizeof(kmark)) ||
             !xml_get(r.reply, end, "NextUploadIdMarker", umark, sizeof(umark)) || !kmark[0])) {
            log_error("s3: list uploads: truncated without markers");
            rc = REG_E_IO;
        }
        free(r.reply);
    }
    return rc;
}

/* ---- streamed GET ------------------------------------------------------------------ */

/* Curl's largest write callback with this buffer size, and so the most a
 * read may have to keep for the next one. */
#define STREAM_BUFSIZE (128u << 10)
/* Cap on the body of an error reply. */
#define STREAM_ERR_MAX 4096

struct s3_stream {
    struct s3 *s;
    char key[1100];
    struct curl_slist *h;
    CURLM *m;
    CURL *c;           /* the request in flight, or NULL */
    uint64_t off, len; /* the range asked for (len 0: to the end) */
    uint64_t pos;      /* bytes handed to the caller */
    uint64_t base;     /* pos when the current request began (at off + base) */
    uint64_t got;      /* bytes the current request delivered */
    char *dst;         /* the caller's buffer during a read */
    size_t dst_len, dst_cap;
    char *spill; /* what did not fit there, STREAM_BUFSIZE bytes */
    size_t spill_off, spill_len;
    long status; /* of the current request, once its headers are in */
    int done;    /* the current request ended */
    int paused;  /* curl holds a piece we had no room for */
    CURLcode cc; /* and how */
    int retries; /* requests started again after a failure */
    char err[STREAM_ERR_MAX + 1];
    size_t err_len;
};

static size_t stream_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s3_stream *st = arg;
    size_t len = size * nmemb, n;

    if (st->status < 200 || st->status >= 300) {
        n = len < STREAM_ERR_MAX - st->err_len ? len : STREAM_ERR_MAX - st->err_len;
        memcpy(st->err + st->err_len, data, n);
        st->err_len += n;
        st->err[st->err_len] = '\0';
        return len;
    }
    n = st->dst_cap - st->dst_len < len ? st->dst_cap - st->dst_len : len;
    if (len - n > 0 && (st->spill_len > 0 || len - n > STREAM_BUFSIZE)) {
        /* No room left: curl keeps this piece until the next read. */
        st->paused = 1;
        return CURL_WRITEFUNC_PAUSE;
    }
    if (n > 0)
        memcpy(st->dst + st->dst_len, data, n);
    st->dst_len += n;
    memcpy(st->spill, data + n, len - n);
    st->spill_len = len - n;
    st->got += len;
    return len;
}

static size_t stream_header(char *data, size_t size, size_t nmemb, void *arg)
{
    struct s3_stream *st = arg;
    size_t len = size * nmemb;

    if (len <= 2 && (data[0] == '\r' || data[0] == '\n'))
        curl_easy_getinfo(st->c, CURLINFO_RESPONSE_CODE, &st->status);
    return len;
}

static void stream_stop(struct s3_stream *st)
{
    if (!st->c)
        return;
    curl_multi_remove_handle(st->m, st->c);
    /* A transfer cut short leaves its connection unusable: no pooling. */
    if (st->done && st->cc == CURLE_OK)
        handle_put(st->s, st->c);
    else
        curl_easy_cleanup(st->c);
    st->c = NULL;
}

static int stream_perform(struct s3_stream *st)
{
    CURLMsg *msg;
    int running, left;

    if (curl_multi_perform(st->m, &running) != CURLM_OK)
        return REG_E_IO;
    while ((msg = curl_multi_info_read(st->m, &left)) != NULL)
        if (msg->msg == CURLMSG_DONE) {
            st->done = 1;
            st->cc = msg->data.result;
            if (!st->status)
                curl_easy_getinfo(st->c, CURLINFO_RESPONSE_CODE, &st->status);
        }
    return REG_OK;
}

/* Move the transfer on; with wait, and when that brought nothing, wait for
 * its socket (at most a second) and move it on again. */
static int stream_pump(struct s3_stream *st, int wait)
{
    size_t before = st->dst_len + st->spill_len;
    long status = st->status;
    int rc = stream_perform(st), nfds = 0;

    if (rc || !wait || st->done || st->status != status || st->dst_len + st->spill_len != before)
        return rc;
    if (curl_multi_poll(st->m, NULL, 0, 1000, &nfds) != CURLM_OK)
        return REG_E_IO;
    return stream_perform(st);
}

/* Start the request for the bytes from off + pos and wait for its status.
 * Retries while nothing was handed out from it. */
static int stream_start(struct s3_stream *st)
{
    char url[URL_MAX + 1024], range[64];
    uint64_t from = st->off + st->pos;
    int rc = REG_E_IO, attempt;

    if (build_url(st->s, st->key, NULL, url, sizeof(url)))
        return REG_E_INTERNAL;
    if (st->len)
        snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, from, st->off + st->len - 1);
    else
        snprintf(range, sizeof(range), "%" PRIu64 "-", from);
    for (attempt = 0; attempt < TRIES; attempt++) {
        st->c = handle_get(st->s);
        if (!st->c)
            return REG_E_NOMEM;
        st->status = 0;
        st->done = 0;
        st->paused = 0;
        st->cc = CURLE_OK;
        st->got = 0;
        st->base = st->pos;
        st->err_len = 0;
        st->err[0] = '\0';
        set_common(st->s, st->c, url, st->h);
        curl_easy_setopt(st->c, CURLOPT_BUFFERSIZE, (long)STREAM_BUFSIZE);
        curl_easy_setopt(st->c, CURLOPT_WRITEFUNCTION, stream_write);
        curl_easy_setopt(st->c, CURLOPT_WRITEDATA, st);
        curl_easy_setopt(st->c, CURLOPT_HEADERFUNCTION, stream_header);
        curl_easy_setopt(st->c, CURLOPT_HEADERDATA, st);
        if (from > 0 || st->len)
            curl_easy_setopt(st->c, CURLOPT_RANGE, range);
        if (curl_multi_add_handle(st->m, st->c) != CURLM_OK) {
            curl_easy_cleanup(st->c);
            st->c = NULL;
            return REG_E_NOMEM;
        }
        __atomic_add_fetch(&st->s->requests, 1, __ATOMIC_RELAXED);
        rc = REG_OK;
        while (!rc && !st->done && !st->status)
            rc = stream_pump(st, 1);
        if (rc)
            break;
        if (st->status >= 200 && st->status < 300)
            return REG_OK;
        while (!rc && !st->done) /* an error's body: for the log */
            rc = stream_pump(st, 1);
        stream_stop(st);
        if (st->status == 404)
            return REG_E_NOT_FOUND;
        if (st->status == 416)
            return REG_E_RANGE;
        if (!retryable(st->cc, st->status) || attempt + 1 == TRIES) {
            char code[64];

            if (!xml_get(st->err, st->err + st->err_len, "Code", code, sizeof(code)))
                snprintf(code, sizeof(code), "%s", st->cc ? curl_easy_strerror(st->cc) : "-");
            log_error("s3: GET %s: HTTP %ld %s", st->key, st->status, code);
            return st->status == 403 || st->status == 401 ? REG_E_CONFIG : REG_E_IO;
        }
        log_warn("s3: GET %s: HTTP %ld, retrying", st->key, st->status);
        backoff(attempt);
    }
    stream_stop(st);
    return rc;
}

int s3_stream_open(struct s3 *s, const char *key, uint64_t off, uint64_t len,
                   struct s3_stream **out)
{
    struct s3_stream *st = calloc(1, sizeof(*st));
    int rc = REG_E_NOMEM;

    *out = NULL;
    if (!st)
        return rc;
    st->s = s;
    st->off = off;
    st->len = len;
    if (snprintf(st->key, sizeof(st->key), "%s", key) >= (int)sizeof(st->key)) {
        rc = REG_E_INTERNAL;
        goto out;
    }
    st->spill = malloc(STREAM_BUFSIZE);
    st->h = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    st->m = curl_multi_init();
    if (!st->spill || !st->h || !st->m)
        goto out;
    rc = stream_start(st);
out:
    if (rc) {
        s3_stream_close(st);
        return rc;
    }
    *out = st;
    return REG_OK;
}

int s3_stream_read(struct s3_stream *st, void *buf, size_t max, size_t *n)
{
    int rc = REG_OK, nfds;

    *n = 0;
    if (max == 0)
        return REG_OK;
    st->dst = buf;
    st->dst_len = 0;
    st->dst_cap = max;
    if (st->spill_len > 0) {
        size_t k = st->spill_len < max ? st->spill_len : max;

        memcpy(buf, st->spill + st->spill_off, k);
        st->dst_len = k;
        st->spill_off += k;
        st->spill_len -= k;
        if (st->spill_len == 0)
            st->spill_off = 0;
        else
            goto out; /* buf is full */
    }
    /* spill is empty from here on, so a write callback may fill it. */
    if (st->paused && st->c && !st->done) {
        st->paused = 0;
        if (curl_easy_pause(st->c, CURLPAUSE_CONT) != CURLE_OK)
            rc = REG_E_IO;
    }
    while (!rc && !st->paused && st->dst_len < max) {
        if (st->c && !st->done) {
            rc = stream_pump(st, st->dst_len == 0);
            if (!rc && st->dst_len > 0 && !st->done &&
                (curl_multi_poll(st->m, NULL, 0, 0, &nfds) != CURLM_OK || nfds == 0))
                break; /* hand out what there is rather than wait for more */
            continue;
        }
        if (st->dst_len > 0)
            break;
        if (st->c && st->cc == CURLE_OK) { /* the end of the range */
            if (st->len && st->base + st->got < st->len) {
                log_error("s3: GET %s: body ended early", st->key);
                rc = REG_E_IO;
            }
            break;
        }
        /* The connection failed mid-way: ask again for the rest; the bytes
         * of a blob never change. */
        if (st->c) {
            log_warn("s3: GET %s: %s after %" PRIu64 " bytes, resuming", st->key,
                     curl_easy_strerror(st->cc), st->pos);
            stream_stop(st);
        }
        if (++st->retries > TRIES) {
            rc = REG_E_IO;
            break;
        }
        rc = stream_start(st);
    }
out:
    if (st->spill_len == 0)
        st->spill_off = 0;
    /* What the current request delivered and was handed out or kept. */
    *n = rc ? 0 : st->dst_len;
    st->pos += *n;
    st->dst = NULL;
    return rc;
}

void s3_stream_close(struct s3_stream *st)
{
    if (!st)
        return;
    if (st->c) {
        curl_multi_remove_handle(st->m, st->c);
        curl_easy_cleanup(st->c);
    }
    if (st->m)
        curl_multi_cleanup(st->m);
    curl_slist_free_all(st->h);
    free(st->spill);
    free(st);
}

/* ---- presigned URLs ------------------------------------------------------------------- */

static void hmac256(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int n = 32;

    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &n);
}

static void hex32(const unsigned char *in, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    int i;

    for (i = 0; i < 32; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[64] = '\0';
}

int s3_presign_get(struct s3 *s, const char *key, unsigned expires, char **url)
{
    char full[1400], path[URL_MAX], host[600], cred[400], query[URL_MAX], amzdate[20], day[10];
    char canon[2 * URL_MAX], sts[512], hash[65], sig[65], secret[140], *u;
    const char *h = strstr(s->base, "://") + 3, *slash = strchr(h, '/');
    unsigned char k[32], digest[32];
    time_t now = time(NULL);
    struct tm tm;
    size_t need;
    int n;

    *url = NULL;
    gmtime_r(&now, &tm);
    strftime(amzdate, sizeof(amzdate), "%Y%m%dT%H%M%SZ", &tm);
    strftime(day, sizeof(day), "%Y%m%d", &tm);
    n = snprintf(full, sizeof(full), "%s%s", s->cfg.prefix, key);
    if (n < 0 || (size_t)n >= sizeof(full) || !uri_encode(full, 1, path, sizeof(path)))
        return REG_E_INTERNAL;
    /* The host as the client will send it, and the bucket's path (path style). */
    n = snprintf(host, sizeof(host), "%.*s", slash ? (int)(slash - h) : (int)strlen(h), h);
    if (n < 0 || (size_t)n >= sizeof(host))
        return REG_E_INTERNAL;
    n = snprintf(cred, sizeof(cred), "%s/%s/%s/s3/aws4_request", s->cfg.access_key, day,
                 s->cfg.region);
    if (n < 0 || (size_t)n >= sizeof(cred) || !uri_encode(cred, 0, full, sizeof(full)))
        return REG_E_INTERNAL;
    /* Parameters in sorted order, as the canonical request wants them. */
    n = snprintf(query, sizeof(query),
                 "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=%s&X-Amz-Date=%s"
                 "&X-Amz-Expires=%u&X-Amz-SignedHeaders=host",
                 full, amzdate, expires);
    if (n < 0 || (size_t)n >= sizeof(query))
        return REG_E_INTERNAL;
    n = snprintf(canon, sizeof(canon), "GET\n%s/%s\n%s\nhost:%s\n\nhost\nUNSIGNED-PAYLOAD",
                 slash ? slash : "", path, query, host);
    if (n < 0 || (size_t)n >= sizeof(canon))
        return REG_E_INTERNAL;
    SHA256((const unsigned char *)canon, (size_t)n, digest);
    hex32(digest, hash);
    snprintf(sts, sizeof(sts), "AWS4-HMAC-SHA256\n%s\n%s/%s/s3/aws4_request\n%s", amzdate, day,
             s->cfg.region, hash);
    snprintf(secret, sizeof(secret), "AWS4%s", s->cfg.secret_key);
    hmac256(secret, strlen(secret), day, k);
    hmac256(k, 32, s->cfg.region, k);
    hmac256(k, 32, "s3", k);
    hmac256(k, 32, "aws4_request", k);
    hmac256(k, 32, sts, digest);
    hex32(digest, sig);
    explicit_bzero(secret, sizeof(secret));
    explicit_bzero(k, sizeof(k));
    need = strlen(s->base) + 1 + strlen(path) + 1 + strlen(query) + 17 + 64 + 1;
    u = malloc(need);
    if (!u)
        return REG_E_NOMEM;
    snprintf(u, need, "%s/%s?%s&X-Amz-Signature=%s", s->base, path, query, sig);
    *url = u;
    return REG_OK;
}
