/* registry: serve | version | --help */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../api/api.h"
#include "../common/err.h"
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
    fprintf(f,
            "usage: registry <command> [options]\n"
            "\n"
            "commands:\n"
            "  serve      run the registry server\n"
            "  version    print the version\n"
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

static int serve(int argc, char **argv)
{
    struct config cfg;
    struct registry reg;
    struct http_server *srv = NULL;
    struct http_opts ho;
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
    if (config_path && config_load(&cfg, config_path, err, sizeof(err))) {
        fprintf(stderr, "registry: %s\n", err);
        return 2;
    }
    if ((listen && config_set(&cfg, "server", "listen", listen, err, sizeof(err))) ||
        (root && config_set(&cfg, "storage", "root", root, err, sizeof(err)))) {
        fprintf(stderr, "registry: %s\n", err);
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
    reg.delete_enabled = cfg.delete_enabled;
    reg.max_manifest_size = cfg.max_manifest_size;
    ho.listen = cfg.listen;
    ho.threads = cfg.threads;
    ho.max_connections = cfg.max_connections;
    ho.timeout = cfg.timeout;
    rc = http_start(&ho, &reg, &srv);
    if (rc)
        goto out;
    log_info("registry %s serving on %s (port %u), root %s", REGISTRY_VERSION, cfg.listen,
             http_port(srv), cfg.root);
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
        struct timespec ts = {0, 100 * 1000 * 1000};

        nanosleep(&ts, NULL);
    }
    if (http_in_flight(srv) > 0)
        log_warn("%u requests still in flight, closing them", http_in_flight(srv));
out:
    http_stop(srv);
    uploads_free(reg.us);
    index_close(reg.ix);
    blobstore_close(reg.bs);
    if (!rc)
        log_info("stopped");
    return rc ? 1 : 0;
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
    fprintf(stderr, "registry: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
