#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "../api/api.h"
#include "../api/router.h"
#include "../auth/auth.h"
#include "../common/err.h"
#include "../common/log.h"
#include "metrics.h"

/* Threads for slow work (bcrypt, a blob's final fsync), so that the
 * threads serving connections never wait for it. */
#define WORKERS 2

enum job_kind { JOB_AUTH, JOB_FINISH };

struct job {
    struct job *next;
    struct req *r;
    const char *url; /* libmicrohttpd's, lives as long as the request */
    enum job_kind kind;
};

/* A connection as the header deadline sees it (see reaper). */
struct conn {
    struct conn *prev, *next;
    int fd;          /* libmicrohttpd's socket: shut down, never closed, here */
    time_t deadline; /* monotonic seconds by which headers must be in; 0 = none */
};

struct http_server {
    struct MHD_Daemon *d;
    struct registry *reg;
    int fd; /* listening socket */
    unsigned port;
    atomic_uint in_flight;
    unsigned timeout, header_timeout;
    pthread_mutex_t conns_lock; /* guards conns and every deadline */
    struct conn conns;          /* list head */
    pthread_t reaper;
    int reaper_started;
    atomic_int stopping;
    atomic_ullong requests; /* numbers requests for the access log */
    pthread_mutex_t jobs_lock;
    pthread_cond_t jobs_cond;
    struct job *jobs, **jobs_tail; /* blob finishes for the workers, in order */
    struct job *auth, **auth_tail; /* logins for the workers, after those */
    unsigned nauth;                /* logins queued */
    pthread_t workers[WORKERS];
    int nworkers;
    size_t send_budget;          /* bytes blob bodies may buffer together */
    atomic_size_t send_buffered; /* bytes they buffer now */
    atomic_uint connections;     /* open */
    int metrics;                 /* /metrics is served here */
    int metrics_only;            /* and nothing else */
};

static time_t mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* Set the deadline of connection c (its socket context). */
static void conn_deadline(struct http_server *s, struct MHD_Connection *c, time_t after)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct conn *k = ci ? ci->socket_context : NULL;

    if (!k || !s->header_timeout)
        return;
    pthread_mutex_lock(&s->conns_lock);
    k->deadline = after ? mono_now() + after : 0;
    pthread_mutex_unlock(&s->conns_lock);
}

struct hdr {
    struct hdr *next;
    char *name;
    char *value;
};

struct pool_block {
    struct pool_block *next;
    size_t used, cap;
    max_align_t data[];
};

struct req {
    struct http_server *srv;
    struct MHD_Connection *conn;
    const char *method; /* libmicrohttpd's, lives as long as the request */
    char *path;         /* copy, for the access log */
    struct route rt;
    const struct handler *h;
    int err;          /* error raised while the body streamed in */
    struct hdr *hdrs; /* reply headers */
    int begun;        /* routed and handler begun */
    int replied;
    unsigned status;
    unsigned long long bytes; /* reply body size */
    void *state;
    void (*done)(void *state, int aborted);
    struct pool_block *pool;
    struct timespec start;
    struct auth_identity id; /* who is calling (anonymous when auth is off) */
    char client[64];         /* peer address */
    int seen;                /* on_access has run for this request */
    unsigned long long seq;  /* the request's number in the access log */
    int auth_done;           /* identified on a worker; auth_rc is the outcome */
    int auth_rc;
    int parked;                 /* suspended while a worker runs slow work for it */
    int waiting;                /* suspended by its handler's begin (req_suspend) */
    int at_end;                 /* the whole request is in: parking is safe */
    int on_worker;              /* a reply made now is kept for the resume */
    struct MHD_Response *ready; /* that reply */
    unsigned ready_status;
    int bad_target;    /* the raw request target holds a control character */
    int routed;        /* rt names an endpoint (for the metrics' route label) */
    uint64_t bytes_in; /* request body bytes received */
};

#define POOL_BLOCK 4096

void *req_alloc(struct req *r, size_t size)
{
    struct pool_block *b = r->pool;
    size_t need = (size + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
    void *p;

    if (!b || b->cap - b->used < need) {
        size_t cap = need > POOL_BLOCK ? need : POOL_BLOCK;

        b = malloc(sizeof(*b) + cap);
        if (!b)
            return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = r->pool;
        r->pool = b;
    }
    p = (char *)b->data + b->used;
    b->used += need;
    return p;
}

char *req_printf(struct req *r, const char *fmt, ...)
{
    va_list ap;
    int n;
    char *s;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    s = req_alloc(r, (size_t)n + 1);
    if (!s)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

const char *req_method(const struct req *r)
{
    return r->method;
}

int req_is_head(const struct req *r)
{
    return strcmp(r->method, "HEAD") == 0;
}

const char *req_header(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *req_query(struct req *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

struct registry *req_registry(struct req *r)
{
    return r->srv->reg;
}

struct query_all {
    const char *name;
    const char **out;
    size_t max, n;
};

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct query_all *q = cls;

    (void)kind;
    if (value && !strcmp(key, q->name) && q->n < q->max)
        q->out[q->n++] = value;
    return MHD_YES;
}

size_t req_query_all(struct req *r, const char *name, const char **out, size_t max)
{
    struct query_all q = {name, out, max, 0};

    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_arg, &q);
    return q.n;
}

const char *req_client(struct req *r)
{
    return r->client;
}

int req_may(struct req *r, const char *repo, unsigned action)
{
    struct auth *a = r->srv->reg->auth;

    return auth_mode(a) == AUTH_NONE || (auth_rights(a, &r->id, repo) & action) == action;
}

const struct route *req_route(struct req *r)
{
    return &r->rt;
}

void req_set_state(struct req *r, void *state, void (*done)(void *state, int aborted))
{
    r->state = state;
    r->done = done;
}

void *req_state(struct req *r)
{
    return r->state;
}

int req_set_header(struct req *r, const char *name, const char *value)
{
    struct hdr *h;

    /* value is often a req_printf that failed. */
    if (!value)
        return REG_E_NOMEM;
    h = req_alloc(r, sizeof(*h));
    if (!h)
        return REG_E_NOMEM;
    h->name = req_printf(r, "%s", name);
    h->value = req_printf(r, "%s", value);
    if (!h->name || !h->value)
        return REG_E_NOMEM;
    h->next = r->hdrs;
    r->hdrs = h;
    return REG_OK;
}

int req_replied(const struct req *r)
{
    return r->replied;
}

static void queue(struct req *r, unsigned status, struct MHD_Response *resp, const char *ctype,
                  unsigned long long bytes)
{
    struct hdr *h;

    if (!resp) {
        log_error("cannot create response");
        r->replied = 1;
        r->status = 500;
        return;
    }
    /* Release handler state (an upload session) before the client can see
     * the reply and send its next request, which may need that state. */
    if (r->done) {
        r->done(r->state, 0);
        r->done = NULL;
    }
    MHD_add_response_header(resp, "Docker-Distribution-API-Version", "registry/2.0");
    if (ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    for (h = r->hdrs; h; h = h->next)
        MHD_add_response_header(resp, h->name, h->value);
    if (r->on_worker) {
        /* Only libmicrohttpd's own threads may queue: kept for the resume. */
        r->ready = resp;
        r->ready_status = status;
    } else {
        if (MHD_queue_response(r->conn, status, resp) != MHD_YES)
            log_error("cannot queue response");
        MHD_destroy_response(resp);
    }
    r->replied = 1;
    r->status = status;
    r->bytes = bytes;
}

void req_reply_buf(struct req *r, unsigned status, const char *content_type, const void *buf,
                   size_t len)
{
    struct MHD_Response *resp;

    if (r->replied)
        return;
    resp = MHD_create_response_from_buffer(len, (void *)buf, MHD_RESPMEM_MUST_COPY);
    queue(r, status, resp, content_type, len);
}

void req_reply_take(struct req *r, unsigned status, const char *content_type, void *buf, size_t len)
{
    struct MHD_Response *resp;

    if (r->replied) {
        free(buf);
        return;
    }
    resp = MHD_create_response_from_buffer(len, buf, MHD_RESPMEM_MUST_FREE);
    if (!resp)
        free(buf);
    queue(r, status, resp, content_type, len);
}

/* Never called: libmicrohttpd sends no body for a HEAD. */
static ssize_t no_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)cls;
    (void)pos;
    (void)buf;
    (void)max;
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

void req_reply_head(struct req *r, unsigned status, const char *content_type, uint64_t len)
{
    if (r->replied)
        return;
    if (!req_is_head(r)) {
        log_error("a body-less reply to %s", r->method);
        req_reply_buf(r, 500, NULL, "", 0);
        return;
    }
    queue(r, status, MHD_create_response_from_callback(len, 4096, no_body, NULL, NULL),
          content_type, 0);
}

void req_reply(struct req *r, unsigned status)
{
    req_reply_buf(r, status, NULL, "", 0);
}

/* Blob bodies. sendfile looks cheapest, but on the machines we measured
 * (virtualised, loopback) its splice path cost more CPU per byte than
 * pread into a 1 MiB buffer and send() from it: 0.31-0.34 against 0.55-0.64
 * CPU-seconds per GiB, and 3.0-3.3 GB/s against 1.6-1.9 (docs/benchmarks.md).
 * Those buffers come from one budget (send_buffers); past it, or for an
 * empty budget, a body goes by sendfile, which needs none. */
#define SEND_BLOCK ((size_t)1 << 20)

struct file_body {
    struct http_server *s;
    int fd;
    uint64_t off;    /* of the first byte to send */
    size_t reserved; /* bytes of the send budget held */
};

static ssize_t file_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct file_body *fb = cls;
    ssize_t n;

    do
        n = pread(fb->fd, buf, max, (off_t)(fb->off + pos));
    while (n < 0 && errno == EINTR);
    return n > 0 ? n : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void file_free(void *cls)
{
    struct file_body *fb = cls;

    close(fb->fd);
    atomic_fetch_sub(&fb->s->send_buffered, fb->reserved);
    free(fb);
}

/* A buffered response for fd when the budget allows, else NULL. */
static struct MHD_Response *buffered_response(struct http_server *s, int fd, uint64_t off,
                                              uint64_t len)
{
    size_t block = len < SEND_BLOCK ? (size_t)len : SEND_BLOCK;
    struct MHD_Response *resp = NULL;
    struct file_body *fb;

    if (atomic_fetch_add(&s->send_buffered, block) + block > s->send_budget) {
        atomic_fetch_sub(&s->send_buffered, block);
        return NULL;
    }
    fb = malloc(sizeof(*fb));
    if (fb) {
        fb->s = s;
        fb->fd = fd;
        fb->off = off;
        fb->reserved = block;
        resp = MHD_create_response_from_callback(len, block, file_read, fb, file_free);
        if (!resp)
            free(fb);
    }
    if (!resp)
        atomic_fetch_sub(&s->send_buffered, block);
    return resp;
}

struct stream_body {
    struct http_server *s;
    req_stream_fn read;
    void *arg;
    void (*done)(void *arg);
    size_t reserved; /* bytes of the send budget held */
};

_Static_assert(REQ_STREAM_END == MHD_CONTENT_READER_END_OF_STREAM &&
                   REQ_STREAM_ERROR == MHD_CONTENT_READER_END_WITH_ERROR &&
                   REQ_STREAM_UNKNOWN == MHD_SIZE_UNKNOWN,
               "req.h's stream codes are libmicrohttpd's");

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct stream_body *sb = cls;
    /* REQ_STREAM_WAIT (0): the reader suspended the connection, so
     * libmicrohttpd asks again only after the resume. */
    return sb->read(sb->arg, pos, buf, max);
}

static void stream_free(void *cls)
{
    struct stream_body *sb = cls;

    if (sb->done)
        sb->done(sb->arg);
    atomic_fetch_sub(&sb->s->send_buffered, sb->reserved);
    free(sb);
}

int req_reply_stream(struct req *r, unsigned status, const char *content_type, uint64_t len,
                     size_t block, req_stream_fn read, void *arg, void (*done)(void *arg))
{
    struct http_server *s = r->srv;
    struct MHD_Response *resp = NULL;
    struct stream_body *sb;

    if (r->replied)
        return REG_E_INTERNAL;
    if (atomic_fetch_add(&s->send_buffered, block) + block > s->send_budget) {
        atomic_fetch_sub(&s->send_buffered, block);
        return REG_E_TOOMANY;
    }
    sb = malloc(sizeof(*sb));
    if (sb) {
        sb->s = s;
        sb->read = read;
        sb->arg = arg;
        sb->done = NULL; /* set once the response owns arg */
        sb->reserved = block;
        resp = MHD_create_response_from_callback(len, block, stream_read, sb, stream_free);
        if (!resp)
            free(sb);
    }
    if (!resp) {
        atomic_fetch_sub(&s->send_buffered, block);
        return REG_E_NOMEM;
    }
    sb->done = done;
    queue(r, status, resp, content_type, len == REQ_STREAM_UNKNOWN ? 0 : len);
    return REG_OK;
}

void req_reply_fd(struct req *r, unsigned status, const char *content_type, int fd, uint64_t off,
                  uint64_t len)
{
    struct MHD_Response *resp;

    if (r->replied || len == 0) {
        close(fd);
        if (!r->replied)
            req_reply_buf(r, status, content_type, "", 0);
        return;
    }
    resp = buffered_response(r->srv, fd, off, len);
    if (!resp) {
        resp = MHD_create_response_from_fd_at_offset64(len, fd, off);
        if (!resp)
            close(fd);
    }
    queue(r, status, resp, content_type, len);
}

static void peer_address(struct MHD_Connection *c, char *out, size_t size)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci ? ci->client_addr : NULL;

    snprintf(out, size, "unknown");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)size);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)size);
}

static struct req *req_new(struct http_server *s, struct MHD_Connection *c, const char *method,
                           const char *url)
{
    struct req *r = calloc(1, sizeof(*r));

    if (!r)
        return NULL;
    peer_address(c, r->client, sizeof(r->client));
    r->srv = s;
    r->conn = c;
    r->method = method;
    r->seq = atomic_fetch_add(&s->requests, 1) + 1;
    clock_gettime(CLOCK_MONOTONIC, &r->start);
    /* The query string stays out of the log: it may carry a token. */
    r->path = req_printf(r, "%.*s", (int)strcspn(url, "?"), url);
    if (!r->path) {
        free(r);
        return NULL;
    }
    return r;
}

static void req_free(struct req *r)
{
    struct pool_block *b = r->pool, *n;

    auth_identity_clear(&r->id);
    while (b) {
        n = b->next;
        free(b);
        b = n;
    }
    free(r);
}

/* Does the request announce a body? */
static int has_body(struct MHD_Connection *c)
{
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");

    if (MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding"))
        return 1;
    return cl && strcmp(cl, "0") != 0;
}

static int park(struct req *r, const char *url, enum job_kind kind);

/* The check every request passes through. Returns 1 when it answered (401,
 * 403 or 429), 2 when it parked the request to check on a worker. */
static int authorize(struct req *r)
{
    struct auth *a = r->srv->reg->auth;
    const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
    unsigned need;
    char challenge[2048];
    int rc, wide, known;

    if (auth_mode(a) == AUTH_NONE || r->rt.kind == ROUTE_TOKEN || r->rt.kind == ROUTE_HEALTHZ ||
        r->rt.kind == ROUTE_READYZ || r->rt.kind == ROUTE_METRICS)
        return 0; /* open to all: the token service, the probes and the metrics */
    need = router_rights(r->rt.kind, r->method, &wide);
    if (!r->auth_done && r->at_end && auth_is_slow(a, req_header(r, "Authorization")) &&
        park(r, NULL, JOB_AUTH))
        return 2;
    if (r->auth_done)
        rc = r->auth_rc;
    else
        rc = auth_identify(a, req_header(r, "Authorization"), r->client, &r->id);
    if (rc == REG_E_TOOMANY) {
        metrics_auth_failure(METRICS_AUTH_THROTTLED);
        req_set_header(r, "Retry-After", AUTH_RETRY_AFTER);
        api_error(r, rc, "too many failed logins from this address");
        return 1;
    }
    known = r->id.authenticated || r->id.has_token;
    if (!rc) {
        if (need == 0 && (known || (wide && auth_rights(a, &r->id, NULL) & ACL_CATALOG)))
            return 0;
        if (need && (auth_rights(a, &r->id, r->rt.name) & need) == need)
            return 0;
    }
    /* A known user without the right: 403 in basic mode; a token without
     * the scope: 401 so that the client asks for a better token. */
    if (!rc && known && auth_mode(a) == AUTH_BASIC) {
        metrics_auth_failure(METRICS_AUTH_DENIED);
        api_error(r, REG_E_DENIED, NULL);
        return 1;
    }
    metrics_auth_failure(rc      ? METRICS_AUTH_INVALID
                         : known ? METRICS_AUTH_DENIED
                                 : METRICS_AUTH_MISSING);
    if (auth_challenge(a, host, r->srv->reg->tls ? "https" : "http", wide ? NULL : r->rt.name,
                       wide ? ACL_CATALOG : need, !rc && known, challenge,
                       sizeof(challenge)) == REG_OK)
        req_set_header(r, "WWW-Authenticate", challenge);
    api_error(r, REG_E_UNAUTHORIZED, NULL);
    return 1;
}

/* [storage] read_only: every write under /v2/ is refused; reads, the
 * token service and the probes go on. */
static int refused_read_only(const struct req *r)
{
    if (!atomic_load(&r->srv->reg->read_only) || r->rt.kind == ROUTE_TOKEN ||
        r->rt.kind == ROUTE_HEALTHZ || r->rt.kind == ROUTE_READYZ)
        return 0;
    return !strcmp(r->method, "POST") || !strcmp(r->method, "PUT") || !strcmp(r->method, "PATCH") ||
           !strcmp(r->method, "DELETE");
}

static void run_begin(struct req *r)
{
    int rc;

    if (r->h->begin) {
        rc = r->h->begin(r, &r->rt);
        if (rc && !r->replied)
            api_error(r, rc, NULL);
    }
}

void req_suspend(struct req *r)
{
    r->waiting = !r->replied; /* from begin: it runs again after the resume */
    MHD_suspend_connection(r->conn);
}

void req_resume(struct req *r)
{
    MHD_resume_connection(r->conn);
}

static void begin(struct req *r, const char *url)
{
    int rc;

    r->begun = 1;
    if (r->auth_done)
        goto authorized; /* routed before it was parked */
    rc = router_match(url, &r->rt);
    r->routed = rc == REG_OK;
    if (!rc && (r->rt.kind == ROUTE_METRICS ? !r->srv->metrics : r->srv->metrics_only))
        rc = REG_E_NOT_FOUND; /* not on this listener */
    if (rc) {
        api_error(r, rc, NULL);
        return;
    }
    r->h = r->rt.kind == ROUTE_METRICS ? metrics_handler(r->method)
                                       : api_handler(r->rt.kind, r->method);
    if (!r->h) {
        api_error(r, REG_E_METHOD, NULL);
        return;
    }
authorized:
    rc = authorize(r);
    if (rc == 2)
        r->begun = 0; /* again once the worker has identified the caller */
    if (rc)
        return;
    if (refused_read_only(r)) {
        api_error(r, REG_E_READ_ONLY, NULL);
        return;
    }
    run_begin(r);
}

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Whether the request target, as sent, holds a control character, raw or
 * percent-encoded. libmicrohttpd decodes the path and the query in place
 * and hands us C strings, so a %00 would silently cut them short
 * (".../manifests/latest%00evil" would name "latest"); only the raw target
 * shows it. Decodes exactly what libmicrohttpd decodes: '%' and two hex
 * digits. */
static int target_has_control(const char *uri)
{
    const unsigned char *p = (const unsigned char *)uri;
    int c, hi, lo;

    for (; *p; p++) {
        c = *p;
        if (c == '%') {
            hi = hex_value(p[1]);
            lo = hi < 0 ? -1 : hex_value(p[2]);
            if (lo >= 0) {
                c = hi << 4 | lo;
                p += 2;
            }
        }
        if (c < 0x20 || c == 0x7f)
            return 1;
    }
    return 0;
}

/* libmicrohttpd calls this with the raw request target before it parses
 * the headers or decodes anything; what it returns becomes the request's
 * context, and on_completed runs for it even when libmicrohttpd answers
 * the request itself. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct http_server *s = cls;
    struct req *r = req_new(cls, c, NULL, uri);

    /* The request line is in: its headers have header_timeout to follow. */
    conn_deadline(s, c, s->header_timeout);
    if (r)
        r->bad_target = target_has_control(uri);
    return r;
}

struct header_scan {
    const char *content_length; /* the first value */
    int conflict;               /* another Content-Length with a different value */
    unsigned te, host;          /* Transfer-Encoding and Host headers seen */
    int te_other;               /* a Transfer-Encoding other than chunked */
    int bad_name;               /* a header name with blanks ("Content-Length :") */
};

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    struct header_scan *h = cls;

    (void)kind;
    if (!value)
        value = "";
    /* libmicrohttpd 0.9.75 keeps blanks before the colon in the name, so
     * "Transfer-Encoding : chunked" is no framing header to it; a proxy
     * may well read it as one. */
    if (!key[0] || strpbrk(key, " \t"))
        h->bad_name = 1;
    if (!strcasecmp(key, "Content-Length")) {
        if (!h->content_length)
            h->content_length = value;
        else if (strcmp(h->content_length, value) != 0)
            h->conflict = 1;
    } else if (!strcasecmp(key, "Transfer-Encoding")) {
        h->te++;
        /* libmicrohttpd's own test: anything else is not de-chunked. */
        if (strcasecmp(value, "chunked") != 0)
            h->te_other = 1;
    } else if (!strcasecmp(key, "Host")) {
        h->host++;
    }
    return MHD_YES;
}

/* What libmicrohttpd 0.9.75 lets through and a proxy in front of us might
 * read differently (request smuggling), or what would make it wait for a
 * body it will never delimit. REG_OK or the error to answer, with a
 * detail. */
static int check_framing(struct req *r, const char *version, const char **detail)
{
    struct header_scan h;

    memset(&h, 0, sizeof(h));
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, scan_header, &h);
    if (r->bad_target) {
        *detail = "control character in the request path or query";
        return REG_E_BAD_REQUEST;
    }
    if (strcmp(version, MHD_HTTP_VERSION_1_0) != 0 && h.host == 0) {
        *detail = "HTTP/1.1 request without Host";
        return REG_E_BAD_REQUEST;
    }
    if (h.bad_name) {
        *detail = "blank in a header name";
        return REG_E_BAD_REQUEST;
    }
    if (h.host > 1) {
        *detail = "more than one Host header";
        return REG_E_BAD_REQUEST;
    }
    if (h.te > 1 || h.te_other) {
        *detail = "only Transfer-Encoding: chunked is supported";
        return REG_E_NOT_IMPLEMENTED;
    }
    if (h.te && h.content_length) {
        *detail = "both Transfer-Encoding and Content-Length";
        return REG_E_BAD_REQUEST;
    }
    if (h.conflict) {
        *detail = "conflicting Content-Length headers";
        return REG_E_SIZE_INVALID;
    }
    return REG_OK;
}

/* libmicrohttpd calls this once with the headers, once per piece of body,
 * and once more at the end. A reply queued in the first call makes it
 * close the connection, so requests without a body start at the end; those
 * with one start at once, so that a bad request is refused before its body
 * is read. */
/* The end of a request: the handler's answer, or the error its body
 * raised. */
static void finish(struct req *r)
{
    if (!r->replied) {
        if (r->err)
            api_error(r, r->err, NULL);
        else if (r->h && r->h->end)
            r->h->end(r);
    }
    if (!r->replied)
        api_error(r, REG_E_INTERNAL, "handler gave no reply");
}

/* Ends that may wait on a disk flush or bcrypt: a blob's last PUT (and a
 * monolithic POST), and the token service. */
static int slow_end(const struct req *r)
{
    if (!r->h || r->err)
        return 0;
    return r->rt.kind == ROUTE_TOKEN || (r->rt.kind == ROUTE_UPLOAD && !strcmp(r->method, "PUT")) ||
           (r->rt.kind == ROUTE_UPLOAD_START && !strcmp(r->method, "POST") && has_body(r->conn));
}

/* Suspend r's connection and hand the slow part to a worker; it resumes
 * the connection when done, and on_access goes on from there. */
/* Logins waiting for a worker, at most: past it a login is refused (429)
 * rather than queued, so wrong passwords cannot pile up without end. */
#define AUTH_QUEUE_MAX 64

/* Suspend r's connection and hand the slow part to a worker, which resumes
 * the connection when done; on_access goes on from there. Returns 0 when
 * the caller must do the work itself (the server is stopping: nothing may
 * stay suspended; or no memory). A login over AUTH_QUEUE_MAX is answered
 * at once with REG_E_TOOMANY. Blob finishes go before logins. */
static int park(struct req *r, const char *url, enum job_kind kind)
{
    struct http_server *s = r->srv;
    struct job *j = calloc(1, sizeof(*j)), **tail;
    int parked = 0;

    if (!j)
        return 0;
    j->r = r;
    j->url = url;
    j->kind = kind;
    pthread_mutex_lock(&s->jobs_lock);
    if (kind == JOB_AUTH && s->nauth >= AUTH_QUEUE_MAX) {
        r->auth_rc = REG_E_TOOMANY;
        r->auth_done = 1;
    } else if (!atomic_load(&s->stopping)) {
        r->parked = 1;
        MHD_suspend_connection(r->conn);
        tail = kind == JOB_AUTH ? s->auth_tail : s->jobs_tail;
        *tail = j;
        if (kind == JOB_AUTH) {
            s->auth_tail = &j->next;
            s->nauth++;
        } else {
            s->jobs_tail = &j->next;
        }
        pthread_cond_signal(&s->jobs_cond);
        parked = 1;
    }
    pthread_mutex_unlock(&s->jobs_lock);
    if (!parked)
        free(j);
    return parked;
}

/* The next job, blob finishes first; NULL when stopping and none is left. */
static struct job *next_job(struct http_server *s)
{
    struct job *j;

    pthread_mutex_lock(&s->jobs_lock);
    while (!s->jobs && !s->auth && !atomic_load(&s->stopping))
        pthread_cond_wait(&s->jobs_cond, &s->jobs_lock);
    j = s->jobs ? s->jobs : s->auth;
    if (j == s->jobs && j) {
        s->jobs = j->next;
        if (!s->jobs)
            s->jobs_tail = &s->jobs;
        s->auth_tail = &s->auth;
    } else if (j) {
        s->auth = j->next;
        if (!s->auth)
            s->auth_tail = &s->auth;
        s->nauth--;
    }
    pthread_mutex_unlock(&s->jobs_lock);
    return j;
}

static void *worker(void *arg)
{
    struct http_server *s = arg;
    struct job *j;

    while ((j = next_job(s)) != NULL) {
        j->r->on_worker = 1;
        if (j->kind == JOB_AUTH) {
            j->r->auth_rc = auth_identify(s->reg->auth, req_header(j->r, "Authorization"),
                                          j->r->client, &j->r->id);
            j->r->auth_done = 1;
        } else {
            finish(j->r);
        }
        j->r->on_worker = 0;
        MHD_resume_connection(j->r->conn);
        free(j);
    }
    return NULL;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *data,
                                 size_t *data_size, void **con_cls)
{
    struct http_server *s = cls;
    struct req *r = *con_cls;
    const char *detail = NULL;
    int rc;

    if (!r) {
        /* on_uri could not allocate: try once more, without its check. */
        r = req_new(s, c, method, url);
        if (!r)
            return MHD_NO;
        *con_cls = r;
    }
    if (!r->seen) {
        /* In flight from here on, not from the request line: a client
         * still sending its headers holds no request a shutdown waits for. */
        r->seen = 1;
        conn_deadline(s, c, 0); /* headers in: the idle timeout rules now */
        atomic_fetch_add(&s->in_flight, 1);
        r->method = method;
        rc = check_framing(r, version, &detail);
        if (rc) {
            r->begun = 1;
            api_error(r, rc, detail);
            return MHD_YES;
        }
        if (has_body(c))
            begin(r, url);
        return MHD_YES;
    }
    if (r->parked) {
        /* Resumed: the worker's reply goes out now, or (after an identity
         * check) the request goes on. */
        r->parked = 0;
        if (r->ready) {
            if (MHD_queue_response(c, r->ready_status, r->ready) != MHD_YES)
                log_error("cannot queue response");
            MHD_destroy_response(r->ready);
            r->ready = NULL;
            return MHD_YES;
        }
        if (r->replied)
            return MHD_NO; /* its reply could not even be made: close */
    }
    /* Only a request that is all in may be parked: libmicrohttpd calls
     * again after a resume, and a call without data mid-request would look
     * like the end. A body's first call checks its credentials here. */
    r->at_end = *data_size == 0;
    if (!r->begun) {
        begin(r, url);
    } else if (r->waiting) { /* resumed: its begin goes on */
        r->waiting = 0;
        run_begin(r);
    }
    if (r->parked || r->waiting)
        return MHD_YES;
    if (*data_size) {
        r->bytes_in += *data_size;
        if (!r->replied && !r->err && r->h && r->h->body) {
            rc = r->h->body(r, data, *data_size);
            r->err = rc;
            /* A body past its cap is not read to its end: libmicrohttpd
             * (0.9.75) cannot send a reply mid-body, and reading an
             * unbounded body only to say 413 is what a hostile client
             * wants. Close. Other errors (a full disk) are answered once
             * the body is in, so the client sees why. */
            if (rc == REG_E_TOO_LARGE) {
                log_info("%s %s: body over its cap, connection closed", r->method, r->path);
                return MHD_NO;
            }
        }
        *data_size = 0;
        return MHD_YES;
    }
    if (!r->replied && slow_end(r) && park(r, url, JOB_FINISH))
        return MHD_YES;
    finish(r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *s = cls;
    struct req *r = *con_cls;
    struct timespec now;
    uint64_t ns;
    unsigned status;
    double ms;

    if (!r)
        return;
    *con_cls = NULL;
    if (r->ready) /* made on a worker for a client that went away */
        MHD_destroy_response(r->ready);
    /* Kept alive: idle up to the timeout, then the next request's headers. */
    conn_deadline(s, c, (time_t)s->timeout + s->header_timeout);
    if (r->done)
        r->done(r->state, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    clock_gettime(CLOCK_MONOTONIC, &now);
    ns = (uint64_t)((int64_t)(now.tv_sec - r->start.tv_sec) * 1000000000 +
                    (now.tv_nsec - r->start.tv_nsec));
    ms = (double)ns / 1e6;
    status = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? r->status : 499;
    /* Without a method, libmicrohttpd refused the request itself (status 0:
     * not ours to know). */
    {
        struct log_request q = {r->client, r->id.user, r->seq,   r->method ? r->method : "-",
                                r->path,   status,     r->bytes, ms};

        log_access(&q);
    }
    /* Only requests whose headers came in: a connection that closed before
     * is no request. HEAD answers carry no body. */
    if (r->seen)
        metrics_request(r->method, r->routed ? (int)r->rt.kind : -1, status, ns, r->bytes_in,
                        r->method && !strcmp(r->method, "HEAD") ? 0 : r->bytes);
    if (r->seen)
        atomic_fetch_sub(&s->in_flight, 1);
    req_free(r);
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    struct http_server *s = cls;
    struct conn *k = *socket_context;

    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add_explicit(&s->connections, 1, memory_order_relaxed);
    else
        atomic_fetch_sub_explicit(&s->connections, 1, memory_order_relaxed);
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

        if (!ci)
            return; /* no deadline for this one; nothing else depends on it */
        k = calloc(1, sizeof(*k));
        if (!k)
            return;
        k->fd = ci->connect_fd;
        pthread_mutex_lock(&s->conns_lock);
        k->deadline = s->header_timeout ? mono_now() + s->header_timeout : 0;
        k->next = s->conns.next;
        k->prev = &s->conns;
        s->conns.next->prev = k;
        s->conns.next = k;
        pthread_mutex_unlock(&s->conns_lock);
        *socket_context = k;
        return;
    }
    if (!k)
        return;
    /* libmicrohttpd closes the socket after this returns: under the lock,
     * the reaper never shuts down a descriptor that was reused. */
    pthread_mutex_lock(&s->conns_lock);
    k->prev->next = k->next;
    k->next->prev = k->prev;
    pthread_mutex_unlock(&s->conns_lock);
    free(k);
    *socket_context = NULL;
}

/* The header deadline. libmicrohttpd's timeout only measures idleness, so a
 * client that sends a header line every few seconds (slowloris) would hold
 * its connection for ever. Once a second, connections past their deadline
 * are shut down; libmicrohttpd then sees the end of the stream and closes
 * them itself, on its own thread. */
static void *reaper(void *arg)
{
    struct http_server *s = arg;
    struct timespec second = {1, 0};
    unsigned closed;
    struct conn *k;
    time_t now;

    while (!atomic_load(&s->stopping)) {
        nanosleep(&second, NULL);
        closed = 0;
        now = mono_now();
        pthread_mutex_lock(&s->conns_lock);
        for (k = s->conns.next; k != &s->conns; k = k->next)
            if (k->deadline && now > k->deadline) {
                shutdown(k->fd, SHUT_RDWR);
                k->deadline = 0;
                closed++;
            }
        pthread_mutex_unlock(&s->conns_lock);
        if (closed)
            log_warn("closed %u connections that did not send their request headers within %us",
                     closed, s->header_timeout);
    }
    return NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char buf[512];
    size_t n;

    (void)cls;
    vsnprintf(buf, sizeof(buf), fmt, ap);
    n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    log_debug("microhttpd: %s", buf);
}

/* Split "host:port" or "[v6]:port". */
static int split_listen(const char *listen, char *host, size_t hostsize, char *port,
                        size_t portsize)
{
    const char *colon;
    size_t hl;

    if (listen[0] == '[') {
        const char *end = strchr(listen, ']');

        if (!end || end[1] != ':')
            return REG_E_CONFIG;
        hl = (size_t)(end - listen - 1);
        listen++;
        colon = end + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return REG_E_CONFIG;
        hl = (size_t)(colon - listen);
    }
    if (hl >= hostsize || strlen(colon + 1) >= portsize || colon[1] == '\0')
        return REG_E_CONFIG;
    memcpy(host, listen, hl);
    host[hl] = '\0';
    snprintf(port, portsize, "%s", colon + 1);
    return REG_OK;
}

static int open_listener(const char *addr, unsigned *port_out, int *fd_out)
{
    char host[256], port[16];
    struct addrinfo hints, *res = NULL, *ai;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = -1, one = 1, rc;

    rc = split_listen(addr, host, sizeof(host), port, sizeof(port));
    if (rc)
        return rc;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if (getaddrinfo(host[0] ? host : NULL, port, &hints, &res) != 0) {
        log_error("listen %s: cannot resolve", addr);
        return REG_E_CONFIG;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        log_error("listen %s: %s", addr, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return REG_E_CONFIG;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        return REG_E_CONFIG;
    }
    *port_out = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                               : ((struct sockaddr_in *)&ss)->sin_port);
    *fd_out = fd;
    return REG_OK;
}

int http_start(const struct http_opts *o, struct registry *reg, struct http_server **out)
{
    struct http_server *s = calloc(1, sizeof(*s));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG | (o->tls_cert ? MHD_USE_TLS : 0);
    struct MHD_OptionItem tls[] = {
        {o->tls_cert ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, 0, (void *)o->tls_cert},
        {o->tls_cert ? MHD_OPTION_HTTPS_MEM_KEY : MHD_OPTION_END, 0, (void *)o->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    int rc = REG_E_NOMEM;

    *out = NULL;
    if (!s)
        goto out;
    s->reg = reg;
    s->fd = -1;
    s->timeout = o->timeout;
    s->header_timeout = o->header_timeout;
    s->send_budget = o->send_buffers;
    s->metrics = o->metrics;
    s->metrics_only = o->metrics_only;
    pthread_mutex_init(&s->jobs_lock, NULL);
    pthread_cond_init(&s->jobs_cond, NULL);
    s->jobs_tail = &s->jobs;
    s->auth_tail = &s->auth;
    pthread_mutex_init(&s->conns_lock, NULL);
    s->conns.next = s->conns.prev = &s->conns;
    rc = open_listener(o->listen, &s->port, &s->fd);
    if (rc)
        goto out;
    s->d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_LISTEN_SOCKET, s->fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(o->threads ? o->threads : 1),
        MHD_OPTION_CONNECTION_LIMIT, o->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, o->timeout,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, o->connection_memory,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, o->max_per_address, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
        MHD_OPTION_URI_LOG_CALLBACK, on_uri, s, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
        MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
    if (!s->d) {
        log_error("cannot start the HTTP daemon on %s", o->listen);
        rc = REG_E_CONFIG;
        goto out;
    }
    s->fd = -1; /* libmicrohttpd owns the listening socket now */
    rc = REG_OK;
    if (s->header_timeout && pthread_create(&s->reaper, NULL, reaper, s) == 0)
        s->reaper_started = 1;
    /* The metrics listener has no slow work to hand off. */
    while (!s->metrics_only && s->nworkers < WORKERS &&
           pthread_create(&s->workers[s->nworkers], NULL, worker, s) == 0)
        s->nworkers++;
out:
    if (rc && s) {
        if (s->fd >= 0)
            close(s->fd);
        pthread_mutex_destroy(&s->conns_lock);
        free(s);
        s = NULL;
    }
    *out = s;
    return rc;
}

unsigned http_port(const struct http_server *s)
{
    return s->port;
}

void http_quiesce(struct http_server *s)
{
    MHD_socket fd = MHD_quiesce_daemon(s->d);

    if (fd != MHD_INVALID_SOCKET)
        close(fd);
}

unsigned http_in_flight(const struct http_server *s)
{
    return atomic_load(&((struct http_server *)s)->in_flight);
}

unsigned http_connections(const struct http_server *s)
{
    return atomic_load_explicit(&((struct http_server *)s)->connections, memory_order_relaxed);
}

void http_stop(struct http_server *s)
{
    if (!s)
        return;
    atomic_store(&s->stopping, 1);
    if (s->reaper_started)
        pthread_join(s->reaper, NULL);
    /* Workers finish what is queued (resuming those connections) first:
     * libmicrohttpd must not stop with a connection suspended. */
    pthread_mutex_lock(&s->jobs_lock);
    pthread_cond_broadcast(&s->jobs_cond);
    pthread_mutex_unlock(&s->jobs_lock);
    while (s->nworkers > 0)
        pthread_join(s->workers[--s->nworkers], NULL);
    MHD_stop_daemon(s->d);
    if (s->fd >= 0)
        close(s->fd);
    pthread_mutex_destroy(&s->conns_lock);
    pthread_mutex_destroy(&s->jobs_lock);
    pthread_cond_destroy(&s->jobs_cond);
    free(s);
}
