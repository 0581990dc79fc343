/* Crash safety: kill -9 the server while clients push, restart it, and
 * check that everything acknowledged is there, intact, and that nothing
 * else is visible half-written. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static struct server srv;

static void setup(void)
{
    server_start(&srv, NULL);
}

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(crash, .init = setup, .fini = teardown, .timeout = 180);

/* Deterministic content for blob i of round r, so the checker can rebuild it. */
static char *content(int r, int i, size_t *len)
{
    char *p;
    size_t k;

    *len = 20000 + (size_t)((i * 7919) % 200000);
    p = malloc(*len);
    for (k = 0; k < *len; k++)
        p[k] = (char)((k * 31 + (size_t)i * 17 + (size_t)r * 101) & 0xff);
    return p;
}

/* A pusher: monolithic and chunked uploads, one line per 201 in ack. */
static void pusher(int r, int first, const char *ack)
{
    int fd = open(ack, O_WRONLY | O_CREAT | O_APPEND, 0644), i;

    srv.no_assert = 1; /* the server dies under us: stop quietly */

    for (i = first; i < first + 10000; i++) {
        char d[200], path[600], line[64];
        size_t len;
        char *data = content(r, i, &len);
        struct resp rs;
        int n;

        digest_str("sha256", data, len, d, sizeof(d));
        if (i % 2) {
            snprintf(path, sizeof(path), "/v2/crash/r%d/blobs/uploads/?digest=%s", r, d);
            http(&srv, "POST", path, data, len, NULL, &rs);
        } else {
            char loc[400], cr[64], full[1024];
            const char *h[] = {cr, NULL};

            snprintf(path, sizeof(path), "/v2/crash/r%d/blobs/uploads/", r);
            http(&srv, "POST", path, NULL, 0, NULL, &rs);
            if (rs.status != 202 || !resp_header(&rs, "Location", loc, sizeof(loc)))
                _exit(0);
            resp_free(&rs);
            snprintf(cr, sizeof(cr), "Content-Range: 0-%zu", len / 2 - 1);
            http(&srv, "PATCH", loc, data, len / 2, h, &rs);
            if (rs.status != 202)
                _exit(0);
            resp_free(&rs);
            snprintf(full, sizeof(full), "%s?digest=%s", loc, d);
            http(&srv, "PUT", full, data + len / 2, len - len / 2, NULL, &rs);
        }
        free(data);
        if (rs.status != 201) {
            resp_free(&rs);
            _exit(0);
        }
        resp_free(&rs);
        n = snprintf(line, sizeof(line), "%d\n", i);
        if (write(fd, line, (size_t)n) != n)
            _exit(1);
    }
    _exit(0);
}

Test(crash, kill_9_during_pushes_loses_nothing_acknowledged_and_shows_nothing_partial)
{
    char ack[400];
    int r, acked_total = 0;

    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (r = 0; r < 3; r++) {
        pid_t kids[2];
        int k, i, max_seen = -1;
        FILE *f;

        snprintf(ack, sizeof(ack), "%s/ack%d", srv.root, r);
        for (k = 0; k < 2; k++) {
            kids[k] = fork();
            cr_assert(kids[k] >= 0);
            if (kids[k] == 0)
                pusher(r, k * 100000, ack);
        }
        usleep(200000 + (useconds_t)(rand() % 600000));
        server_kill9(&srv);
        for (k = 0; k < 2; k++)
            waitpid(kids[k], NULL, 0);
        server_restart(&srv);
        /* Everything acknowledged reads back whole. */
        f = fopen(ack, "r");
        while (f && fscanf(f, "%d", &i) == 1) {
            char d[200], path[600];
            size_t len;
            char *data = content(r, i, &len);
            struct resp rs;

            digest_str("sha256", data, len, d, sizeof(d));
            snprintf(path, sizeof(path), "/v2/crash/r%d/blobs/%s", r, d);
            http(&srv, "GET", path, NULL, 0, NULL, &rs);
            cr_assert_eq(rs.status, 200, "round %d: acknowledged blob %d lost", r, i);
            cr_assert(rs.len == len && memcmp(rs.body, data, len) == 0, "round %d: blob %d corrupt",
                      r, i);
            resp_free(&rs);
            free(data);
            acked_total++;
            if (i % 100000 > max_seen)
                max_seen = i % 100000;
        }
        if (f)
            fclose(f);
        /* What was in flight is either absent or whole: never partial. */
        for (k = 0; k < 2; k++) {
            for (i = k * 100000; i < k * 100000 + max_seen + 3; i++) {
                char d[200], path[600];
                size_t len;
                char *data = content(r, i, &len);
                struct resp rs;

                digest_str("sha256", data, len, d, sizeof(d));
                snprintf(path, sizeof(path), "/v2/crash/r%d/blobs/%s", r, d);
                http(&srv, "GET", path, NULL, 0, NULL, &rs);
                cr_assert(rs.status == 404 ||
                              (rs.status == 200 && rs.len == len && !memcmp(rs.body, data, len)),
                          "round %d: blob %d visible but not whole (%ld, %zu bytes)", r, i,
                          rs.status, rs.len);
                resp_free(&rs);
                free(data);
            }
        }
    }
    cr_assert_gt(acked_total, 0, "no push was acknowledged at all: the test proved nothing");
}
