#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "../auth/acl.h"
#include "../common/err.h"
#include "../common/log.h"

void config_defaults(struct config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->listen, sizeof(c->listen), "127.0.0.1:5000");
    c->threads = 4;
    c->max_connections = 1024;
    c->timeout = 120;
    c->header_timeout = 20;
    c->max_per_address = 256;
    c->connection_memory = 16 << 10;
    c->send_buffers = 64 << 20;
    c->shutdown_timeout = 30;
    c->max_manifest_size = 4 << 20;
    c->manifest_buffers = 64 << 20;
    snprintf(c->root, sizeof(c->root), "./data");
    c->delete_enabled = 0;
    c->index_max_size = (size_t)16 << 30;
    c->ready_min_free = 1ULL << 30;
    c->gc_interval = 3600;
    c->gc_grace = 3600;
    c->gc_upload_ttl = 86400;
    c->gc_untagged = 0;
    c->log_level = LOG_INFO;
    c->log_format = LOG_TEXT;
    c->auth_mode = 0;
    snprintf(c->auth_service, sizeof(c->auth_service), "registry");
    snprintf(c->auth_issuer, sizeof(c->auth_issuer), "registry-token-issuer");
    c->auth_token_ttl = 900;
    c->auth_leeway = 60;
}

static void free_list(char **v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void config_free(struct config *c)
{
    free_list(c->auth_rules, c->auth_nrules);
    free_list(c->groups, c->ngroups);
    c->auth_rules = c->groups = NULL;
    c->auth_nrules = c->ngroups = 0;
}

static int push_list(char ***v, size_t *n, const char *a, const char *b)
{
    char **nv = realloc(*v, (*n + 1) * sizeof(*nv));
    size_t len = strlen(a) + (b ? strlen(b) + 1 : 0) + 1;

    if (!nv)
        return REG_E_NOMEM;
    *v = nv;
    nv[*n] = malloc(len);
    if (!nv[*n])
        return REG_E_NOMEM;
    snprintf(nv[*n], len, b ? "%s=%s" : "%s", a, b ? b : "");
    (*n)++;
    return REG_OK;
}

/* A path or string key copied into a fixed buffer. */
static int set_str(char *dst, size_t size, const char *key, const char *v, char *err,
                   size_t errsize)
{
    if (strlen(v) >= size) {
        snprintf(err, errsize, "%s: longer than %zu characters", key, size - 1);
        return REG_E_CONFIG;
    }
    snprintf(dst, size, "%s", v);
    return REG_OK;
}

static int parse_uint(const char *v, unsigned long long min, unsigned long long max,
                      unsigned long long *out)
{
    unsigned long long n;
    char *end;

    if (*v < '0' || *v > '9')
        return -1;
    errno = 0;
    n = strtoull(v, &end, 10);
    if (errno || *end != '\0' || n < min || n > max)
        return -1;
    *out = n;
    return 0;
}

/* Sizes take an optional K, M or G suffix (powers of 1024). */
static int parse_size(const char *v, unsigned long long min, unsigned long long max,
                      unsigned long long *out)
{
    char buf[32];
    size_t len = strlen(v);
    unsigned shift = 0;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len + 1);
    switch (buf[len - 1]) {
    case 'K':
    case 'k':
        shift = 10;
        break;
    case 'M':
    case 'm':
        shift = 20;
        break;
    case 'G':
    case 'g':
        shift = 30;
        break;
    default:
        break;
    }
    if (shift)
        buf[len - 1] = '\0';
    if (parse_uint(buf, 0, max >> shift, out))
        return -1;
    *out <<= shift;
    return *out < min ? -1 : 0;
}

/* Durations: seconds, or a number with s, m, h or d ("90", "30m", "1h"). */
static int parse_duration(const char *v, unsigned long long max, long *out)
{
    char buf[32];
    size_t len = strlen(v);
    unsigned long long n, unit = 1;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len + 1);
    switch (buf[len - 1]) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    default:
        unit = 0;
        break;
    }
    if (unit)
        buf[len - 1] = '\0';
    else
        unit = 1;
    if (parse_uint(buf, 0, max / unit, &n))
        return -1;
    *out = (long)(n * unit);
    return 0;
}

static int parse_bool(const char *v, int *out)
{
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int pick(const char *v, const char *const *names, int n, int *out)
{
    int i;

    for (i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    return -1;
}

#define BAD(...) (snprintf(err, errsize, __VA_ARGS__), REG_E_CONFIG)

int config_set(struct config *c, const char *section, const char *key, const char *v, char *err,
               size_t errsize)
{
    static const char *const levels[] = {"debug", "info", "warn", "error"};
    static const char *const formats[] = {"text", "json"};
    static const char *const modes[] = {"none", "basic", "token"};
    unsigned long long n;

#define IS(s, k) (!strcmp(section, s) && !strcmp(key, k))
    if (IS("server", "listen")) {
        if (!strchr(v, ':') || strlen(v) >= sizeof(c->listen))
            return BAD("listen: expected host:port, got '%s'", v);
        snprintf(c->listen, sizeof(c->listen), "%s", v);
    } else if (IS("server", "threads")) {
        if (parse_uint(v, 1, 256, &n))
            return BAD("threads: expected 1..256, got '%s'", v);
        c->threads = (unsigned)n;
    } else if (IS("server", "max_connections")) {
        if (parse_uint(v, 1, 65536, &n))
            return BAD("max_connections: expected 1..65536, got '%s'", v);
        c->max_connections = (unsigned)n;
    } else if (IS("server", "timeout")) {
        if (parse_uint(v, 1, 86400, &n))
            return BAD("timeout: expected seconds 1..86400, got '%s'", v);
        c->timeout = (unsigned)n;
    } else if (IS("server", "header_timeout")) {
        if (parse_uint(v, 0, 3600, &n))
            return BAD("header_timeout: expected seconds 0..3600, got '%s'", v);
        c->header_timeout = (unsigned)n;
    } else if (IS("server", "max_connections_per_address")) {
        if (parse_uint(v, 0, 65536, &n))
            return BAD("max_connections_per_address: expected 0..65536, got '%s'", v);
        c->max_per_address = (unsigned)n;
    } else if (IS("server", "connection_memory")) {
        if (parse_size(v, 8ULL << 10, 1ULL << 20, &n))
            return BAD("connection_memory: expected 8K..1M, got '%s'", v);
        c->connection_memory = (size_t)n;
    } else if (IS("server", "send_buffers")) {
        if (parse_size(v, 0, 16ULL << 30, &n))
            return BAD("send_buffers: expected 0..16G, got '%s'", v);
        c->send_buffers = (size_t)n;
    } else if (IS("server", "shutdown_timeout")) {
        if (parse_uint(v, 0, 3600, &n))
            return BAD("shutdown_timeout: expected seconds 0..3600, got '%s'", v);
        c->shutdown_timeout = (unsigned)n;
    } else if (IS("server", "max_manifest_size")) {
        if (parse_size(v, 1024, 64ULL << 20, &n))
            return BAD("max_manifest_size: expected 1K..64M, got '%s'", v);
        c->max_manifest_size = (size_t)n;
    } else if (IS("server", "manifest_buffers")) {
        if (parse_size(v, 1ULL << 20, 4ULL << 30, &n))
            return BAD("manifest_buffers: expected 1M..4G, got '%s'", v);
        c->manifest_buffers = (size_t)n;
    } else if (IS("storage", "root")) {
        if (!*v || strlen(v) >= sizeof(c->root))
            return BAD("root: expected a directory, got '%s'", v);
        snprintf(c->root, sizeof(c->root), "%s", v);
    } else if (IS("storage", "delete")) {
        if (parse_bool(v, &c->delete_enabled))
            return BAD("delete: expected true or false, got '%s'", v);
    } else if (IS("storage", "index_max_size")) {
        if (parse_size(v, 1ULL << 20, 1ULL << 40, &n))
            return BAD("index_max_size: expected 1M..1024G, got '%s'", v);
        c->index_max_size = (size_t)n;
    } else if (IS("storage", "ready_min_free")) {
        if (parse_size(v, 0, 1ULL << 50, &n))
            return BAD("ready_min_free: expected a size such as 1G or 0, got '%s'", v);
        c->ready_min_free = n;
    } else if (IS("gc", "interval")) {
        if (parse_duration(v, 366ULL * 86400, &c->gc_interval))
            return BAD("interval: expected a duration such as 1h, 30m or 0 (off), got '%s'", v);
    } else if (IS("gc", "grace")) {
        if (parse_duration(v, 366ULL * 86400, &c->gc_grace))
            return BAD("grace: expected a duration such as 1h, 30m or 0, got '%s'", v);
    } else if (IS("gc", "upload_ttl")) {
        if (parse_duration(v, 366ULL * 86400, &c->gc_upload_ttl))
            return BAD("upload_ttl: expected a duration such as 24h or 30m, got '%s'", v);
    } else if (IS("gc", "untagged")) {
        static const char *const untagged[] = {"keep", "delete"};

        if (pick(v, untagged, 2, &c->gc_untagged))
            return BAD("untagged: expected keep or delete, got '%s'", v);
    } else if (IS("log", "level")) {
        if (pick(v, levels, 4, &c->log_level))
            return BAD("level: expected debug, info, warn or error, got '%s'", v);
    } else if (IS("log", "format")) {
        if (pick(v, formats, 2, &c->log_format))
            return BAD("format: expected text or json, got '%s'", v);
    } else if (IS("server", "tls_cert")) {
        return set_str(c->tls_cert, sizeof(c->tls_cert), key, v, err, errsize);
    } else if (IS("server", "tls_key")) {
        return set_str(c->tls_key, sizeof(c->tls_key), key, v, err, errsize);
    } else if (IS("auth", "mode")) {
        if (pick(v, modes, 3, &c->auth_mode))
            return BAD("mode: expected none, basic or token, got '%s'", v);
    } else if (IS("auth", "htpasswd")) {
        return set_str(c->auth_htpasswd, sizeof(c->auth_htpasswd), key, v, err, errsize);
    } else if (IS("auth", "realm")) {
        return set_str(c->auth_realm, sizeof(c->auth_realm), key, v, err, errsize);
    } else if (IS("auth", "service")) {
        return set_str(c->auth_service, sizeof(c->auth_service), key, v, err, errsize);
    } else if (IS("auth", "issuer")) {
        return set_str(c->auth_issuer, sizeof(c->auth_issuer), key, v, err, errsize);
    } else if (IS("auth", "key")) {
        return set_str(c->auth_key, sizeof(c->auth_key), key, v, err, errsize);
    } else if (IS("auth", "trust")) {
        return set_str(c->auth_trust, sizeof(c->auth_trust), key, v, err, errsize);
    } else if (IS("auth", "token_ttl")) {
        if (parse_uint(v, 10, 86400, &n))
            return BAD("token_ttl: expected seconds 10..86400, got '%s'", v);
        c->auth_token_ttl = (long)n;
    } else if (IS("auth", "leeway")) {
        if (parse_uint(v, 0, 600, &n))
            return BAD("leeway: expected seconds 0..600, got '%s'", v);
        c->auth_leeway = (long)n;
    } else if (IS("auth", "rule")) {
        struct acl *probe = NULL;
        int rc = acl_new(&probe);

        /* Check the rule here, so that a bad one is reported with its line. */
        if (!rc)
            rc = acl_add_rule(probe, v, err, errsize);
        acl_free(probe);
        return rc ? rc : push_list(&c->auth_rules, &c->auth_nrules, v, NULL);
    } else if (!strcmp(section, "groups")) {
        return push_list(&c->groups, &c->ngroups, key, v);
    } else {
        return BAD("unknown key '%s' in [%s]", key, section);
    }
#undef IS
    return REG_OK;
}

int config_check(const struct config *c, char *err, size_t errsize)
{
    if (c->manifest_buffers < c->max_manifest_size)
        return BAD("manifest_buffers (%zu) is below max_manifest_size (%zu): a manifest of the "
                   "largest size could never be taken",
                   c->manifest_buffers, c->max_manifest_size);
    return REG_OK;
}

struct load_ctx {
    struct config *c;
    FILE *f;
    int lineno;   /* lines read so far */
    int bad_line; /* line of the first error, 0 when none */
    char msg[256];
};

/* inih's reader: count lines ourselves so that the message and the line
 * number always belong to the same error, and refuse lines longer than
 * inih's buffer instead of letting it split them. */
static char *read_line(char *str, int num, void *stream)
{
    struct load_ctx *lc = stream;
    size_t len;

    if (lc->bad_line || !fgets(str, num, lc->f))
        return NULL;
    lc->lineno++;
    len = strlen(str);
    if (len == (size_t)num - 1 && str[len - 1] != '\n' && !feof(lc->f)) {
        lc->bad_line = lc->lineno;
        snprintf(lc->msg, sizeof(lc->msg), "line longer than %d characters", num - 2);
        return NULL;
    }
    return str;
}

static int on_key(void *user, const char *section, const char *key, const char *value)
{
    struct load_ctx *lc = user;

    if (lc->bad_line)
        return 0;
    if (config_set(lc->c, section, key, value, lc->msg, sizeof(lc->msg))) {
        lc->bad_line = lc->lineno;
        return 0;
    }
    return 1;
}

int config_load(struct config *c, const char *path, char *err, size_t errsize)
{
    struct load_ctx lc;
    int line;

    memset(&lc, 0, sizeof(lc));
    lc.c = c;
    lc.f = fopen(path, "r");
    if (!lc.f)
        return BAD("%s: cannot read: %s", path, strerror(errno));
    line = ini_parse_stream(read_line, &lc, on_key, &lc);
    fclose(lc.f);
    if (line < 0)
        return BAD("%s: cannot read: out of memory", path);
    if (lc.bad_line)
        return BAD("%s:%d: %s", path, lc.bad_line, lc.msg);
    if (line > 0)
        return BAD("%s:%d: syntax error", path, line);
    return REG_OK;
}
