/* registry healthcheck: the container image's HEALTHCHECK. It asks the
 * server its configuration names for /healthz, over TLS when that server
 * serves TLS, and says so in its exit status. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct server srv;

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(healthcheck, .fini = teardown, .timeout = 60);

/* "127.0.0.1:PORT" of the running server. */
static const char *hostport(void)
{
    return srv.base + strlen("http://");
}

Test(healthcheck, exits_0_for_a_serving_server_and_1_once_it_is_gone)
{
    char args[600], out[1024], port[16];

    server_start(&srv, NULL);
    snprintf(args, sizeof(args), "healthcheck --listen %s", hostport());
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "healthy: http://127.0.0.1:") && strstr(out, " 200 "), "%s", out);
    /* A wildcard listen address is asked on loopback. */
    snprintf(port, sizeof(port), "%s", strrchr(hostport(), ':') + 1);
    snprintf(args, sizeof(args), "healthcheck --listen 0.0.0.0:%s", port);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert_eq(server_stop(&srv), 0);
    snprintf(args, sizeof(args), "healthcheck --listen 127.0.0.1:%s", port);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 1, "%s", out);
    cr_assert(strstr(out, "cannot connect"), "%s", out);
}

Test(healthcheck, follows_the_configuration_file_to_a_tls_server)
{
    char cfg[4096], cmd[1500], args[1200], out[1024];

    server_prepare(&srv);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 "
             "-subj /CN=127.0.0.1 2>/dev/null",
             server_file(&srv, "tls.key", NULL), server_file(&srv, "tls.crt", NULL));
    cr_assert_eq(system(cmd), 0);
    snprintf(cfg, sizeof(cfg), "[server]\ntls_cert = %s\ntls_key = %s\n",
             server_file(&srv, "tls.crt", NULL), server_file(&srv, "tls.key", NULL));
    server_launch(&srv, cfg);
    /* The file says TLS: the probe speaks it. */
    snprintf(args, sizeof(args), "healthcheck --config %s --listen %s", srv.config, hostport());
    cr_assert_eq(registry_run(args, out, sizeof(out)), 0, "%s", out);
    cr_assert(strstr(out, "healthy: https://"), "%s", out);
    /* Without the file it speaks plain HTTP, which a TLS server does not answer. */
    snprintf(args, sizeof(args), "healthcheck --listen %s", hostport());
    cr_assert_eq(registry_run(args, out, sizeof(out)), 1, "%s", out);
}

Test(healthcheck, a_bad_address_or_configuration_is_status_2)
{
    char out[1024];

    cr_assert_eq(registry_run("healthcheck --listen nonsense", out, sizeof(out)), 2, "%s", out);
    cr_assert_eq(registry_run("healthcheck --config /nonexistent/registry.conf", out, sizeof(out)),
                 2, "%s", out);
    cr_assert_eq(registry_run("healthcheck --dry-run", out, sizeof(out)), 2, "%s", out);
}
