/* The upstream registry client (upstream.h) on libcurl. */
#include "upstream.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "../common/err.h"
#include "../common/log.h"

/* Tokens kept at most; past it expired ones go first, then the oldest. */
#define TOKENS_MAX 256
/* Largest token response and error body we read. */
#define SMALL_BODY_MAX (64 * 1024)
/* Longest WWW-Authenticate we keep. */
#define CHALLENGE_MAX 2048

static const char manifest_accept[] = "Accept: application/vnd.oci.image.index.v1+json, "
                                      "application/vnd.oci.image.manifest.v1+json, "
                                      "application/vnd.docker.distribution.manifest.list.v2+json, "
                                      "application/vnd.docker.distribution.manifest.v2+json";

struct token {
    char repo[256];
    char *value; /* the bearer token, malloc'd */
    time_t expires;
};

struct upstream {
    char url[512];
    char userpwd[520]; /* "user:password", "" when anonymous */
    char ca[4096];
    long connect_timeout, manifest_timeout, stall_timeout;
    const atomic_int *stop; /* upstream_opts.stop */
    pthread_mutex_t lock;   /* guards tokens and basic */
    struct token tokens[TOKENS_MAX];
    int basic; /* the upstream asked for Basic: send it at once from now on */
};

int upstream_new(const struct upstream_opts *o, struct upstream **out)
{
    struct upstream *u = calloc(1, sizeof(*u));

    *out = NULL;
    if (!u)
        return REG_E_NOMEM;
    snprintf(u->url, sizeof(u->url), "%s", o->url);
    if (o->username && o->username[0])
        snprintf(u->userpwd, sizeof(u->userpwd), "%s:%s", o->username,
                 o->password ? o->password : "");
    if (o->ca)
        snprintf(u->ca, sizeof(u->ca), "%s", o->ca);
    u->connect_timeout = o->connect_timeout;
    u->manifest_timeout = o->manifest_timeout;
    u->stall_timeout = o->stall_timeout;
    u->stop = o->stop;
    pthread_mutex_init(&u->lock, NULL);
    *out = u;
    return REG_OK;
}

void upstream_free(struct upstream *u)
{
    size_t i;

    if (!u)
        return;
    for (i = 0; i < TOKENS_MAX; i++)
        free(u->tokens[i].value);
    pthread_mutex_destroy(&u->lock);
    free(u);
}

const char *upstream_url(const struct upstream *u)
{
    return u->url;
}

/* ---- tokens -------------------------------------------------------------------- */

/* "Authorization: Bearer ..." for repo into buf when a live token is kept. */
static int token_header(struct upstream *u, const char *repo, char **out)
{
    time_t now = time(NULL);
    size_t i;

    *out = NULL;
    pthread_mutex_lock(&u->lock);
    for (i = 0; i < TOKENS_MAX; i++) {
        struct token *t = &u->tokens[i];

        if (t->value && t->expires > now && !strcmp(t->repo, repo)) {
            size_t n = strlen(t->value) + 32;

            *out = malloc(n);
            if (*out)
                snprintf(*out, n, "Authorization: Bearer %s", t->value);
            break;
        }
    }
    pthread_mutex_unlock(&u->lock);
    return *out ? REG_OK : REG_E_NOT_FOUND;
}

/* Keep value (taken) for repo until expires. */
static void token_keep(struct upstream *u, const char *repo, char *value, time_t expires)
{
    struct token *slot = NULL;
    time_t now = time(NULL);
    size_t i;

    if (strlen(repo) >= sizeof(slot->repo)) {
        free(value);
        return;
    }
    pthread_mutex_lock(&u->lock);
    for (i = 0; i < TOKENS_MAX; i++) {
        struct token *t = &u->tokens[i];

        if (!t->value || !strcmp(t->repo, repo) || t->expires <= now) {
            slot = t;
            break;
        }
        if (!slot || t->expires < slot->expires)
            slot = t;
    }
    free(slot->value);
    snprintf(slot->repo, sizeof(slot->repo), "%s", repo);
    slot->value = value;
    slot->expires = expires;
    pthread_mutex_unlock(&u->lock);
}

/* ---- one request ------------------------------------------------------------- */

struct buf {
    char *p;
    size_t len, cap, max;
};

static int buf_add(struct buf *b, const void *data, size_t len)
{
    if (len > b->max - b->len)
        return -1;
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        char *p;

        while (cap < b->len + len + 1)
            cap *= 2;
        p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    b->p[b->len] = '\0';
    return 0;
}

struct call {
    CURL *c;
    long status; /* of the response being read */
    char digest[DIGEST_STR_MAX];
    char content_type[128];
    uint64_t length; /* Content-Length, UINT64_MAX when none */
    char challenge[CHALLENGE_MAX];
    struct buf body; /* 2xx bodies when fn is NULL; error bodies, small */
    upstream_size_fn size_fn;
    upstream_data_fn fn; /* 2xx bodies of a blob */
    void *arg;
    int fn_rc;     /* what fn stopped the transfer with */
    int over;      /* a body over its cap */
    int told_size; /* size_fn has been called */
};

/* Copy a header's value (after "Name:") with its whitespace trimmed. */
static int header_value(const char *line, size_t len, const char *name, char *out, size_t size)
{
    size_t n = strlen(name), end;

    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return 0;
    line += n + 1;
    len -= n + 1;
    while (len && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    end = len;
    while (end && isspace((unsigned char)line[end - 1]))
        end--;
    if (end >= size)
        end = size - 1;
    memcpy(out, line, end);
    out[end] = '\0';
    return 1;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *user)
{
    struct call *k = user;
    size_t len = size * n;
    char num[32];

    if (len >= 5 && !strncmp(ptr, "HTTP/", 5)) { /* a new response (after a redirect) */
        k->digest[0] = k->content_type[0] = k->challenge[0] = '\0';
        k->length = UINT64_MAX;
        return len;
    }
    if (header_value(ptr, len, "Content-Length", num, sizeof(num))) {
        char *end;
        unsigned long long v = strtoull(num, &end, 10);

        if (num[0] >= '0' && num[0] <= '9' && *end == '\0')
            k->length = v;
    }
    header_value(ptr, len, "Docker-Content-Digest", k->digest, sizeof(k->digest));
    header_value(ptr, len, "Content-Type", k->content_type, sizeof(k->content_type));
    header_value(ptr, len, "WWW-Authenticate", k->challenge, sizeof(k->challenge));
    return len;
}

static size_t on_data(char *ptr, size_t size, size_t n, void *user)
{
    struct call *k = user;
    size_t len = size * n;
    long status = 0;

    curl_easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &status);
    if (status == 200 && k->fn) {
        if (!k->told_size) {
            k->told_size = 1;
            if (k->size_fn)
                k->size_fn(k->arg, k->length);
        }
        k->fn_rc = k->fn(k->arg, ptr, len);
        return k->fn_rc ? 0 : len;
    }
    if (status != 200 && k->body.len >= SMALL_BODY_MAX)
        return len; /* an error body: what we have is enough */
    if (buf_add(&k->body, ptr, len)) {
        k->over = 1;
        return 0;
    }
    return len;
}

/* The value of param in a challenge's list (realm="...", service="..."). */
static int challenge_param(const char *ch, const char *param, char *out, size_t size)
{
    size_t n = strlen(param);
    const char *p = ch;

    while ((p = strcasestr(p, param)) != NULL) {
        int at_start = p == ch || p[-1] == ' ' || p[-1] == ',';
        size_t i = 0;

        p += n;
        if (!at_start || *p != '=')
            continue;
        p++;
        if (*p == '"') {
            p++;
            while (*p && *p != '"' && i + 1 < size)
                out[i++] = *p++;
        } else {
            while (*p && *p != ',' && *p != ' ' && i + 1 < size)
                out[i++] = *p++;
        }
        out[i] = '\0';
        return 1;
    }
    return 0;
}

/* A transfer ends at once when the server stops (upstream_opts.stop). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    const struct upstream *u = arg;

    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return u->stop && atomic_load(u->stop);
}

static void common_options(struct upstream *u, CURL *c, struct call *k, long timeout)
{
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, u->connect_timeout);
    if (timeout)
        curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout);
    /* A blob may take long; one that stops moving may not. */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, u->stall_timeout);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "registry-proxy/1");
    if (u->ca[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, u->ca);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, k);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, k);
    if (u->stop) {
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, u);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
}

/* Ask the realm of a Bearer challenge for a pull token on repo. */
static int fetch_token(struct upstream *u, const char *repo, const char *challenge)
{
    char realm[1024], service[256] = "", scope[300], *url = NULL, *es = NULL, *esc = NULL;
    struct call k;
    json_t *root = NULL;
    const char *tok;
    json_int_t ttl;
    size_t n;
    CURLcode cc;
    int rc = REG_E_UPSTREAM;

    memset(&k, 0, sizeof(k));
    k.body.max = SMALL_BODY_MAX;
    if (!challenge_param(challenge, "realm", realm, sizeof(realm)) ||
        (strncmp(realm, "http://", 7) && strncmp(realm, "https://", 8))) {
        reg_detail_set("upstream %s: a Bearer challenge without a usable realm", u->url);
        return REG_E_UPSTREAM;
    }
    /* Credentials go in the clear to an http:// realm: only when the
     * upstream itself is plain HTTP, never from an https:// upstream. */
    if (u->userpwd[0] && !strncmp(realm, "http://", 7) && !strncmp(u->url, "https://", 8)) {
        reg_detail_set("upstream %s: its token realm %s is plain HTTP: not sending the "
                       "configured credentials there",
                       u->url, realm);
        return REG_E_UPSTREAM;
    }
    challenge_param(challenge, "service", service, sizeof(service));
    snprintf(scope, sizeof(scope), "repository:%s:pull", repo);
    k.c = curl_easy_init();
    if (!k.c)
        return REG_E_NOMEM;
    es = curl_easy_escape(k.c, service, 0);
    esc = curl_easy_escape(k.c, scope, 0);
    n = strlen(realm) + (es ? strlen(es) : 0) + (esc ? strlen(esc) : 0) + 32;
    url = es && esc ? malloc(n) : NULL;
    if (!url) {
        rc = REG_E_NOMEM;
        goto out;
    }
    snprintf(url, n, "%s%sservice=%s&scope=%s", realm, strchr(realm, '?') ? "&" : "?", es, esc);
    common_options(u, k.c, &k, u->manifest_timeout);
    curl_easy_setopt(k.c, CURLOPT_URL, url);
    if (u->userpwd[0]) {
        curl_easy_setopt(k.c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(k.c, CURLOPT_USERPWD, u->userpwd);
    }
    cc = curl_easy_perform(k.c);
    curl_easy_getinfo(k.c, CURLINFO_RESPONSE_CODE, &k.status);
    if (cc != CURLE_OK || k.status != 200) {
        if (cc == CURLE_OK && (k.status == 401 || k.status == 403) && u->userpwd[0]) {
            /* Our configuration is wrong, not the client's request. */
            reg_detail_set("upstream %s: its token service refused the configured credentials "
                           "(status %ld)",
                           u->url, k.status);
            rc = REG_E_UPSTREAM;
        } else if (cc == CURLE_OK && (k.status == 401 || k.status == 403)) {
            rc = REG_E_DENIED;
        } else {
            reg_detail_set("upstream %s: token service %s: %s", u->url, realm,
                           cc != CURLE_OK ? curl_easy_strerror(cc) : "refused");
        }
        goto out;
    }
    root = json_loadb(k.body.p ? k.body.p : "", k.body.len, 0, NULL);
    tok = json_string_value(json_object_get(root, "token"));
    if (!tok)
        tok = json_string_value(json_object_get(root, "access_token"));
    if (!tok || !tok[0]) {
        reg_detail_set("upstream %s: the token service sent no token", u->url);
        goto out;
    }
    ttl = json_integer_value(json_object_get(root, "expires_in"));
    if (ttl <= 0)
        ttl = 60; /* the token spec's default */
    /* A little early, so a token never expires on its way. */
    token_keep(u, repo, strdup(tok), time(NULL) + (ttl > 20 ? ttl - 10 : ttl / 2));
    rc = REG_OK;
out:
    json_decref(root);
    free(url);
    curl_free(es);
    curl_free(esc);
    free(k.body.p);
    curl_easy_cleanup(k.c);
    return rc;
}

/* One request to the upstream through its auth: path under url, method
 * GET or HEAD. A 401 is answered once (a token, or Basic) and retried. On
 * return k->status is the final status and k->body the body when no fn
 * took it. */
static int perform(struct upstream *u, const char *repo, const char *path, int head,
                   const char *accept, long timeout, struct call *k)
{
    struct curl_slist *hdrs = NULL, *h;
    char url[2048], *auth = NULL;
    int attempt, basic, sent_basic = 0, rc = REG_OK;
    CURLcode cc = CURLE_OK;

    snprintf(url, sizeof(url), "%s%s", u->url, path);
    for (attempt = 0; attempt < 2; attempt++) {
        k->c = curl_easy_init();
        if (!k->c)
            return REG_E_NOMEM;
        k->status = 0;
        sent_basic = 0;
        k->length = UINT64_MAX;
        k->body.len = 0;
        common_options(u, k->c, k, timeout);
        curl_easy_setopt(k->c, CURLOPT_URL, url);
        if (head)
            curl_easy_setopt(k->c, CURLOPT_NOBODY, 1L);
        hdrs = accept ? curl_slist_append(NULL, accept) : NULL;
        free(auth);
        auth = NULL;
        pthread_mutex_lock(&u->lock);
        basic = u->basic;
        pthread_mutex_unlock(&u->lock);
        if (token_header(u, repo, &auth) == REG_OK) {
            h = curl_slist_append(hdrs, auth);
            hdrs = h ? h : hdrs;
        } else if (basic && u->userpwd[0]) {
            sent_basic = 1;
            curl_easy_setopt(k->c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
            curl_easy_setopt(k->c, CURLOPT_USERPWD, u->userpwd);
        }
        curl_easy_setopt(k->c, CURLOPT_HTTPHEADER, hdrs);
        cc = curl_easy_perform(k->c);
        curl_easy_getinfo(k->c, CURLINFO_RESPONSE_CODE, &k->status);
        curl_slist_free_all(hdrs);
        hdrs = NULL;
        if (cc != CURLE_OK || k->status != 401 || attempt == 1)
            break;
        /* Unauthorized: learn how, then once more. */
        curl_easy_cleanup(k->c);
        k->c = NULL;
        if (!strncasecmp(k->challenge, "Bearer", 6)) {
            rc = fetch_token(u, repo, k->challenge);
            if (rc)
                break;
        } else if (!strncasecmp(k->challenge, "Basic", 5) && u->userpwd[0]) {
            pthread_mutex_lock(&u->lock);
            u->basic = 1;
            pthread_mutex_unlock(&u->lock);
        } else {
            break;
        }
    }
    free(auth);
    if (k->c) {
        curl_easy_cleanup(k->c);
        k->c = NULL;
    }
    if (rc == REG_E_DENIED) {
        k->status = 401;
        return REG_OK;
    }
    if (rc)
        return rc;
    if (k->fn_rc)
        return k->fn_rc;
    if (k->over) {
        reg_detail_set("upstream %s: %s: the answer is over its size cap", u->url, path);
        return REG_E_UPSTREAM;
    }
    if (cc != CURLE_OK) {
        reg_detail_set("upstream %s: %s", u->url, curl_easy_strerror(cc));
        return REG_E_UPSTREAM;
    }
    if (k->status == 401 && sent_basic) {
        reg_detail_set("upstream %s: it refused the configured credentials (status 401)", u->url);
        return REG_E_UPSTREAM;
    }
    return REG_OK;
}

/* The error for a final status that is not 200. */
static int status_error(struct upstream *u, const char *what, long status, int not_found)
{
    if (status == 404 || status == 401 || status == 403 ||
        (status >= 400 && status < 500 && status != 429 && status != 408)) {
        reg_detail_set("upstream %s: %s: %ld", u->url, what, status);
        return not_found;
    }
    reg_detail_set("upstream %s: %s: status %ld", u->url, what, status);
    return REG_E_UPSTREAM;
}

int upstream_manifest(struct upstream *u, const char *repo, const char *ref, int head, size_t max,
                      struct upstream_manifest *out)
{
    char path[1024];
    struct call k;
    struct digest want, got;
    int by_digest = strchr(ref, ':') != NULL, rc;

    memset(out, 0, sizeof(*out));
    memset(&k, 0, sizeof(k));
    k.body.max = max;
    if (by_digest && digest_parse(ref, strlen(ref), &want) != REG_OK)
        return REG_E_DIGEST_INVALID;
    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    rc = perform(u, repo, path, head, manifest_accept, u->manifest_timeout, &k);
    if (!rc && k.status != 200)
        rc = status_error(u, path, k.status, REG_E_MANIFEST_UNKNOWN);
    if (rc)
        goto out;
    if (k.digest[0] && digest_parse(k.digest, strlen(k.digest), &got) != REG_OK) {
        reg_detail_set("upstream %s: %s: a bad Docker-Content-Digest", u->url, path);
        rc = REG_E_UPSTREAM;
        goto out;
    }
    if (head) {
        if (!k.digest[0] && !by_digest) {
            reg_detail_set("upstream %s: %s: a HEAD without Docker-Content-Digest", u->url, path);
            rc = REG_E_UPSTREAM;
            goto out;
        }
        snprintf(out->digest, sizeof(out->digest), "%s", k.digest[0] ? k.digest : want.str);
        out->len = k.length;
    } else {
        /* The bytes are what we store: they must be what was asked for. */
        digest_of(by_digest     ? want.algo
                  : k.digest[0] ? got.algo
                                : DIGEST_SHA256,
                  k.body.p ? k.body.p : "", k.body.len, &got);
        if ((by_digest && strcmp(got.str, want.str) != 0) ||
            (k.digest[0] && strcmp(got.str, k.digest) != 0)) {
            reg_detail_set("upstream %s: %s: the manifest's bytes hash to %s", u->url, path,
                           got.str);
            rc = REG_E_UPSTREAM;
            goto out;
        }
        snprintf(out->digest, sizeof(out->digest), "%s", got.str);
        out->len = k.body.len;
        out->data = k.body.p ? k.body.p : malloc(1);
        k.body.p = NULL;
        if (!out->data)
            rc = REG_E_NOMEM;
    }
    /* Without parameters (charset), as we store media types. */
    snprintf(out->media_type, sizeof(out->media_type), "%.*s", (int)strcspn(k.content_type, "; \t"),
             k.content_type);
out:
    free(k.body.p);
    return rc;
}

int upstream_blob(struct upstream *u, const char *repo, const char *digest,
                  upstream_size_fn size_fn, upstream_data_fn fn, void *arg)
{
    char path[1024];
    struct call k;
    int rc;

    memset(&k, 0, sizeof(k));
    k.body.max = SMALL_BODY_MAX;
    k.size_fn = size_fn;
    k.fn = fn;
    k.arg = arg;
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, digest);
    rc = perform(u, repo, path, 0, NULL, 0, &k);
    if (!rc && k.status != 200)
        rc = status_error(u, path, k.status, REG_E_BLOB_UNKNOWN);
    free(k.body.p);
    return rc;
}
