/* registry: serve | gc | fsck | backup | passwd | version | --help */
#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../api/api.h"
#include "../auth/auth.h"
#include "../common/err.h"
#include "../common/file.h"
#include "../common/log.h"
#include "../service/backup.h"
#include "../service/evict.h"
#include "../service/fsck.h"
#include "../service/gc.h"
#include "../service/proxy.h"
#include "../service/service.h"
#include "../service/uploads.h"
#include "../storage/blobstore.h"
#include "../storage/blobstore_s3.h"
#include "../storage/index.h"
#include "config.h"
#include "healthcheck.h"
#include "http.h"
#include "metrics.h"

#ifndef REGISTRY_VERSION
#define REGISTRY_VERSION "0.1.0-dev"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: registry <command> [options]\n"
               "\n"
               "commands:\n"
               "  serve        run the registry server\n"
               "  gc           remove what nothing references (see [gc] in the config)\n"
               "  fsck         check blobs, index and reference counts both ways\n"
               "  backup DEST  write a consistent copy of the data root to DEST\n"
               "  check-config [FILE]  check the configuration, print it as it takes effect\n"
               "  version      print the version\n"
               "  passwd USER  read a password on stdin, print an htpasswd line (bcrypt)\n"
               "  healthcheck  GET /healthz from the configured server (exit 0 if 200)\n"
               "\n"
               "options (override the config file and REGISTRY_<SECTION>_<KEY> variables):\n"
               "  --config FILE      read settings from FILE (INI; see registry.conf.sample)\n"
               "  --root DIR         data directory (default ./data)\n"
               "serve, healthcheck:\n"
               "  --listen HOST:PORT address to serve on (default 127.0.0.1:5000; port 0 = any)\n"
               "  --ready-file FILE  write the bound HOST:PORT to FILE once serving\n"
               "gc:\n"
               "  --dry-run          count what would be removed; may run beside a server\n"
               "fsck:\n"
               "  --repair           fix what is safe (needs the root: stop the server)\n"
               "\n"
               "serve, gc and fsck --repair take the data root for themselves: a second\n"
               "one exits at once, naming the process that holds it. SIGUSR1 to a server\n"
               "starts a GC run now; SIGHUP rereads the configuration.\n");
}

/* What a command line said. */
struct cli {
    const char *config_path, *listen, *root, *ready, *dest;
    int dry_run, repair;
};

/* CLI_DEST: a positional argument that must be there; CLI_FILE: one that may. */
enum { CLI_LISTEN = 1, CLI_READY = 2, CLI_DRY = 4, CLI_REPAIR = 8, CLI_DEST = 16, CLI_FILE = 32 };

static int parse_cli(const char *cmd, int argc, char **argv, unsigned allowed, struct cli *c)
{
    int i;

    memset(c, 0, sizeof(*c));
    for (i = 0; i < argc; i++) {
        const char **dst = NULL;
        const char *a = argv[i];

        if (!strcmp(a, "--config"))
            dst = &c->config_path;
        else if (!strcmp(a, "--root"))
            dst = &c->root;
        else if (!strcmp(a, "--listen") && (allowed & CLI_LISTEN))
            dst = &c->listen;
        else if (!strcmp(a, "--ready-file") && (allowed & CLI_READY))
            dst = &c->ready;
        else if (!strcmp(a, "--dry-run") && (allowed & CLI_DRY)) {
            c->dry_run = 1;
            continue;
        } else if (!strcmp(a, "--repair") && (allowed & CLI_REPAIR)) {
            c->repair = 1;
            continue;
        } else if (a[0] != '-' && (allowed & (CLI_DEST | CLI_FILE)) && !c->dest) {
            c->dest = a;
            continue;
        }
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "registry %s: bad argument '%s'\n", cmd, a);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    if ((allowed & CLI_DEST) && !c->dest) {
        fprintf(stderr, "registry %s: missing destination directory\n", cmd);
        return 2;
    }
    return 0;
}

/* Defaults, then the file, the environment and the flags, in that order. */
static int read_config(const struct cli *c, struct config *cfg, char *err, size_t errsize)
{
    config_defaults(cfg);
    if ((c->config_path && config_load(cfg, c->config_path, err, errsize)) ||
        config_env(cfg, err, errsize) ||
        (c->listen && config_set(cfg, "server", "listen", c->listen, err, errsize)) ||
        (c->root && config_set(cfg, "storage", "root", c->root, err, errsize)) ||
        config_check(cfg, err, errsize)) {
        config_free(cfg);
        return REG_E_CONFIG;
    }
    return REG_OK;
}

static int load_config(const struct cli *c, struct config *cfg)
{
    char err[512];

    if (read_config(c, cfg, err, sizeof(err))) {
        fprintf(stderr, "registry: %s\n", err);
        return 2;
    }
    log_setup((enum log_level)cfg->log_level, (enum log_format)cfg->log_format);
    return 0;
}

/* One process per data root: an fcntl lock on <root>/lock, held for the
 * life of the process (any close of that file would drop it, so it is
 * opened once). The holder's PID is also written there, for people. */
static int lock_root(const char *root, int *out)
{
    char path[4200];
    struct flock fl;
    int fd;

    *out = -1;
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
        log_error("cannot create the data root %s: %s", root, strerror(errno));
        return REG_E_IO;
    }
    snprintf(path, sizeof(path), "%s/lock", root);
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        log_error("cannot open %s: %s", path, strerror(errno));
        return REG_E_IO;
    }
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    if (fcntl(fd, F_SETLK, &fl) != 0) {
        struct flock q;

        memset(&q, 0, sizeof(q));
        q.l_type = F_WRLCK;
        q.l_whence = SEEK_SET;
        if (fcntl(fd, F_GETLK, &q) == 0 && q.l_type != F_UNLCK)
            log_error("the data root %s is in use by process %ld (one registry process per "
                      "root: stop it first, or use --root)",
                      root, (long)q.l_pid);
        else
            log_error("the data root %s is in use by another process", root);
        close(fd);
        return REG_E_CONFIG;
    }
    if (ftruncate(fd, 0) == 0)
        dprintf(fd, "%ld\n", (long)getpid());
    *out = fd;
    return REG_OK;
}

/* The storage modules, opened together. */
struct store {
    struct blobstore *bs;
    struct index *ix;
    struct uploads *us;
};

/* The S3 backend's settings from [s3], credentials from the environment
 * when the file has none. REG_E_CONFIG (logged) when some are missing. */
static int s3_settings(const struct config *cfg, struct blobstore_s3_config *c)
{
    const char *ak = cfg->s3_access_key[0] ? cfg->s3_access_key : getenv("AWS_ACCESS_KEY_ID");
    const char *sk = cfg->s3_secret_key[0] ? cfg->s3_secret_key : getenv("AWS_SECRET_ACCESS_KEY");
    size_t n = strlen(cfg->s3_prefix);

    memset(c, 0, sizeof(*c));
    if (!ak || !*ak || !sk || !*sk) {
        log_error("driver = s3: no credentials: set [s3] access_key and secret_key, or "
                  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
        return REG_E_CONFIG;
    }
    if (strlen(ak) >= sizeof(c->s3.access_key) || strlen(sk) >= sizeof(c->s3.secret_key)) {
        log_error("driver = s3: access or secret key too long");
        return REG_E_CONFIG;
    }
    snprintf(c->s3.endpoint, sizeof(c->s3.endpoint), "%s", cfg->s3_endpoint);
    snprintf(c->s3.region, sizeof(c->s3.region), "%s", cfg->s3_region);
    snprintf(c->s3.bucket, sizeof(c->s3.bucket), "%s", cfg->s3_bucket);
    snprintf(c->s3.prefix, sizeof(c->s3.prefix), "%s%s", cfg->s3_prefix,
             n > 0 && cfg->s3_prefix[n - 1] != '/' ? "/" : "");
    snprintf(c->s3.access_key, sizeof(c->s3.access_key), "%s", ak);
    snprintf(c->s3.secret_key, sizeof(c->s3.secret_key), "%s", sk);
    c->s3.path_style = cfg->s3_path_style;
    c->part_size = cfg->s3_part_size;
    c->redirect = cfg->s3_redirect;
    return REG_OK;
}

static int blobs_open(const struct config *cfg, struct blobstore **out)
{
    struct blobstore_s3_config c;
    int rc;

    if (cfg->storage_driver != CONFIG_DRIVER_S3)
        return blobstore_open(cfg->root, out);
    rc = s3_settings(cfg, &c);
    if (!rc)
        rc = blobstore_open_s3(cfg->root, &c, out);
    explicit_bzero(&c, sizeof(c));
    return rc;
}

static int store_open(const struct config *cfg, int readonly, struct store *st)
{
    int rc = blobs_open(cfg, &st->bs);

    if (!rc)
        rc = readonly ? index_open_readonly(blobstore_index_dir(st->bs), &st->ix)
                      : index_open(blobstore_index_dir(st->bs), cfg->index_max_size, &st->ix);
    if (!rc)
        rc = uploads_new(st->bs, st->ix, &st->us);
    if (!rc && !index_current(st->ix)) {
        log_error("the index at %s was written by an older version: start registry serve on it "
                  "once (it upgrades the index), or use the older binary",
                  cfg->root);
        rc = REG_E_CONFIG;
    }
    if (rc)
        log_error("cannot open storage at %s: %s", cfg->root, reg_strerror(rc));
    return rc;
}

static void store_close(struct store *st)
{
    uploads_free(st->us);
    index_close(st->ix);
    blobstore_close(st->bs);
    memset(st, 0, sizeof(*st));
}

static void gc_options(const struct config *cfg, int dry, struct gc_opts *o)
{
    memset(o, 0, sizeof(*o));
    o->grace = cfg->gc_grace;
    o->upload_ttl = cfg->gc_upload_ttl;
    o->untagged_delete = cfg->gc_untagged;
    o->dry_run = dry;
}

/* GC inside serve: a thread that runs every interval, or at once when
 * poked (SIGUSR1). A reload changes interval and opts under mu. */
struct gc_timer {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop, poke, started;
    long interval;        /* seconds; 0: only when poked */
    struct timespec last; /* monotonic: start, or the end of the last run */
    struct gc_opts opts;
    const char *root;
    struct store *st;
    struct evict *evict;   /* each run starts with an eviction; NULL: none */
    atomic_int *read_only; /* while set, no run starts */
};

static void *gc_thread(void *arg)
{
    struct gc_timer *g = arg;
    struct gc_stats stats;
    struct gc_opts opts;
    char line[640];
    int rc, poked;

    pthread_mutex_lock(&g->mu);
    clock_gettime(CLOCK_MONOTONIC, &g->last);
    while (!g->stop) {
        struct timespec now, next = g->last;

        /* Computed at every wake-up: a reload may have changed interval. */
        next.tv_sec += g->interval;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (!g->poke && (g->interval == 0 || now.tv_sec < next.tv_sec)) {
            if (g->interval == 0)
                pthread_cond_wait(&g->cv, &g->mu);
            else
                pthread_cond_timedwait(&g->cv, &g->mu, &next);
            continue;
        }
        poked = g->poke;
        g->poke = 0;
        opts = g->opts;
        opts.evict = g->evict;
        pthread_mutex_unlock(&g->mu);
        if (atomic_load(g->read_only)) {
            if (poked)
                log_info("gc: not run: the registry is read-only ([storage] read_only)");
        } else {
            rc = gc_run(g->root, g->st->bs, g->st->ix, g->st->us, &opts, &stats);
            metrics_gc_run(rc, &stats);
            if (rc) {
                log_error("gc: %s", reg_strerror(rc));
            } else {
                gc_format(&stats, 0, line, sizeof(line));
                log_info("%s", line);
            }
        }
        pthread_mutex_lock(&g->mu);
        clock_gettime(CLOCK_MONOTONIC, &g->last);
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

/* A reload's GC settings; the thread wakes to reckon its next run. */
static void gc_timer_update(struct gc_timer *g, const struct config *cfg)
{
    pthread_mutex_lock(&g->mu);
    g->interval = cfg->gc_interval;
    gc_options(cfg, 0, &g->opts);
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int gc_timer_start(struct gc_timer *g)
{
    pthread_condattr_t a;

    pthread_mutex_init(&g->mu, NULL);
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(&g->cv, &a);
    pthread_condattr_destroy(&a);
    if (pthread_create(&g->thread, NULL, gc_thread, g) != 0)
        return REG_E_INTERNAL;
    g->started = 1;
    return REG_OK;
}

static void gc_timer_signal(struct gc_timer *g, int stop)
{
    pthread_mutex_lock(&g->mu);
    if (stop)
        g->stop = 1;
    else
        g->poke = 1;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static void gc_timer_stop(struct gc_timer *g)
{
    if (!g->started)
        return;
    gc_timer_signal(g, 1);
    pthread_join(g->thread, NULL);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->mu);
    g->started = 0;
}

static int write_ready_file(const char *path, const char *listen, unsigned port)
{
    char host[256], tmp[4096];
    const char *colon = strrchr(listen, ':');
    size_t hl = colon ? (size_t)(colon - listen) : 0;
    FILE *f;

    if (hl >= sizeof(host))
        hl = sizeof(host) - 1;
    memcpy(host, listen, hl);
    host[hl] = '\0';
    /* Write then rename, so a reader never sees half a line. */
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    f = fopen(tmp, "w");
    if (!f)
        return REG_E_IO;
    fprintf(f, "%s:%u\n", host, port);
    if (fclose(f) != 0 || rename(tmp, path) != 0)
        return REG_E_IO;
    return REG_OK;
}

static void auth_settings_of(const struct config *cfg, struct auth_settings *as_out)
{
    struct auth_settings as;

    memset(&as, 0, sizeof(as));
    as.mode = (enum auth_mode)cfg->auth_mode;
    as.htpasswd = cfg->auth_htpasswd;
    as.realm = cfg->auth_realm;
    as.service = cfg->auth_service;
    as.issuer = cfg->auth_issuer;
    as.key = cfg->auth_key;
    as.trust = cfg->auth_trust;
    as.token_ttl = cfg->auth_token_ttl;
    as.leeway = cfg->auth_leeway;
    as.rules = (const char *const *)cfg->auth_rules;
    as.nrules = cfg->auth_nrules;
    as.groups = (const char *const *)cfg->groups;
    as.ngroups = cfg->ngroups;
    *as_out = as;
}

static int open_auth(const struct config *cfg, struct auth **out)
{
    struct auth_settings as;
    char err[512] = "";
    int rc;

    auth_settings_of(cfg, &as);
    rc = auth_new(&as, out, err, sizeof(err));
    if (rc)
        log_error("auth: %s", err[0] ? err : reg_strerror(rc));
    return rc;
}

/* The settings of struct registry a reload may change. */
static void apply_runtime(struct registry *reg, const struct config *cfg)
{
    svc_set_delete(reg->svc, cfg->delete_enabled);
    svc_set_read_only(reg->svc, cfg->read_only);
    atomic_store(&reg->read_only, cfg->read_only);
    atomic_store(&reg->manifest_budget, cfg->manifest_buffers);
    atomic_store(&reg->ready_min_free, (uint64_t)cfg->ready_min_free);
}

/* What serve keeps to reload its configuration on SIGHUP. */
struct reload {
    const struct cli *cli;
    struct config *boot; /* the configuration read at start; lives until exit */
    struct config *cur;  /* the one in force: boot, or the last reload's */
    struct registry *reg;
    struct gc_timer *gc;
};

/* Append "name" to a comma-separated list in buf. */
static void list_add(char *buf, size_t size, const char *section, const char *name)
{
    size_t len = strlen(buf);

    if (len < size)
        snprintf(buf + len, size - len, "%s%s%s%s", len ? ", " : "", section ? section : "",
                 section ? "." : "", name);
}

/* The pull-through cache of the [proxy.NAME] sections; NULL when none. */
static int open_proxy(const struct config *cfg, struct store *st, struct proxy **out)
{
    struct proxy_conf *v;
    size_t i;
    int rc;

    *out = NULL;
    if (!cfg->nproxies)
        return REG_OK;
    v = calloc(cfg->nproxies, sizeof(*v));
    if (!v)
        return REG_E_NOMEM;
    for (i = 0; i < cfg->nproxies; i++) {
        const struct config_proxy *c = &cfg->proxies[i];

        v[i] = (struct proxy_conf){c->name,     c->url, c->prefix, c->username,
                                   c->password, c->ca,  c->tag_ttl};
        log_info("proxy %s: %s/ mirrors %s (tags revalidated after %lds; repositories %s%ld%s)",
                 c->name, c->prefix[0] ? c->prefix : "(every repository not found locally)", c->url,
                 c->tag_ttl, c->evict_after ? "evicted after " : "never evicted", c->evict_after,
                 c->evict_after ? "s unpulled" : "");
    }
    rc = proxy_new(v, cfg->nproxies, st->bs, st->ix, st->us, cfg->max_manifest_size, out);
    free(v);
    return rc;
}

/* Eviction of the cached repositories of the [proxy.NAME] sections; NULL
 * when none has evict_after. */
static int open_evict(const struct config *cfg, struct index *ix, struct evict **out)
{
    struct evict_rule *v;
    size_t i, due = 0;
    int rc;

    *out = NULL;
    for (i = 0; i < cfg->nproxies; i++)
        due += cfg->proxies[i].evict_after > 0;
    if (!due)
        return REG_OK;
    v = calloc(cfg->nproxies, sizeof(*v));
    if (!v)
        return REG_E_NOMEM;
    for (i = 0; i < cfg->nproxies; i++)
        v[i] = (struct evict_rule){cfg->proxies[i].name, cfg->proxies[i].prefix,
                                   cfg->proxies[i].evict_after};
    rc = evict_new(v, cfg->nproxies, ix, out);
    free(v);
    return rc;
}

/* SIGHUP: read the file and the environment again and apply what may
 * change while serving. Keys that need a restart keep their value and are
 * named; a configuration that does not load, or whose rules or users do
 * not, changes nothing. */
static void reload(struct reload *rl)
{
    struct config *next = calloc(1, sizeof(*next));
    struct auth_settings as;
    char err[512], changed[1024] = "", restart[1024] = "";
    const struct config_key *k;
    size_t n, i;
    int rc;

    if (!next) {
        log_error("reload: the configuration in force stays: out of memory");
        return;
    }
    rc = read_config(rl->cli, next, err, sizeof(err));
    if (rc) {
        log_error("reload: the configuration in force stays: %s", err);
        free(next);
        return;
    }
    k = config_keys(&n);
    for (i = 0; i < n; i++) {
        if (config_same(rl->cur, next, &k[i]))
            continue;
        if (k[i].flags & CONFIG_RELOAD) {
            list_add(changed, sizeof(changed), k[i].section, k[i].key);
        } else {
            list_add(restart, sizeof(restart), k[i].section, k[i].key);
            config_copy(next, rl->cur, &k[i]);
        }
    }
    if (!config_same_groups(rl->cur, next))
        list_add(changed, sizeof(changed), NULL, "groups");
    /* The upstreams are the proxy module's, built once at start. */
    if (!config_same_proxies(rl->cur, next)) {
        list_add(restart, sizeof(restart), NULL, "proxy");
        if (config_copy_proxies(next, rl->cur)) {
            log_error("reload: the configuration in force stays: out of memory");
            config_free(next);
            free(next);
            return;
        }
    }
    /* The pairs a check spans may mix kept and new values. */
    rc = config_check(next, err, sizeof(err));
    if (!rc) {
        auth_settings_of(next, &as);
        rc = auth_reload(rl->reg->auth, &as, err, sizeof(err));
    }
    if (rc) {
        log_error("reload: the configuration in force stays: %s", err);
        config_free(next);
        free(next);
        return;
    }
    log_setup((enum log_level)next->log_level, (enum log_format)next->log_format);
    apply_runtime(rl->reg, next);
    gc_timer_update(rl->gc, next);
    if (restart[0])
        log_warn("reload: needs a restart, keeping the values in force: %s", restart);
    log_info("reload: %s%s; users reread", changed[0] ? "changed " : "nothing changed", changed);
    if (rl->cur != rl->boot) {
        config_free(rl->cur);
        free(rl->cur);
    }
    rl->cur = next;
}

static int start_http(const struct config *cfg, struct registry *reg, char **tls_cert,
                      char **tls_key, struct http_server **srv)
{
    struct http_opts ho;

    if (cfg->tls_cert[0] || cfg->tls_key[0]) {
        *tls_cert = file_read(cfg->tls_cert, 1 << 20, NULL);
        *tls_key = file_read(cfg->tls_key, 1 << 20, NULL);
        if (!*tls_cert || !*tls_key) {
            log_error("tls: cannot read tls_cert %s and tls_key %s", cfg->tls_cert, cfg->tls_key);
            return REG_E_CONFIG;
        }
        reg->tls = 1;
    }
    reg->max_manifest_size = cfg->max_manifest_size;
    reg->root = cfg->root;
    apply_runtime(reg, cfg);
    memset(&ho, 0, sizeof(ho));
    ho.listen = cfg->listen;
    ho.threads = cfg->threads;
    ho.max_connections = cfg->max_connections;
    ho.timeout = cfg->timeout;
    ho.header_timeout = cfg->header_timeout;
    ho.max_per_address = cfg->max_per_address;
    ho.connection_memory = cfg->connection_memory;
    ho.send_buffers = cfg->send_buffers;
    ho.tls_cert = *tls_cert;
    ho.tls_key = *tls_key;
    ho.metrics = cfg->metrics_enabled && !cfg->metrics_listen[0];
    return http_start(&ho, reg, srv);
}

/* [metrics] listen: a second, small listener that serves /metrics alone,
 * in plain HTTP (a scraper on a private address), so that the main one
 * need not. */
static int start_metrics_http(const struct config *cfg, struct registry *reg,
                              struct http_server **srv)
{
    struct http_opts ho;
    int rc;

    *srv = NULL;
    if (!cfg->metrics_enabled || !cfg->metrics_listen[0])
        return REG_OK;
    memset(&ho, 0, sizeof(ho));
    ho.listen = cfg->metrics_listen;
    ho.threads = 1;
    ho.max_connections = 64;
    ho.timeout = cfg->timeout;
    ho.header_timeout = cfg->header_timeout;
    ho.connection_memory = cfg->connection_memory;
    ho.metrics = 1;
    ho.metrics_only = 1;
    rc = http_start(&ho, reg, srv);
    if (!rc)
        log_info("metrics on http %s (port %u)", cfg->metrics_listen, http_port(*srv));
    return rc;
}

/* Every connection is a descriptor: take what the hard limit allows, and
 * say so when max_connections cannot be reached. */
static void raise_fd_limit(unsigned max_connections)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)max_connections + 64)
        log_warn("max_connections %u is above what the open-file limit (%llu) allows",
                 max_connections, (unsigned long long)rl.rlim_cur);
}

/* Wait for a stop signal; SIGUSR1 starts a GC run, SIGHUP reloads the
 * configuration. Then let requests in flight finish, for at most
 * shutdown_timeout. */
static void signal_loop(const sigset_t *sigs, struct gc_timer *g, struct http_server *srv,
                        struct reload *rl)
{
    unsigned shutdown_timeout;
    int sig, i;

    for (;;) {
        sig = 0;
        if (sigwait(sigs, &sig) != 0)
            continue;
        if (sig == SIGINT || sig == SIGTERM)
            break;
        if (sig == SIGUSR1 && g->started) {
            log_info("signal %d: starting a GC run", sig);
            gc_timer_signal(g, 0);
        }
        if (sig == SIGHUP) {
            log_info("signal %d: reloading the configuration", sig);
            reload(rl);
        }
    }
    shutdown_timeout = rl->cur->shutdown_timeout;
    log_info("signal %d: no new connections, letting requests finish", sig);
    http_quiesce(srv);
    for (i = 0; i < (int)shutdown_timeout * 10 && http_in_flight(srv) > 0; i++) {
        struct timespec ts = {0, 100000000L};

        nanosleep(&ts, NULL);
    }
    if (http_in_flight(srv) > 0)
        log_warn("%u requests still in flight, closing them", http_in_flight(srv));
}

static int serve(int argc, char **argv)
{
    struct cli cli;
    struct config cfg;
    struct registry reg;
    struct proxy *proxy = NULL;
    struct evict *evict = NULL;
    struct store st;
    struct gc_timer gct;
    struct reload rl;
    struct http_server *srv = NULL, *msrv = NULL;
    char *tls_cert = NULL, *tls_key = NULL;
    sigset_t sigs;
    uint64_t requests;
    int rc, lockfd = -1;

    rc = parse_cli("serve", argc, argv, CLI_LISTEN | CLI_READY, &cli);
    if (!rc)
        rc = load_config(&cli, &cfg);
    if (rc)
        return rc;
    memset(&reg, 0, sizeof(reg));
    memset(&st, 0, sizeof(st));
    memset(&gct, 0, sizeof(gct));

    /* Block the signals before any thread starts, then wait for them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    raise_fd_limit(cfg.max_connections);
    rc = lock_root(cfg.root, &lockfd);
    if (!rc)
        rc = store_open(&cfg, 0, &st);
    if (!rc)
        rc = open_auth(&cfg, &reg.auth);
    if (rc)
        goto out;
    rc = svc_new(st.bs, st.ix, st.us, cfg.delete_enabled, &reg.svc);
    if (!rc)
        rc = open_proxy(&cfg, &st, &proxy);
    if (!rc)
        rc = open_evict(&cfg, st.ix, &evict);
    if (rc)
        goto out;
    svc_set_proxy(reg.svc, proxy);
    svc_set_evict(reg.svc, evict);
    rc = start_http(&cfg, &reg, &tls_cert, &tls_key, &srv);
    if (!rc)
        rc = start_metrics_http(&cfg, &reg, &msrv);
    if (rc)
        goto out;
    metrics_start(srv);
    gct.interval = cfg.gc_interval;
    gct.root = cfg.root;
    gct.st = &st;
    gct.evict = evict;
    gct.read_only = &reg.read_only;
    gc_options(&cfg, 0, &gct.opts);
    rc = gc_timer_start(&gct);
    if (rc)
        goto out;
    log_info("registry %s serving %s on %s (port %u), root %s (%s blobs%s), auth %s, gc every "
             "%lds",
             REGISTRY_VERSION, reg.tls ? "https" : "http", cfg.listen, http_port(srv), cfg.root,
             blobstore_backend_name(st.bs), cfg.read_only ? ", read-only" : "",
             cfg.auth_mode == AUTH_TOKEN   ? "token"
             : cfg.auth_mode == AUTH_BASIC ? "basic"
                                           : "none",
             cfg.gc_interval);
    if (cli.ready && write_ready_file(cli.ready, cfg.listen, http_port(srv)) != REG_OK)
        log_warn("cannot write %s", cli.ready);
    memset(&rl, 0, sizeof(rl));
    rl.cli = &cli;
    rl.boot = rl.cur = &cfg;
    rl.reg = &reg;
    rl.gc = &gct;
    signal_loop(&sigs, &gct, srv, &rl);
    if (rl.cur != &cfg) {
        config_free(rl.cur);
        free(rl.cur);
    }
out:
    proxy_stop(proxy); /* its waiting requests resumed first: see http_stop */
    http_stop(msrv);
    http_stop(srv);
    gc_timer_stop(&gct);
    /* The pull times of the last minute; read-only, the cache records nothing. */
    if (evict && !atomic_load(&reg.read_only))
        evict_flush(evict);
    auth_free(reg.auth);
    svc_free(reg.svc);
    evict_free(evict);
    proxy_free(proxy);
    free(tls_cert);
    if (tls_key) {
        explicit_bzero(tls_key, strlen(tls_key));
        free(tls_key);
    }
    requests = st.bs ? blobstore_requests(st.bs) : 0;
    store_close(&st);
    if (lockfd >= 0)
        close(lockfd);
    if (!rc && requests)
        log_info("stopped after %llu S3 requests", (unsigned long long)requests);
    else if (!rc)
        log_info("stopped");
    config_free(&cfg);
    return rc ? 1 : 0;
}

/* What a maintenance command works on: its arguments, the configuration,
 * the root (locked when the command writes) and the storage. */
struct command {
    struct cli cli;
    struct config cfg;
    struct store st;
    int lockfd;
};

/* Arguments and configuration; 2 when they are bad (nothing to close). */
static int command_open(struct command *c, const char *name, int argc, char **argv,
                        unsigned allowed)
{
    int rc;

    memset(c, 0, sizeof(*c));
    c->lockfd = -1;
    rc = parse_cli(name, argc, argv, allowed, &c->cli);
    if (!rc)
        rc = load_config(&c->cli, &c->cfg);
    return rc ? 2 : 0;
}

/* The storage, with the root locked first when the command writes. */
static int command_store(struct command *c, int writes)
{
    int rc = writes ? lock_root(c->cfg.root, &c->lockfd) : REG_OK;

    return rc ? rc : store_open(&c->cfg, !writes, &c->st);
}

static void command_close(struct command *c)
{
    store_close(&c->st);
    if (c->lockfd >= 0)
        close(c->lockfd);
    config_free(&c->cfg);
}

/* registry gc [--dry-run]: one run, as the server's timer would do it. A
 * dry run only reads, so it may run beside a live server. */
static int gc_command(int argc, char **argv)
{
    struct command c;
    struct gc_opts o;
    struct gc_stats stats;
    char line[640];
    int rc = command_open(&c, "gc", argc, argv, CLI_DRY);

    if (rc)
        return rc;
    memset(&o, 0, sizeof(o));
    if (c.cfg.read_only && !c.cli.dry_run) {
        log_error("gc: the registry is read-only ([storage] read_only): nothing is removed; "
                  "--dry-run counts");
        command_close(&c);
        return 1;
    }
    rc = command_store(&c, !c.cli.dry_run);
    if (rc && !c.cli.dry_run && c.lockfd < 0)
        log_error("a running server collects garbage itself every [gc] interval; send it "
                  "SIGUSR1 to start a run now");
    if (!rc) {
        gc_options(&c.cfg, c.cli.dry_run, &o);
        rc = open_evict(&c.cfg, c.st.ix, &o.evict);
    }
    if (!rc) {
        rc = gc_run(c.cfg.root, c.st.bs, c.st.ix, c.st.us, &o, &stats);
        if (rc) {
            log_error("gc: %s", reg_strerror(rc));
        } else {
            gc_format(&stats, c.cli.dry_run, line, sizeof(line));
            printf("%s\n", line);
        }
    }
    evict_free(o.evict);
    command_close(&c);
    return rc ? 1 : 0;
}

/* registry fsck [--repair]: exit 0 clean, 1 problems found, 2 could not run.
 * Without --repair it only reads, beside a live server if need be. */
static int fsck_command(int argc, char **argv)
{
    struct command c;
    struct fsck_result res;
    int rc = command_open(&c, "fsck", argc, argv, CLI_REPAIR);

    if (rc)
        return rc;
    rc = command_store(&c, c.cli.repair);
    if (!rc)
        rc = fsck_run(c.st.bs, c.st.ix, c.cli.repair, isatty(2), stdout, &res);
    if (rc) {
        log_error("fsck: could not run: %s", reg_strerror(rc));
    } else {
        printf("fsck: %llu problems%s, %llu crash leftovers, %llu repaired, %llu broken images; "
               "rehashed %llu blobs (%llu bytes) in %.2f s (%.0f MB/s)\n",
               (unsigned long long)res.problems, res.problems ? "" : " (clean)",
               (unsigned long long)res.leftovers, (unsigned long long)res.repaired,
               (unsigned long long)res.broken, (unsigned long long)res.blobs,
               (unsigned long long)res.bytes, res.seconds,
               res.hash_seconds > 0 ? (double)res.bytes / 1e6 / res.hash_seconds : 0.0);
    }
    command_close(&c);
    return rc ? 2 : res.problems ? 1 : 0;
}

/* registry backup DEST: a consistent copy of a (live) root. */
static int backup_command(int argc, char **argv)
{
    struct cli cli;
    struct config cfg;
    struct backup_result res;
    int rc;

    rc = parse_cli("backup", argc, argv, CLI_DEST, &cli);
    if (!rc)
        rc = load_config(&cli, &cfg);
    if (rc)
        return 2;
    rc = backup_run(cfg.root, cli.dest, &res);
    if (rc)
        log_error("backup of %s into %s failed: %s", cfg.root, cli.dest, reg_strerror(rc));
    else
        log_info("backup of %s into %s: index and %llu blobs (%llu bytes, %llu copied, the rest "
                 "hard-linked) in %.2f s",
                 cfg.root, cli.dest, (unsigned long long)res.blobs, (unsigned long long)res.bytes,
                 (unsigned long long)res.copied, res.seconds);
    config_free(&cfg);
    return rc ? 1 : 0;
}

/* registry check-config [FILE]: the configuration as serve would take it
 * (file, then environment, then flags), printed as a file; exit 2 with the
 * reason when it does not load. */
static int check_config_command(int argc, char **argv)
{
    struct cli cli;
    struct config cfg;
    int rc;

    rc = parse_cli("check-config", argc, argv, CLI_LISTEN | CLI_FILE, &cli);
    if (!rc && cli.dest && cli.config_path) {
        fprintf(stderr, "registry check-config: a FILE and --config: give one\n");
        rc = 2;
    }
    if (!rc && cli.dest)
        cli.config_path = cli.dest;
    if (!rc)
        rc = load_config(&cli, &cfg);
    if (rc)
        return 2;
    config_print(&cfg, stdout);
    config_free(&cfg);
    return 0;
}

/* registry healthcheck: the server the configuration (and --listen) names
 * answers GET /healthz with 200; over TLS if it serves TLS. */
static int healthcheck_command(int argc, char **argv)
{
    struct cli cli;
    struct config cfg;
    int rc;

    rc = parse_cli("healthcheck", argc, argv, CLI_LISTEN, &cli);
    if (!rc)
        rc = load_config(&cli, &cfg);
    if (rc)
        return 2;
    rc = healthcheck_run(cfg.listen, cfg.tls_cert[0] != '\0');
    config_free(&cfg);
    return rc;
}

/* registry passwd USER: an htpasswd line with a bcrypt hash (cost 10). */
static int passwd(int argc, char **argv)
{
    char pass[512], salt[64];
    struct crypt_data *cd;
    const char *hash;
    size_t len;

    if (argc != 1 || !argv[0][0] || strchr(argv[0], ':')) {
        fprintf(stderr, "usage: registry passwd USER  (password on stdin)\n");
        return 2;
    }
    if (!fgets(pass, sizeof(pass), stdin)) {
        fprintf(stderr, "registry passwd: no password on stdin\n");
        return 2;
    }
    len = strcspn(pass, "\r\n");
    pass[len] = '\0';
    cd = calloc(1, sizeof(*cd));
    if (!cd || !crypt_gensalt_rn("$2y$", 10, NULL, 0, salt, sizeof(salt))) {
        free(cd);
        fprintf(stderr, "registry passwd: cannot make a bcrypt salt\n");
        return 1;
    }
    hash = crypt_r(pass, salt, cd);
    explicit_bzero(pass, sizeof(pass));
    if (!hash || hash[0] == '*') {
        free(cd);
        fprintf(stderr, "registry passwd: bcrypt failed\n");
        return 1;
    }
    printf("%s:%s\n", argv[0], hash);
    free(cd);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("registry %s\n", REGISTRY_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "serve"))
        return serve(argc - 2, argv + 2);
    if (!strcmp(argv[1], "passwd"))
        return passwd(argc - 2, argv + 2);
    if (!strcmp(argv[1], "gc"))
        return gc_command(argc - 2, argv + 2);
    if (!strcmp(argv[1], "fsck"))
        return fsck_command(argc - 2, argv + 2);
    if (!strcmp(argv[1], "check-config"))
        return check_config_command(argc - 2, argv + 2);
    if (!strcmp(argv[1], "backup"))
        return backup_command(argc - 2, argv + 2);
    if (!strcmp(argv[1], "healthcheck"))
        return healthcheck_command(argc - 2, argv + 2);
    fprintf(stderr, "registry: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
