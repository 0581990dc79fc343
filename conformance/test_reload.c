/* SIGHUP rereads the configuration: rules, groups, users, log level and
 * the run-time limits change without a restart, keys that need one keep
 * their value, a broken file changes nothing. And [storage] read_only:
 * writes refused, reads served, no GC. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <openssl/evp.h>

#include "harness.h"

static struct server srv;

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(reload, .fini = teardown, .timeout = 120);
TestSuite(read_only, .fini = teardown, .timeout = 120);

static const char *bin(void)
{
    return getenv("REGISTRY_BIN") ? getenv("REGISTRY_BIN") : "build/registry";
}

/* htpasswd lines for "user:password" pairs, into the root's htpasswd. */
static void write_htpasswd(const char *const *pairs)
{
    char cmd[4096] = "(true", *p;
    size_t len = strlen(cmd);

    for (; *pairs; pairs++) {
        char user[64];

        p = strchr(*pairs, ':');
        cr_assert_not_null(p);
        snprintf(user, sizeof(user), "%.*s", (int)(p - *pairs), *pairs);
        len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, " && echo %s | %s passwd %s", p + 1,
                                bin(), user);
    }
    snprintf(cmd + len, sizeof(cmd) - len, ") > %s.new 2>/dev/null && mv %s.new %s",
             server_file(&srv, "htpasswd", NULL), server_file(&srv, "htpasswd", NULL),
             server_file(&srv, "htpasswd", NULL));
    cr_assert_eq(system(cmd), 0, "registry passwd");
}

static void write_config(const char *text)
{
    FILE *f = fopen(srv.config, "w");

    cr_assert_not_null(f);
    cr_assert(fputs(text, f) >= 0);
    cr_assert_eq(fclose(f), 0);
}

/* Send sig and wait (up to 10 s) until a new log line holds needle. */
static void signal_and_wait(int sig, const char *needle)
{
    struct timespec ts = {0, 50 * 1000 * 1000};
    int before = server_log_find(&srv, needle, NULL, 0), i;

    cr_assert_eq(kill(srv.pid, sig), 0);
    for (i = 0; i < 200 && server_log_find(&srv, needle, NULL, 0) <= before; i++)
        nanosleep(&ts, NULL);
    cr_assert_gt(server_log_find(&srv, needle, NULL, 0), before, "no log line '%s' after signal %d",
                 needle, sig);
}

static char *basic(const char *user, const char *pass)
{
    static char h[4][300];
    static int next;
    char *out = h[next++ % 4], creds[128];
    unsigned char enc[200];

    snprintf(creds, sizeof(creds), "%s:%s", user, pass);
    EVP_EncodeBlock(enc, (unsigned char *)creds, (int)strlen(creds));
    snprintf(out, sizeof(h[0]), "Authorization: Basic %s", enc);
    return out;
}

/* method on path as user:pass (NULL: anonymous): the status; the error
 * code and message into code and msg when given. */
static long as(const char *auth, const char *method, const char *path, char *code, size_t csize,
               char *msg, size_t msize)
{
    const char *hdrs[] = {auth, NULL};
    struct resp r;
    long st;

    http(&srv, method, path, NULL, 0, auth ? hdrs : NULL, &r);
    st = r.status;
    if (code)
        resp_error_code(&r, code, csize);
    if (msg) {
        const char *m = strstr(r.body ? r.body : "", "\"message\":\"");

        snprintf(msg, msize, "%s", m ? m + 11 : "");
        msg[strcspn(msg, "\"")] = '\0';
    }
    resp_free(&r);
    return st;
}

#define BASIC_CONF                                                                                 \
    "[auth]\nmode = basic\nhtpasswd = %s\nrule = user:alice pull *\n"                              \
    "[log]\nlevel = info\n"

static void start_basic(void)
{
    static const char *const users[] = {"alice:secret", NULL};
    char conf[1024];

    server_prepare(&srv);
    write_htpasswd(users);
    snprintf(conf, sizeof(conf), BASIC_CONF, server_file(&srv, "htpasswd", NULL));
    server_launch(&srv, conf);
}

Test(reload, hup_applies_new_rules_groups_users_and_log_level)
{
    static const char *const users[] = {"alice:secret", "carol:pw3", NULL};
    const char *alice = basic("alice", "secret"), *carol = basic("carol", "pw3");
    char conf[1024];

    start_basic();
    cr_assert_eq(as(alice, "GET", "/v2/app/tags/list", NULL, 0, NULL, 0), 404);
    cr_assert_eq(as(alice, "POST", "/v2/app/blobs/uploads/", NULL, 0, NULL, 0), 403);
    cr_assert_eq(as(carol, "GET", "/v2/", NULL, 0, NULL, 0), 401);
    cr_assert_eq(server_log_find(&srv, "checking the password", NULL, 0), 0, "debug at info");

    write_htpasswd(users);
    snprintf(conf, sizeof(conf),
             "[auth]\nmode = basic\nhtpasswd = %s\nrule = group:writers * *\n"
             "[groups]\nwriters = alice, carol\n[log]\nlevel = debug\n",
             server_file(&srv, "htpasswd", NULL));
    write_config(conf);
    signal_and_wait(SIGHUP, "reload: changed");
    cr_assert_gt(server_log_find(&srv, "reload: changed", conf, sizeof(conf)), 0);
    cr_assert(strstr(conf, "log.level") && strstr(conf, "auth.rule") && strstr(conf, "groups"),
              "the reload line names what changed: %s", conf);

    cr_assert_eq(as(alice, "POST", "/v2/app/blobs/uploads/", NULL, 0, NULL, 0), 202,
                 "the new rule is not in force");
    cr_assert_eq(as(carol, "POST", "/v2/app/blobs/uploads/", NULL, 0, NULL, 0), 202,
                 "the new user or the group is not in force");
    cr_assert_gt(server_log_find(&srv, "checking the password", NULL, 0), 0,
                 "the debug level is not in force");
}

Test(reload, a_broken_file_or_rule_keeps_every_setting_in_force)
{
    const char *alice = basic("alice", "secret");
    char conf[1024], line[512];

    start_basic();
    write_config("[server]\nthreads = 0\n[auth]\nmode = basic\nrule = user:alice * *\n");
    signal_and_wait(SIGHUP, "the configuration in force stays");
    server_log_find(&srv, "the configuration in force stays", line, sizeof(line));
    cr_assert(strstr(line, "threads"), "the log says why: %s", line);
    cr_assert_eq(as(alice, "GET", "/v2/app/tags/list", NULL, 0, NULL, 0), 404);
    cr_assert_eq(as(alice, "POST", "/v2/app/blobs/uploads/", NULL, 0, NULL, 0), 403,
                 "a rule of the refused file is in force");

    snprintf(conf, sizeof(conf),
             "[auth]\nmode = basic\nhtpasswd = %s\nrule = user:alice * *\n"
             "rule = nobody pull *\n",
             server_file(&srv, "htpasswd", NULL));
    write_config(conf);
    signal_and_wait(SIGHUP, "the configuration in force stays");
    cr_assert_eq(as(alice, "POST", "/v2/app/blobs/uploads/", NULL, 0, NULL, 0), 403,
                 "a rule beside a bad one is in force");
    cr_assert_eq(as(alice, "GET", "/v2/", NULL, 0, NULL, 0), 200, "the server stopped serving");
}

Test(reload, keys_that_need_a_restart_are_named_and_keep_their_value)
{
    char line[512];
    long port_before = (long)strlen(srv.base);

    server_start(&srv, "[server]\nthreads = 2\n[gc]\ninterval = 0\n");
    port_before = strtol(strrchr(srv.base, ':') + 1, NULL, 10);
    /* listen comes from the command line (the harness's --listen), which
     * a reload applies again: a change of it in the file is no change. */
    write_config("[server]\nthreads = 3\nlisten = 127.0.0.1:1\nconnection_memory = 32K\n"
                 "[gc]\ninterval = 2h\n");
    signal_and_wait(SIGHUP, "reload: changed");
    cr_assert_gt(server_log_find(&srv, "needs a restart", line, sizeof(line)), 0);
    cr_assert(strstr(line, "server.connection_memory") && strstr(line, "server.threads") &&
                  !strstr(line, "listen"),
              "%s", line);
    server_log_find(&srv, "reload: changed", line, sizeof(line));
    cr_assert(strstr(line, "gc.interval") && !strstr(line, "threads"), "%s", line);
    cr_assert_eq(strtol(strrchr(srv.base, ':') + 1, NULL, 10), port_before);
    cr_assert_eq(as(NULL, "GET", "/v2/", NULL, 0, NULL, 0), 200, "still serving where it was");
}

/* ---- read-only ------------------------------------------------------------------ */

/* One blob and a manifest of it in app:v1, pushed while writable. */
static void push_image(char *blob, size_t bsize)
{
    char manifest[1024];
    void *data = rand_bytes(1000);

    push_blob(&srv, "app", data, 1000, blob, bsize);
    free(data);
    snprintf(manifest, sizeof(manifest),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":1000},\"layers\":[]}",
             blob);
    cr_assert_eq(http_put_manifest(&srv, "app", "v1", "application/vnd.oci.image.manifest.v1+json",
                                   manifest, strlen(manifest), NULL),
                 201);
}

/* Every kind of write is refused with 405 UNSUPPORTED and the message. */
static void expect_writes_refused(const char *blob)
{
    static const char *const writes[][2] = {
        {"POST", "/v2/app/blobs/uploads/"},   {"PUT", "/v2/app/manifests/v2"},
        {"DELETE", "/v2/app/manifests/v1"},   {"DELETE", "/v2/app/blobs/%s"},
        {"PATCH", "/v2/app/blobs/uploads/x"}, {"PUT", "/v2/app/blobs/uploads/x?digest=%s"},
    };
    char path[256], code[64], msg[256];
    size_t i;

    for (i = 0; i < sizeof(writes) / sizeof(writes[0]); i++) {
        snprintf(path, sizeof(path), writes[i][1], blob);
        cr_assert_eq(as(NULL, writes[i][0], path, code, sizeof(code), msg, sizeof(msg)), 405,
                     "%s %s", writes[i][0], path);
        cr_assert_str_eq(code, "UNSUPPORTED");
        cr_assert_str_eq(msg, "registry is in read-only mode", "%s %s", writes[i][0], path);
    }
}

static void expect_reads_served(const char *blob)
{
    char path[256];

    snprintf(path, sizeof(path), "/v2/app/blobs/%s", blob);
    cr_assert_eq(as(NULL, "GET", path, NULL, 0, NULL, 0), 200);
    cr_assert_eq(as(NULL, "HEAD", "/v2/app/manifests/v1", NULL, 0, NULL, 0), 200);
    cr_assert_eq(as(NULL, "GET", "/v2/app/tags/list", NULL, 0, NULL, 0), 200);
    cr_assert_eq(as(NULL, "GET", "/v2/_catalog", NULL, 0, NULL, 0), 200);
    cr_assert_eq(as(NULL, "GET", "/readyz", NULL, 0, NULL, 0), 200, "read-only is still ready");
}

Test(read_only, from_the_file_writes_get_405_and_reads_go_on)
{
    char blob[100];

    server_start(&srv, "[storage]\ndelete = true\n");
    push_image(blob, sizeof(blob));
    server_stop(&srv);
    write_config("[storage]\ndelete = true\nread_only = true\n");
    server_restart(&srv);
    expect_writes_refused(blob);
    expect_reads_served(blob);
}

Test(read_only, switched_by_reload_both_ways_and_gc_waits)
{
    char blob[100];

    server_start(&srv, "[storage]\ndelete = true\n[gc]\ninterval = 0\n");
    push_image(blob, sizeof(blob));
    write_config("[storage]\ndelete = true\nread_only = true\n[gc]\ninterval = 0\n");
    signal_and_wait(SIGHUP, "reload: changed");
    expect_writes_refused(blob);
    expect_reads_served(blob);
    signal_and_wait(SIGUSR1, "gc: not run: the registry is read-only");
    cr_assert_eq(server_log_find(&srv, "gc: freed", NULL, 0), 0, "a GC ran while read-only");

    write_config("[storage]\ndelete = true\n[gc]\ninterval = 0\n");
    signal_and_wait(SIGHUP, "reload: changed");
    cr_assert_eq(as(NULL, "POST", "/v2/app/blobs/uploads/", NULL, 0, NULL, 0), 202);
    cr_assert_eq(as(NULL, "DELETE", "/v2/app/manifests/v1", NULL, 0, NULL, 0), 202);
    signal_and_wait(SIGUSR1, "gc: freed");
}

Test(read_only, registry_gc_refuses_to_remove_anything)
{
    char cmd[800], out[2048];
    int rc;

    server_start(&srv, "[log]\nlevel = info\n");
    server_stop(&srv);
    write_config("[storage]\nread_only = true\n");
    snprintf(cmd, sizeof(cmd), "gc --config %s --root %s/data", srv.config, srv.root);
    rc = registry_run(cmd, out, sizeof(out));
    cr_assert_eq(rc, 1, "%s", out);
    cr_assert(strstr(out, "read-only"), "%s", out);
    snprintf(cmd, sizeof(cmd), "gc --dry-run --config %s --root %s/data", srv.config, srv.root);
    cr_assert_eq(registry_run(cmd, out, sizeof(out)), 0, "%s", out);
}
