/* The binary itself: CLI, configuration errors, graceful stop. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "harness.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

Test(cli, version_prints_the_version)
{
    char out[512];

    cr_assert_eq(registry_run("version", out, sizeof(out)), 0);
    cr_assert_eq(strncmp(out, "registry ", 9), 0, "%s", out);
}

Test(cli, help_lists_commands_and_flags)
{
    char out[2048];

    cr_assert_eq(registry_run("--help", out, sizeof(out)), 0);
    cr_assert(strstr(out, "serve") && strstr(out, "--config") && strstr(out, "--listen") &&
                  strstr(out, "--root"),
              "%s", out);
    cr_assert_neq(registry_run("frobnicate", out, sizeof(out)), 0);
}

Test(cli, unknown_config_key_refuses_start_naming_file_and_line)
{
    char dir[] = "/tmp/regcfg.XXXXXX", path[300], args[700], out[2048], want[400];

    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/registry.conf", dir);
    write_file(path, "[server]\nthreads = 2\n\n[storage]\nroot = /tmp/x\nfrobnicate = 1\n");
    snprintf(args, sizeof(args), "serve --listen 127.0.0.1:0 --config %s", path);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 2, "%s", out);
    snprintf(want, sizeof(want), "%s:6:", path);
    cr_assert(strstr(out, want), "names file:line: %s", out);
    cr_assert(strstr(out, "frobnicate"), "%s", out);
    unlink(path);
    rmdir(dir);
}

Test(cli, bad_config_value_refuses_start_naming_file_and_line)
{
    char dir[] = "/tmp/regcfg.XXXXXX", path[300], args[700], out[2048], want[400];

    cr_assert(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/registry.conf", dir);
    write_file(path, "[server]\nthreads = lots\n");
    snprintf(args, sizeof(args), "serve --config %s", path);
    cr_assert_eq(registry_run(args, out, sizeof(out)), 2, "%s", out);
    snprintf(want, sizeof(want), "%s:2:", path);
    cr_assert(strstr(out, want) && strstr(out, "threads"), "%s", out);
    write_file(path, "[storage]\ndelete = maybe\n");
    cr_assert_eq(registry_run(args, out, sizeof(out)), 2, "%s", out);
    cr_assert(strstr(out, "delete"), "%s", out);
    unlink(path);
    rmdir(dir);
}

Test(cli, missing_config_file_refuses_start)
{
    char out[2048];

    cr_assert_eq(registry_run("serve --config /nonexistent/registry.conf", out, sizeof(out)), 2);
    cr_assert(strstr(out, "/nonexistent/registry.conf"), "%s", out);
}

static int connect_to(const struct server *s)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(strrchr(s->base, ':') + 1));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

/* SIGTERM while a PATCH is half sent: the request still completes with 202,
 * new connections are refused, and the process exits 0. */
Test(cli, sigterm_lets_in_flight_upload_finish_then_exits_zero, .timeout = 60)
{
    struct server s;
    struct resp r;
    char loc[256], head[512], out[2048] = "", *body = rand_bytes(2000);
    int fd, n, st;
    ssize_t got;

    server_start(&s, NULL);
    start_upload(&s, "term", loc, sizeof(loc));
    fd = connect_to(&s);
    n = snprintf(head, sizeof(head), "PATCH %s HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n",
                 loc);
    cr_assert_eq(send(fd, head, (size_t)n, 0), n);
    cr_assert_eq(send(fd, body, 1000, 0), 1000);
    usleep(200000);
    kill(s.pid, SIGTERM);
    usleep(300000);
    cr_assert_eq(waitpid(s.pid, &st, WNOHANG), 0, "server waits for the request in flight");
    cr_assert_eq(send(fd, body + 1000, 1000, 0), 1000);
    got = recv(fd, out, sizeof(out) - 1, 0);
    cr_assert_gt(got, 0);
    out[got] = '\0';
    cr_assert(strstr(out, "202 Accepted"), "%s", out);
    cr_assert(strstr(out, "Range: 0-1999"), "%s", out);
    close(fd);
    cr_assert_eq(waitpid(s.pid, &st, 0), s.pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    s.pid = 0;
    /* The acknowledged bytes are there after a restart. */
    server_restart(&s);
    http(&s, "GET", loc, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 204);
    cr_assert(resp_header(&r, "Range", head, sizeof(head)));
    cr_assert_str_eq(head, "0-1999");
    resp_free(&r);
    server_destroy(&s);
    free(body);
}

Test(cli, sigint_stops_cleanly)
{
    struct server s;
    int st;

    server_start(&s, NULL);
    kill(s.pid, SIGINT);
    cr_assert_eq(waitpid(s.pid, &st, 0), s.pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    s.pid = 0;
    server_destroy(&s);
}
