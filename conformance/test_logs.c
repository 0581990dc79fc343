/* The access line: one per request, with client address, user, request
 * number, method, path, status, bytes and duration, as text or as JSON
 * lines, and never a credential. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include "harness.h"

static struct server srv;

/* alice/secret may do everything. */
static void start(const char *format)
{
    const char *bin = getenv("REGISTRY_BIN") ? getenv("REGISTRY_BIN") : "build/registry";
    char cmd[1200], cfg[1024];

    server_prepare(&srv);
    snprintf(cmd, sizeof(cmd), "echo secret | %s passwd alice > %s 2>/dev/null", bin,
             server_file(&srv, "htpasswd", NULL));
    cr_assert_eq(system(cmd), 0, "registry passwd");
    snprintf(cfg, sizeof(cfg),
             "[log]\nformat = %s\n[auth]\nmode = basic\nhtpasswd = %s\nrule = user:alice * *\n",
             format, server_file(&srv, "htpasswd", NULL));
    server_launch(&srv, cfg);
}

static void teardown(void)
{
    server_destroy(&srv);
}

/* GET path as alice ("YWxpY2U6c2VjcmV0" is alice:secret); the status. */
static long get_as_alice(const char *path)
{
    const char *hdrs[] = {"Authorization: Basic YWxpY2U6c2VjcmV0", NULL};
    struct resp r;
    long s;

    http(&srv, "GET", path, NULL, 0, hdrs, &r);
    s = r.status;
    resp_free(&r);
    return s;
}

/* The whole first line of the log that holds needle; 0 when none does. */
static int find_line(const char *needle, char *out, size_t size)
{
    FILE *f = fopen(server_file(&srv, "server.log", NULL), "r");
    char *line = NULL;
    size_t cap = 0;
    int found = 0;

    if (!f)
        return 0;
    while (!found && getline(&line, &cap, f) > 0) {
        if (strstr(line, needle)) {
            line[strcspn(line, "\n")] = '\0';
            snprintf(out, size, "%s", line);
            found = 1;
        }
    }
    free(line);
    fclose(f);
    return found;
}

/* The log's first line holding needle, waiting for it (the line is written
 * once the reply has gone out, so it may come a moment after it). */
static void wait_line(const char *needle, char *line, size_t size)
{
    struct timespec ts = {0, 50 * 1000 * 1000};
    int i;

    for (i = 0; i < 200; i++) {
        if (find_line(needle, line, size))
            return;
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("no log line holds '%s'", needle);
}

static void no_secret_in_the_log(void)
{
    char line[4096];

    cr_assert_not(server_log_find(&srv, "secret", line, sizeof(line)), "a password: %s", line);
    cr_assert_not(server_log_find(&srv, "YWxpY2U6", line, sizeof(line)),
                  "an Authorization header: %s", line);
}

Test(logs, a_text_access_line_names_client_user_request_and_outcome, .fini = teardown)
{
    char line[4096], want[256];
    unsigned long long id;

    start("text");
    cr_assert_eq(get_as_alice("/v2/"), 200);
    cr_assert_eq(get_as_alice("/v2/no/such/manifests/v1"), 404);
    wait_line(" GET /v2/ 200 ", line, sizeof(line));
    cr_assert_not_null(strstr(line, " info  127.0.0.1 alice #"), "%s", line);
    cr_assert_eq(sscanf(strstr(line, " #") + 2, "%llu", &id), 1, "%s", line);
    cr_assert_not_null(strstr(line, "ms"), "a duration: %s", line);
    /* The next request has the next number. */
    snprintf(want, sizeof(want), "alice #%llu GET /v2/no/such/manifests/v1 404 ", id + 1);
    wait_line(want, line, sizeof(line));
    no_secret_in_the_log();
}

Test(logs, a_json_access_line_has_every_field, .fini = teardown)
{
    char line[4096];
    json_t *o;
    const char *keys[] = {"time",    "level", "client", "user",  "method",
                          "request", "path",  "status", "bytes", "ms"};
    size_t i;

    start("json");
    cr_assert_eq(get_as_alice("/v2/"), 200);
    wait_line("\"path\":\"/v2/\"", line, sizeof(line));
    o = json_loads(line, 0, NULL);
    cr_assert_not_null(o, "not one JSON object per line: %s", line);
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        cr_assert_not_null(json_object_get(o, keys[i]), "no %s in %s", keys[i], line);
    cr_assert_str_eq(json_string_value(json_object_get(o, "client")), "127.0.0.1");
    cr_assert_str_eq(json_string_value(json_object_get(o, "user")), "alice");
    cr_assert_str_eq(json_string_value(json_object_get(o, "method")), "GET");
    cr_assert_eq(json_integer_value(json_object_get(o, "status")), 200);
    cr_assert_eq(json_integer_value(json_object_get(o, "bytes")), 2, "the body {} is 2 bytes");
    cr_assert(json_is_number(json_object_get(o, "ms")));
    cr_assert_gt(json_integer_value(json_object_get(o, "request")), 0);
    json_decref(o);
    no_secret_in_the_log();
}
