#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

#include "../auth/acl.h"
#include "../common/err.h"

const char *const config_log_levels[] = {"debug", "info", "warn", "error", NULL};
const char *const config_log_formats[] = {"text", "json", NULL};
const char *const config_auth_modes[] = {"none", "basic", "token", NULL};
const char *const config_untagged_names[] = {"keep", "delete", NULL};
const char *const config_drivers[] = {"fs", "s3", NULL};

#define FIELD(f) .offset = offsetof(struct config, f), .width = sizeof(((struct config *)0)->f)
#define KIB 1024ULL
#define MIB (1024ULL * KIB)
#define GIB (1024ULL * MIB)
#define YEAR (366ULL * 86400)

/* One macro per type, so that each row says only what matters to it. */
#define STR(s, k, f, d, check, words, fl)                                                          \
    {                                                                                              \
        .section = s, .key = k, .type = CONFIG_STRING, FIELD(f), .def = d, .valid = check,         \
        .expect = words, .flags = fl                                                               \
    }
#define BOOL(s, k, f, d, fl)                                                                       \
    {                                                                                              \
        .section = s, .key = k, .type = CONFIG_BOOL, FIELD(f), .def = d, .flags = fl               \
    }
#define UINT(s, k, f, lo, hi, d, fl)                                                               \
    {                                                                                              \
        .section = s, .key = k, .type = CONFIG_UNSIGNED, FIELD(f), .min = lo, .max = hi, .def = d, \
        .flags = fl                                                                                \
    }
#define SIZE(s, k, f, lo, hi, d, words, fl)                                                        \
    {                                                                                              \
        .section = s, .key = k, .type = CONFIG_SIZE, FIELD(f), .min = lo, .max = hi, .def = d,     \
        .expect = words, .flags = fl                                                               \
    }
#define DUR(s, k, f, d, words, fl)                                                                 \
    {                                                                                              \
        .section = s, .key = k, .type = CONFIG_DURATION, FIELD(f), .max = YEAR, .def = d,          \
        .expect = words, .flags = fl                                                               \
    }
#define ENUM(s, k, f, list, d, fl)                                                                 \
    {                                                                                              \
        .section = s, .key = k, .type = CONFIG_ENUM, FIELD(f), .names = list, .def = d,            \
        .flags = fl                                                                                \
    }
#define LIST(s, k, f, fl)                                                                          \
    {                                                                                              \
        .section = s, .key = k, .type = CONFIG_LIST, FIELD(f), .flags = fl                         \
    }

static int listen_valid(const char *v)
{
    return strchr(v, ':') != NULL;
}

static int root_valid(const char *v)
{
    return *v != '\0';
}

/* Empty: /metrics stays on the main listener. */
static int metrics_listen_valid(const char *v)
{
    return !*v || listen_valid(v);
}

/* Empty is valid for these: driver = fs needs none (config_check). */
static int s3_endpoint_valid(const char *v)
{
    size_t n = strlen(v);

    if (n == 0)
        return 1;
    return (!strncmp(v, "http://", 7) || !strncmp(v, "https://", 8)) && n > 8 &&
           !strchr(strstr(v, "://") + 3, '/') && !strchr(v, '?');
}

static int s3_bucket_valid(const char *v)
{
    size_t n = strlen(v);

    if (n == 0)
        return 1;
    if (n < 3 || n > 63)
        return 0;
    for (; *v; v++)
        if (!((*v >= 'a' && *v <= 'z') || (*v >= '0' && *v <= '9') || *v == '.' || *v == '-'))
            return 0;
    return 1;
}

/* Room for the '/' that ends it (struct s3_config's prefix). */
static int s3_prefix_valid(const char *v)
{
    return v[0] != '/' && strlen(v) < 250;
}

/* Rows of one section stay together: config_print walks them in order. */
static const struct config_key keys[] = {
    STR("server", "listen", listen, "127.0.0.1:5000", listen_valid, "host:port", 0),
    UINT("server", "threads", threads, 1, 256, "4", 0),
    UINT("server", "max_connections", max_connections, 1, 65536, "1024", 0),
    UINT("server", "timeout", timeout, 1, 86400, "120", CONFIG_SECONDS),
    UINT("server", "header_timeout", header_timeout, 0, 3600, "20", CONFIG_SECONDS),
    UINT("server", "max_connections_per_address", max_per_address, 0, 65536, "256", 0),
    SIZE("server", "connection_memory", connection_memory, 8 * KIB, MIB, "16K", NULL, 0),
    SIZE("server", "send_buffers", send_buffers, 0, 16 * GIB, "64M", NULL, 0),
    SIZE("server", "manifest_buffers", manifest_buffers, MIB, 4 * GIB, "64M", NULL, CONFIG_RELOAD),
    UINT("server", "shutdown_timeout", shutdown_timeout, 0, 3600, "30",
         CONFIG_SECONDS | CONFIG_RELOAD),
    /* Not reloadable: a manifest PUT reads it at every piece of its body. */
    SIZE("server", "max_manifest_size", max_manifest_size, KIB, 64 * MIB, "4M", NULL, 0),
    STR("server", "tls_cert", tls_cert, NULL, NULL, NULL, 0),
    STR("server", "tls_key", tls_key, NULL, NULL, NULL, 0),
    STR("storage", "root", root, "./data", root_valid, "a directory", 0),
    BOOL("storage", "delete", delete_enabled, "false", CONFIG_RELOAD),
    BOOL("storage", "read_only", read_only, "false", CONFIG_RELOAD),
    SIZE("storage", "ready_min_free", ready_min_free, 0, 1ULL << 50, "1G", "a size such as 1G or 0",
         CONFIG_RELOAD),
    SIZE("storage", "index_max_size", index_max_size, MIB, 1024 * GIB, "16G", NULL, 0),
    ENUM("storage", "driver", storage_driver, config_drivers, "fs", 0),
    STR("s3", "endpoint", s3_endpoint, NULL, s3_endpoint_valid,
        "http://host[:port] or https://host[:port]", 0),
    STR("s3", "region", s3_region, "us-east-1", NULL, NULL, 0),
    STR("s3", "bucket", s3_bucket, NULL, s3_bucket_valid, "a bucket name (3-63 of a-z 0-9 . -)", 0),
    STR("s3", "prefix", s3_prefix, NULL, s3_prefix_valid, "a key prefix without a leading '/'", 0),
    STR("s3", "access_key", s3_access_key, NULL, NULL, NULL, 0),
    STR("s3", "secret_key", s3_secret_key, NULL, NULL, NULL, CONFIG_SECRET),
    BOOL("s3", "path_style", s3_path_style, "true", 0),
    SIZE("s3", "part_size", s3_part_size, 5 * MIB, GIB, "16M", NULL, 0),
    BOOL("s3", "redirect", s3_redirect, "false", 0),
    DUR("gc", "interval", gc_interval, "1h", "a duration such as 1h, 30m or 0 (off)",
        CONFIG_RELOAD),
    DUR("gc", "grace", gc_grace, "1h", "a duration such as 1h, 30m or 0", CONFIG_RELOAD),
    DUR("gc", "upload_ttl", gc_upload_ttl, "24h", "a duration such as 24h or 30m", CONFIG_RELOAD),
    ENUM("gc", "untagged", gc_untagged, config_untagged_names, "keep", CONFIG_RELOAD),
    /* Not reloadable: the listeners are bound at start. */
    BOOL("metrics", "enabled", metrics_enabled, "true", 0),
    STR("metrics", "listen", metrics_listen, NULL, metrics_listen_valid,
        "host:port, or nothing for the main listener", 0),
    ENUM("log", "level", log_level, config_log_levels, "info", CONFIG_RELOAD),
    ENUM("log", "format", log_format, config_log_formats, "text", CONFIG_RELOAD),
    ENUM("auth", "mode", auth_mode, config_auth_modes, "none", 0),
    /* The file is reread on SIGHUP (and when it changes); its path is not. */
    STR("auth", "htpasswd", auth_htpasswd, NULL, NULL, NULL, 0),
    STR("auth", "realm", auth_realm, NULL, NULL, NULL, 0),
    STR("auth", "service", auth_service, "registry", NULL, NULL, 0),
    STR("auth", "issuer", auth_issuer, "registry-token-issuer", NULL, NULL, 0),
    STR("auth", "key", auth_key, NULL, NULL, NULL, 0),
    STR("auth", "trust", auth_trust, NULL, NULL, NULL, 0),
    UINT("auth", "token_ttl", auth_token_ttl, 10, 86400, "900", CONFIG_SECONDS),
    UINT("auth", "leeway", auth_leeway, 0, 600, "60", CONFIG_SECONDS),
    LIST("auth", "rule", auth_rules, CONFIG_RELOAD),
};

#define NKEYS (sizeof(keys) / sizeof(keys[0]))

/* http(s)://host[:port][/path], without credentials in the authority: they
 * would show in every error detail and log line that names the upstream
 * (username and password are keys of their own). */
static int url_valid(const char *v)
{
    size_t skip = !strncmp(v, "http://", 7) ? 7 : !strncmp(v, "https://", 8) ? 8 : 0;
    size_t host = skip ? strcspn(v + skip, "/?#") : 0;

    return skip && v[skip] && !memchr(v + skip, '@', host);
}

/* A repository-name prefix: path components of [a-z0-9._-], no slash at
 * either end (mirror/docker.io), or empty. The full grammar is checked on
 * every request name anyway. */
static int prefix_valid(const char *v)
{
    size_t i, n = strlen(v);

    if (n && (v[0] == '/' || v[n - 1] == '/' || strstr(v, "//")))
        return 0;
    for (i = 0; i < n; i++)
        if (!islower((unsigned char)v[i]) && !isdigit((unsigned char)v[i]) && !strchr("._-/", v[i]))
            return 0;
    return 1;
}

#define PFIELD(f)                                                                                  \
    .offset = offsetof(struct config_proxy, f), .width = sizeof(((struct config_proxy *)0)->f)

/* The keys of each [proxy.NAME] section; none may change on a reload. */
static const struct config_key proxy_keys[] = {
    {.section = "proxy",
     .key = "url",
     .type = CONFIG_STRING,
     PFIELD(url),
     .valid = url_valid,
     .expect = "http://host[:port] or https://host[:port], without credentials (username and "
               "password are keys)"},
    {.section = "proxy",
     .key = "prefix",
     .type = CONFIG_STRING,
     PFIELD(prefix),
     .valid = prefix_valid,
     .expect = "a repository path such as mirror/docker.io, or empty"},
    {.section = "proxy", .key = "username", .type = CONFIG_STRING, PFIELD(username)},
    {.section = "proxy", .key = "password", .type = CONFIG_STRING, PFIELD(password)},
    {.section = "proxy",
     .key = "tag_ttl",
     .type = CONFIG_DURATION,
     PFIELD(tag_ttl),
     .max = YEAR,
     .def = "5m",
     .expect = "a duration such as 30s, 5m or 1h"},
    {.section = "proxy",
     .key = "evict_after",
     .type = CONFIG_DURATION,
     PFIELD(evict_after),
     .max = 10 * YEAR,
     .def = "0",
     .expect = "a duration such as 7d, 12h or 0 (never)"},
    {.section = "proxy", .key = "ca", .type = CONFIG_STRING, PFIELD(ca)},
};

#define NPROXY_KEYS (sizeof(proxy_keys) / sizeof(proxy_keys[0]))

const struct config_key *config_proxy_keys(size_t *n)
{
    *n = NPROXY_KEYS;
    return proxy_keys;
}

const struct config_key *config_keys(size_t *n)
{
    *n = NKEYS;
    return keys;
}

static const struct config_key *proxy_key_find(const char *key)
{
    size_t i;

    for (i = 0; i < NPROXY_KEYS; i++)
        if (!strcmp(proxy_keys[i].key, key))
            return &proxy_keys[i];
    return NULL;
}

const struct config_key *config_key_find(const char *section, const char *key)
{
    size_t i;

    if (!strncmp(section, "proxy", 5) && (section[5] == '.' || section[5] == '\0'))
        return proxy_key_find(key);
    for (i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key))
            return &keys[i];
    return NULL;
}

/* Numbers are stored by the width of their field: unsigned and int fields
 * take 4 bytes, size_t, long and unsigned long long 8 (values never pass
 * LONG_MAX, so a long holds the same bits). */
static void put_num(void *base, const struct config_key *k, unsigned long long v)
{
    char *p = (char *)base + k->offset;

    if (k->width == sizeof(unsigned)) {
        unsigned u = (unsigned)v;

        memcpy(p, &u, sizeof(u));
    } else {
        memcpy(p, &v, sizeof(v));
    }
}

static unsigned long long get_num(const void *base, const struct config_key *k)
{
    const char *p = (const char *)base + k->offset;
    unsigned long long v = 0;
    unsigned u;

    if (k->width == sizeof(unsigned)) {
        memcpy(&u, p, sizeof(u));
        return u;
    }
    memcpy(&v, p, sizeof(v));
    return v;
}

static char *str_field(void *base, const struct config_key *k)
{
    return (char *)base + k->offset;
}

static const char *str_field_ref(const void *base, const struct config_key *k)
{
    return (const char *)base + k->offset;
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
    free(c->proxies);
    c->auth_rules = c->groups = NULL;
    c->auth_nrules = c->ngroups = 0;
    c->proxies = NULL;
    c->nproxies = 0;
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

/* A number with an optional one-letter unit from units (each worth the
 * matching mult); case-insensitive when fold. */
static int parse_unit(const char *v, const char *units, const unsigned long long *mult, int fold,
                      unsigned long long min, unsigned long long max, unsigned long long *out)
{
    char buf[32];
    size_t len = strlen(v);
    unsigned long long m = 1;
    const char *u;
    char last;

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len + 1);
    last = fold ? (char)tolower((unsigned char)buf[len - 1]) : buf[len - 1];
    u = strchr(units, last);
    if (last && u) {
        m = mult[u - units];
        buf[len - 1] = '\0';
    }
    if (parse_uint(buf, 0, max / m, out))
        return -1;
    *out *= m;
    return *out < min ? -1 : 0;
}

static const unsigned long long size_mult[] = {KIB, MIB, GIB};
static const unsigned long long time_mult[] = {1, 60, 3600, 86400};

static int parse_bool(const char *v, unsigned long long *out)
{
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on") || !strcmp(v, "1"))
        *out = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off") || !strcmp(v, "0"))
        *out = 0;
    else
        return -1;
    return 0;
}

static int pick(const char *v, const char *const *names, unsigned long long *out)
{
    unsigned long long i;

    for (i = 0; names[i]; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    return -1;
}

/* A size in its largest exact unit: 0, 512, 16K, 64M, 1024G. */
static void format_size(unsigned long long v, char *buf, size_t size)
{
    if (v && v % GIB == 0)
        snprintf(buf, size, "%lluG", v / GIB);
    else if (v && v % MIB == 0)
        snprintf(buf, size, "%lluM", v / MIB);
    else if (v && v % KIB == 0)
        snprintf(buf, size, "%lluK", v / KIB);
    else
        snprintf(buf, size, "%llu", v);
}

static void format_duration(unsigned long long v, char *buf, size_t size)
{
    if (v && v % 86400 == 0)
        snprintf(buf, size, "%llud", v / 86400);
    else if (v && v % 3600 == 0)
        snprintf(buf, size, "%lluh", v / 3600);
    else if (v && v % 60 == 0)
        snprintf(buf, size, "%llum", v / 60);
    else
        snprintf(buf, size, "%llus", v);
}

/* What an error says k expects: the row's words, or its range or names. */
static void expectation(const struct config_key *k, char *buf, size_t size)
{
    char lo[32], hi[32];
    size_t i, n = 0;
    int len;

    if (k->expect) {
        snprintf(buf, size, "%s", k->expect);
        return;
    }
    switch (k->type) {
    case CONFIG_BOOL:
        snprintf(buf, size, "true or false");
        break;
    case CONFIG_SIZE:
        format_size(k->min, lo, sizeof(lo));
        format_size(k->max, hi, sizeof(hi));
        snprintf(buf, size, "%s..%s", lo, hi);
        break;
    case CONFIG_ENUM:
        while (k->names[n])
            n++;
        buf[0] = '\0';
        for (i = 0, len = 0; i < n && len >= 0 && (size_t)len < size; i++)
            len += snprintf(buf + len, size - (size_t)len, "%s%s",
                            i == 0       ? ""
                            : i + 1 == n ? " or "
                                         : ", ",
                            k->names[i]);
        break;
    default:
        snprintf(buf, size, "%s%llu..%llu", k->flags & CONFIG_SECONDS ? "seconds " : "", k->min,
                 k->max);
        break;
    }
}

#define BAD(...) (snprintf(err, errsize, __VA_ARGS__), REG_E_CONFIG)

/* A rule is checked when it is read, so that a bad one is reported with
 * its line. */
static int check_rule(const char *v, char *err, size_t errsize)
{
    struct acl *probe = NULL;
    int rc = acl_new(&probe);

    if (!rc)
        rc = acl_add_rule(probe, v, err, errsize);
    acl_free(probe);
    return rc;
}

/* Set k in base (c itself, or one of its proxies) from the text v. */
static int set_key(struct config *c, void *base, const struct config_key *k, const char *v,
                   char *err, size_t errsize)
{
    char want[128];
    unsigned long long n = 0;
    int bad = 0, rc;

    switch (k->type) {
    case CONFIG_STRING:
        if (strlen(v) >= k->width && !k->valid)
            return BAD("%s: longer than %zu characters", k->key, k->width - 1);
        bad = strlen(v) >= k->width || (k->valid && !k->valid(v));
        if (!bad)
            snprintf(str_field(base, k), k->width, "%s", v);
        break;
    case CONFIG_BOOL:
        bad = parse_bool(v, &n);
        break;
    case CONFIG_UNSIGNED:
        bad = parse_uint(v, k->min, k->max, &n);
        break;
    case CONFIG_SIZE:
        bad = parse_unit(v, "kmg", size_mult, 1, k->min, k->max, &n);
        break;
    case CONFIG_DURATION:
        bad = parse_unit(v, "smhd", time_mult, 0, k->min, k->max, &n);
        break;
    case CONFIG_ENUM:
        bad = pick(v, k->names, &n);
        break;
    case CONFIG_LIST:
        rc = check_rule(v, err, errsize);
        return rc ? rc : push_list(&c->auth_rules, &c->auth_nrules, v, NULL);
    }
    if (bad) {
        expectation(k, want, sizeof(want));
        return BAD("%s: expected %s, got '%s'", k->key, want, v);
    }
    if (k->type != CONFIG_STRING)
        put_num(base, k, n);
    return REG_OK;
}

/* A proxy's NAME: what may follow "proxy." in a section name. */
static int proxy_name_valid(const char *v)
{
    size_t n = strlen(v);

    return n > 0 && n < sizeof(((struct config_proxy *)0)->name) &&
           strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

/* The proxy named name, created (with its defaults) when it is new. */
static int proxy_get(struct config *c, const char *name, struct config_proxy **out)
{
    struct config_proxy *p, *v;
    char err[128];
    size_t i;

    for (i = 0; i < c->nproxies; i++)
        if (!strcmp(c->proxies[i].name, name)) {
            *out = &c->proxies[i];
            return REG_OK;
        }
    v = realloc(c->proxies, (c->nproxies + 1) * sizeof(*v));
    if (!v)
        return REG_E_NOMEM;
    c->proxies = v;
    p = &v[c->nproxies++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    for (i = 0; i < NPROXY_KEYS; i++)
        if (proxy_keys[i].def && set_key(c, p, &proxy_keys[i], proxy_keys[i].def, err, sizeof(err)))
            abort(); /* a default the table itself refuses: a bug */
    *out = p;
    return REG_OK;
}

static int set_proxy_key(struct config *c, const char *section, const char *key, const char *v,
                         char *err, size_t errsize)
{
    const struct config_key *k = proxy_key_find(key);
    struct config_proxy *p;
    int rc;

    if (section[5] != '.' || !proxy_name_valid(section + 6))
        return BAD("[%s]: a proxy section is [proxy.NAME], NAME of a-z, 0-9, _ and -", section);
    if (!k)
        return BAD("unknown key '%s' in [%s]", key, section);
    rc = proxy_get(c, section + 6, &p);
    return rc ? rc : set_key(c, p, k, v, err, errsize);
}

int config_set(struct config *c, const char *section, const char *key, const char *v, char *err,
               size_t errsize)
{
    const struct config_key *k;

    if (!strcmp(section, "groups"))
        return push_list(&c->groups, &c->ngroups, key, v);
    if (!strncmp(section, "proxy", 5) && (section[5] == '.' || section[5] == '\0'))
        return set_proxy_key(c, section, key, v, err, errsize);
    k = config_key_find(section, key);
    if (!k)
        return BAD("unknown key '%s' in [%s]", key, section);
    return set_key(c, c, k, v, err, errsize);
}

void config_defaults(struct config *c)
{
    char err[256];
    size_t i;

    memset(c, 0, sizeof(*c));
    for (i = 0; i < NKEYS; i++)
        if (keys[i].def && set_key(c, c, &keys[i], keys[i].def, err, sizeof(err)) != REG_OK)
            abort(); /* a default the table itself refuses: a bug */
}

/* Whether the namespaces a and b overlap: equal, or one inside the other. */
static int prefix_overlap(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b), n = na < nb ? na : nb;

    if (!na || !nb)
        return na == nb;
    return !strncmp(a, b, n) && (na == nb || (na < nb ? b[n] : a[n]) == '/');
}

static int check_proxies(const struct config *c, char *err, size_t errsize)
{
    const struct config_proxy *p, *q;
    size_t i, j;

    for (i = 0; i < c->nproxies; i++) {
        p = &c->proxies[i];
        if (!p->url[0])
            return BAD("%s: [proxy.%s] has no url", p->where, p->name);
        if ((p->username[0] != 0) != (p->password[0] != 0))
            return BAD("%s: [proxy.%s]: username and password go together", p->where, p->name);
        for (j = 0; j < i; j++) {
            q = &c->proxies[j];
            if (prefix_overlap(p->prefix, q->prefix))
                return BAD("%s: [proxy.%s]: prefix '%s' overlaps [proxy.%s]'s '%s'%s", p->where,
                           p->name, p->prefix, q->name, q->prefix,
                           p->prefix[0] ? "" : " (at most one proxy has an empty prefix)");
        }
    }
    return REG_OK;
}

int config_check(const struct config *c, char *err, size_t errsize)
{
    int rc = check_proxies(c, err, errsize);

    if (rc)
        return rc;
    if (c->manifest_buffers < c->max_manifest_size)
        return BAD("manifest_buffers (%zu) is below max_manifest_size (%zu): a manifest of the "
                   "largest size could never be taken",
                   c->manifest_buffers, c->max_manifest_size);
    if (c->storage_driver == CONFIG_DRIVER_S3 && (!c->s3_endpoint[0] || !c->s3_bucket[0]))
        return BAD("driver = s3 needs [s3] endpoint and bucket");
    return REG_OK;
}

/* REGISTRY_<SECTION>_<KEY>, upper case. */
static void env_name(const struct config_key *k, char *buf, size_t size)
{
    size_t i;

    snprintf(buf, size, "REGISTRY_%s_%s", k->section, k->key);
    for (i = 0; buf[i]; i++)
        buf[i] = (char)toupper((unsigned char)buf[i]);
}

/* REGISTRY_AUTH_RULE: rules separated by ';', replacing the file's. */
static int env_rules(struct config *c, const struct config_key *k, const char *v, char *err,
                     size_t errsize)
{
    char *copy = strdup(v), *s, *save = NULL, *e;
    int rc = copy ? REG_OK : REG_E_NOMEM;

    if (rc)
        return rc;
    free_list(c->auth_rules, c->auth_nrules);
    c->auth_rules = NULL;
    c->auth_nrules = 0;
    for (s = strtok_r(copy, ";", &save); s && !rc; s = strtok_r(NULL, ";", &save)) {
        while (*s == ' ')
            s++;
        e = s + strlen(s);
        while (e > s && e[-1] == ' ')
            *--e = '\0';
        if (*s)
            rc = set_key(c, c, k, s, err, errsize);
    }
    free(copy);
    return rc;
}

extern char **environ;

/* REGISTRY_PROXY_<NAME>_<KEY>: NAME upper case, its '-' written '_' is not
 * possible, so NAME is what lies between REGISTRY_PROXY_ and the longest
 * key of the proxy table that ends the variable's name. */
static int env_proxies(struct config *c, char *err, size_t errsize)
{
    static const char pre[] = "REGISTRY_PROXY_";
    char var[256], name[64], section[80], msg[384], suffix[32];
    const char *eq, *v;
    size_t i, j, len, klen;
    int rc;

    for (i = 0; environ[i]; i++) {
        if (strncmp(environ[i], pre, sizeof(pre) - 1) != 0 || !(eq = strchr(environ[i], '=')))
            continue;
        len = (size_t)(eq - environ[i]);
        if (len >= sizeof(var))
            continue;
        memcpy(var, environ[i], len);
        var[len] = '\0';
        v = eq + 1;
        for (j = 0; j < NPROXY_KEYS; j++) {
            klen = strlen(proxy_keys[j].key);
            snprintf(suffix, sizeof(suffix), "_%s", proxy_keys[j].key);
            for (size_t x = 0; suffix[x]; x++)
                suffix[x] = (char)toupper((unsigned char)suffix[x]);
            if (len > sizeof(pre) - 1 + klen + 1 && !strcmp(var + len - klen - 1, suffix))
                break;
        }
        if (j == NPROXY_KEYS)
            return BAD("environment %s: expected REGISTRY_PROXY_<NAME>_<KEY>, KEY one of url, "
                       "prefix, username, password, tag_ttl, evict_after, ca",
                       var);
        klen = strlen(proxy_keys[j].key);
        len = len - (sizeof(pre) - 1) - klen - 1;
        if (len >= sizeof(name))
            return BAD("environment %s: proxy name too long", var);
        for (size_t x = 0; x < len; x++)
            name[x] = (char)tolower((unsigned char)var[sizeof(pre) - 1 + x]);
        name[len] = '\0';
        snprintf(section, sizeof(section), "proxy.%s", name);
        rc = set_proxy_key(c, section, proxy_keys[j].key, v, msg, sizeof(msg));
        if (rc == REG_E_NOMEM)
            return rc;
        if (rc)
            return BAD("environment %s: %s", var, msg);
        for (size_t x = 0; x < c->nproxies; x++)
            if (!strcmp(c->proxies[x].name, name) && !c->proxies[x].where[0])
                snprintf(c->proxies[x].where, sizeof(c->proxies[x].where), "environment %s", var);
    }
    return REG_OK;
}

int config_env(struct config *c, char *err, size_t errsize)
{
    char name[128], msg[384];
    const char *v;
    size_t i;
    int rc;

    for (i = 0; i < NKEYS; i++) {
        env_name(&keys[i], name, sizeof(name));
        v = getenv(name);
        if (!v)
            continue;
        rc = keys[i].type == CONFIG_LIST ? env_rules(c, &keys[i], v, msg, sizeof(msg))
                                         : set_key(c, c, &keys[i], v, msg, sizeof(msg));
        if (rc == REG_E_NOMEM)
            return rc;
        if (rc)
            return BAD("environment %s: %s", name, msg);
    }
    return env_proxies(c, err, errsize);
}

/* k's value in base (c, or one of its proxies). */
static void format_key(const struct config *c, const void *base, const struct config_key *k,
                       char *buf, size_t size)
{
    unsigned long long n =
        k->type == CONFIG_STRING || k->type == CONFIG_LIST ? 0 : get_num(base, k);
    size_t i;
    int len = 0;

    buf[0] = '\0';
    switch (k->type) {
    case CONFIG_STRING:
        snprintf(buf, size, "%s", str_field_ref(base, k));
        break;
    case CONFIG_BOOL:
        snprintf(buf, size, "%s", n ? "true" : "false");
        break;
    case CONFIG_UNSIGNED:
        snprintf(buf, size, "%llu", n);
        break;
    case CONFIG_SIZE:
        format_size(n, buf, size);
        break;
    case CONFIG_DURATION:
        format_duration(n, buf, size);
        break;
    case CONFIG_ENUM:
        snprintf(buf, size, "%s", k->names[n]);
        break;
    case CONFIG_LIST:
        for (i = 0; i < c->auth_nrules && len >= 0 && (size_t)len < size; i++)
            len += snprintf(buf + len, size - (size_t)len, "%s%s", i ? "\n" : "", c->auth_rules[i]);
        break;
    }
}

void config_format(const struct config *c, const struct config_key *k, char *buf, size_t size)
{
    format_key(c, c, k, buf, size);
}

static int same_list(char **x, size_t nx, char **y, size_t ny)
{
    size_t i;

    if (nx != ny)
        return 0;
    for (i = 0; i < nx; i++)
        if (strcmp(x[i], y[i]) != 0)
            return 0;
    return 1;
}

int config_same(const struct config *a, const struct config *b, const struct config_key *k)
{
    if (k->type == CONFIG_LIST)
        return same_list(a->auth_rules, a->auth_nrules, b->auth_rules, b->auth_nrules);
    if (k->type == CONFIG_STRING)
        return strcmp(str_field_ref(a, k), str_field_ref(b, k)) == 0;
    return get_num(a, k) == get_num(b, k);
}

void config_copy(struct config *dst, const struct config *src, const struct config_key *k)
{
    if (k->type == CONFIG_LIST)
        return;
    memcpy((char *)dst + k->offset, (const char *)src + k->offset, k->width);
}

int config_same_groups(const struct config *a, const struct config *b)
{
    return same_list(a->groups, a->ngroups, b->groups, b->ngroups);
}

int config_same_proxies(const struct config *a, const struct config *b)
{
    size_t i, j;

    if (a->nproxies != b->nproxies)
        return 0;
    for (i = 0; i < a->nproxies; i++) {
        if (strcmp(a->proxies[i].name, b->proxies[i].name) != 0)
            return 0;
        for (j = 0; j < NPROXY_KEYS; j++) {
            const struct config_key *k = &proxy_keys[j];

            if (k->type == CONFIG_STRING
                    ? strcmp(str_field_ref(&a->proxies[i], k), str_field_ref(&b->proxies[i], k))
                    : get_num(&a->proxies[i], k) != get_num(&b->proxies[i], k))
                return 0;
        }
    }
    return 1;
}

int config_copy_proxies(struct config *dst, const struct config *src)
{
    struct config_proxy *v = NULL;

    if (src->nproxies) {
        v = malloc(src->nproxies * sizeof(*v));
        if (!v)
            return REG_E_NOMEM;
        memcpy(v, src->proxies, src->nproxies * sizeof(*v));
    }
    free(dst->proxies);
    dst->proxies = v;
    dst->nproxies = src->nproxies;
    return REG_OK;
}

void config_print(const struct config *c, FILE *f)
{
    const char *section = "";
    char buf[8192];
    size_t i;

    for (i = 0; i < NKEYS; i++) {
        const struct config_key *k = &keys[i];

        if (strcmp(section, k->section) != 0) {
            fprintf(f, "%s[%s]\n", i ? "\n" : "", k->section);
            section = k->section;
        }
        if (k->type == CONFIG_LIST) {
            size_t j;

            for (j = 0; j < c->auth_nrules; j++)
                fprintf(f, "%s = %s\n", k->key, c->auth_rules[j]);
            continue;
        }
        config_format(c, k, buf, sizeof(buf));
        if ((k->flags & CONFIG_SECRET) && buf[0]) {
            fprintf(f, "# %s is set (not shown)\n", k->key);
            continue;
        }
        fprintf(f, "%s =%s%s\n", k->key, buf[0] ? " " : "", buf);
    }
    fprintf(f, "\n[groups]\n");
    for (i = 0; i < c->ngroups; i++) {
        const char *eq = strchr(c->groups[i], '=');

        if (eq)
            fprintf(f, "%.*s = %s\n", (int)(eq - c->groups[i]), c->groups[i], eq + 1);
    }
    for (i = 0; i < c->nproxies; i++) {
        const struct config_proxy *p = &c->proxies[i];
        size_t j;

        fprintf(f, "\n[proxy.%s]\n", p->name);
        for (j = 0; j < NPROXY_KEYS; j++) {
            const struct config_key *k = &proxy_keys[j];

            /* A secret is not printed: check-config's output gets pasted. */
            if (!strcmp(k->key, "password") && p->password[0]) {
                fprintf(f, "; password is set (not shown)\n");
                continue;
            }
            format_key(c, p, k, buf, sizeof(buf));
            fprintf(f, "%s =%s%s\n", k->key, buf[0] ? " " : "", buf);
        }
    }
}

struct load_ctx {
    struct config *c;
    const char *path;
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
    size_t i;

    if (lc->bad_line)
        return 0;
    if (config_set(lc->c, section, key, value, lc->msg, sizeof(lc->msg))) {
        lc->bad_line = lc->lineno;
        return 0;
    }
    /* A proxy's errors name the line of its first key. */
    for (i = 0; !strncmp(section, "proxy.", 6) && i < lc->c->nproxies; i++)
        if (!strcmp(lc->c->proxies[i].name, section + 6) && !lc->c->proxies[i].where[0])
            snprintf(lc->c->proxies[i].where, sizeof(lc->c->proxies[i].where), "%s:%d", lc->path,
                     lc->lineno);
    return 1;
}

int config_load(struct config *c, const char *path, char *err, size_t errsize)
{
    struct load_ctx lc;
    int line;

    memset(&lc, 0, sizeof(lc));
    lc.c = c;
    lc.path = path;
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
