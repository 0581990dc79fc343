/* registry: serve | version | --help */
#include <crypt.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../api/api.h"
#include "../auth/auth.h"
#include "../common/err.h"
#include "../common/file.h"
#include "../common/log.h"
#include "../storage/blobstore.h"
#include "../storage/index.h"
#include "../storage/uploads.h"
#include "config.h"
#include "http.h"

#ifndef REGISTRY_VERSION
#define REGISTRY_VERSION "0.1.0-dev"
#endif

static void usage(FILE *f)
{
    fprintf(f, "usage: registry <command> [options]\n"
               "\n"
               "commands:\n"
               "  serve      run the registry server\n"
               "  version    print the version\n"
               "  passwd USER  read a password on stdin, print an htpasswd line (bcrypt)\n"
               "\n"
               "serve options (override the config file):\n"
               "  --config FILE      read settings from FILE (INI; see registry.conf.sample)\n"
               "  --listen HOST:PORT address to serve on (default 127.0.0.1:5000; port 0 = any)\n"
               "  --root DIR         data directory (default ./data)\n"
               "  --ready-file FILE  write the bound HOST:PORT to FILE once serving\n");
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

static int open_auth(const struct config *cfg, struct auth **out)
{
    struct auth_settings as;
    char err[512] = "";
    int rc;

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
    rc = auth_new(&as, out, err, sizeof(err));
    if (rc)
        log_error("auth: %s", err[0] ? err : reg_strerror(rc));
    return rc;
}

static int serve(int argc, char **argv)
{
    struct config cfg;
    struct registry reg;
    struct http_server *srv = NULL;
    struct http_opts ho;
    char *tls_cert = NULL, *tls_key = NULL;
    const char *config_path = NULL, *listen = NULL, *root = NULL, *ready = NULL;
    char err[512];
    sigset_t sigs;
    int i, sig, rc;

    memset(&reg, 0, sizeof(reg));
    for (i = 0; i < argc; i++) {
        const char **dst = NULL;

        if (!strcmp(argv[i], "--config"))
            dst = &config_path;
        else if (!strcmp(argv[i], "--listen"))
            dst = &listen;
        else if (!strcmp(argv[i], "--root"))
            dst = &root;
        else if (!strcmp(argv[i], "--ready-file"))
            dst = &ready;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "registry serve: bad argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
        *dst = argv[++i];
    }
    config_defaults(&cfg);
    if ((config_path && config_load(&cfg, config_path, err, sizeof(err))) ||
        (listen && config_set(&cfg, "server", "listen", listen, err, sizeof(err))) ||
        (root && config_set(&cfg, "storage", "root", root, err, sizeof(err)))) {
        fprintf(stderr, "registry: %s\n", err);
        config_free(&cfg);
        return 2;
    }
    log_setup((enum log_level)cfg.log_level, (enum log_format)cfg.log_format);

    /* Block the stop signals before any thread starts, then wait for them. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = blobstore_open(cfg.root, &reg.bs);
    if (!rc)
        rc = index_open(blobstore_index_dir(reg.bs), cfg.index_max_size, &reg.ix);
    if (!rc)
        rc = uploads_new(reg.bs, reg.ix, &reg.us);
    if (rc) {
        log_error("cannot open storage at %s: %s", cfg.root, reg_strerror(rc));
        goto out;
    }
    rc = open_auth(&cfg, &reg.auth);
    if (rc)
        goto out;
    if (cfg.tls_cert[0] || cfg.tls_key[0]) {
        tls_cert = file_read(cfg.tls_cert, 1 << 20, NULL);
        tls_key = file_read(cfg.tls_key, 1 << 20, NULL);
        if (!tls_cert || !tls_key) {
            log_error("tls: cannot read tls_cert %s and tls_key %s", cfg.tls_cert, cfg.tls_key);
            rc = REG_E_CONFIG;
            goto out;
        }
        reg.tls = 1;
    }
    reg.delete_enabled = cfg.delete_enabled;
    reg.max_manifest_size = cfg.max_manifest_size;
    ho.listen = cfg.listen;
    ho.threads = cfg.threads;
    ho.max_connections = cfg.max_connections;
    ho.timeout = cfg.timeout;
    ho.tls_cert = tls_cert;
    ho.tls_key = tls_key;
    rc = http_start(&ho, &reg, &srv);
    if (rc)
        goto out;
    log_info("registry %s serving %s on %s (port %u), root %s, auth %s", REGISTRY_VERSION,
             reg.tls ? "https" : "http", cfg.listen, http_port(srv), cfg.root,
             cfg.auth_mode == AUTH_TOKEN   ? "token"
             : cfg.auth_mode == AUTH_BASIC ? "basic"
                                           : "none");
    if (ready && write_ready_file(ready, cfg.listen, http_port(srv)) != REG_OK)
        log_warn("cannot write %s", ready);

    do {
        sig = 0;
        if (sigwait(&sigs, &sig) != 0)
            sig = 0;
    } while (sig != SIGINT && sig != SIGTERM);
    log_info("signal %d: no new connections, letting requests finish", sig);
    http_quiesce(srv);
    for (i = 0; i < (int)cfg.shutdown_timeout * 10 && http_in_flight(srv) > 0; i++) {
        struct timespec ts = {0, 100000000L};

        nanosleep(&ts, NULL);
    }
    if (http_in_flight(srv) > 0)
        log_warn("%u requests still in flight, closing them", http_in_flight(srv));
out:
    http_stop(srv);
    auth_free(reg.auth);
    free(tls_cert);
    if (tls_key) {
        explicit_bzero(tls_key, strlen(tls_key));
        free(tls_key);
    }
    config_free(&cfg);
    uploads_free(reg.us);
    index_close(reg.ix);
    blobstore_close(reg.bs);
    if (!rc)
        log_info("stopped");
    return rc ? 1 : 0;
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
    fprintf(stderr, "registry: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
