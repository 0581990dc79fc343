/* /healthz and /readyz: no credentials needed, cheap, and readiness says
 * no when the registry could not take a push. */
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

TestSuite(health, .fini = teardown, .timeout = 60);

static long status_of(const char *method, const char *path, char *body, size_t size)
{
    struct resp r;
    long st;

    http(&srv, method, path, NULL, 0, NULL, &r);
    st = r.status;
    if (body)
        snprintf(body, size, "%s", r.body);
    resp_free(&r);
    return st;
}

Test(health, probes_answer_without_credentials_while_everything_else_asks_for_them)
{
    char body[256];

    server_prepare(&srv);
    server_file(&srv, "htpasswd",
                "alice:$2y$10$Xc1S6x1yqU0l5nE0yMiVQ.0pUzN1nOq0o1c2t8mUuQW3HrcZ0sNbK\n");
    {
        char conf[600];

        snprintf(conf, sizeof(conf), "[auth]\nmode = basic\nhtpasswd = %s\n",
                 server_file(&srv, "htpasswd", NULL));
        server_launch(&srv, conf);
    }
    cr_assert_eq(status_of("GET", "/v2/", NULL, 0), 401);
    cr_assert_eq(status_of("GET", "/healthz", body, sizeof(body)), 200);
    cr_assert_str_eq(body, "ok\n");
    cr_assert_eq(status_of("HEAD", "/healthz", NULL, 0), 200);
    cr_assert_eq(status_of("GET", "/readyz", body, sizeof(body)), 200, "%s", body);
    cr_assert_str_eq(body, "ready\n");
    cr_assert_eq(status_of("POST", "/healthz", NULL, 0), 405);
}

Test(health, readyz_says_no_when_free_space_is_below_the_floor)
{
    char body[256];

    /* More free space than any test machine has. */
    server_start(&srv, "[storage]\nready_min_free = 1048576G\n");
    cr_assert_eq(status_of("GET", "/readyz", body, sizeof(body)), 503);
    cr_assert(strstr(body, "ready_min_free"), "%s", body);
    cr_assert_eq(status_of("GET", "/healthz", NULL, 0), 200, "alive all the same");
    cr_assert_eq(status_of("GET", "/v2/", NULL, 0), 200);
}
