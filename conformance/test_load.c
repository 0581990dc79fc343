/* Hostile and heavy load against a real server: slow headers from one
 * address, thousands of idle connections, a crowd of mixed clients, and
 * bodies that would eat the server's memory. Loopback has a whole /8, so
 * 127.0.0.2 and friends are other clients. No timing decides a test here
 * beyond "is served at all before a generous deadline". */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <curl/curl.h>

#include "harness.h"

static struct server srv;

static void teardown(void)
{
    server_destroy(&srv);
}

TestSuite(load, .fini = teardown, .timeout = 180);

static unsigned short port_of(const struct server *s)
{
    const char *colon = strrchr(s->base, ':');

    return (unsigned short)strtoul(colon + 1, NULL, 10);
}

/* A socket from source address src to the server; -1 when refused. */
static int connect_from(const struct server *s, const char *src)
{
    struct sockaddr_in a, b;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    cr_assert(fd >= 0, "socket: %s", strerror(errno));
    memset(&b, 0, sizeof(b));
    b.sin_family = AF_INET;
    inet_pton(AF_INET, src, &b.sin_addr);
    cr_assert_eq(bind(fd, (struct sockaddr *)&b, sizeof(b)), 0, "bind %s", src);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons(port_of(s));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Has the server closed fd (end of stream or reset)? Waits up to ms. */
static int closed_by_server(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    char c;

    if (poll(&p, 1, ms) <= 0)
        return 0;
    return recv(fd, &c, 1, MSG_DONTWAIT) <= 0;
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    FILE *f;

    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    cr_assert(f);
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "VmRSS:", 6))
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

static int fd_count(pid_t pid)
{
    char path[64];
    struct dirent *e;
    DIR *d;
    int n = 0;

    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    d = opendir(path);
    cr_assert(d);
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* GET /v2/ from 127.0.0.1 within a generous deadline: 200, or 0 when the
 * server did not serve it in time. */
static long quick_get(const struct server *s)
{
    CURL *c = curl_easy_init();
    char url[128];
    long status = 0;

    snprintf(url, sizeof(url), "%s/v2/", s->base);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

Test(load, slow_headers_from_one_address_never_lock_out_another)
{
    static int fds[600];
    int i, n = 0, open_after = 0;

    server_start(&srv, "[server]\nmax_connections = 400\nheader_timeout = 3\n"
                       "max_connections_per_address = 100\n");
    /* 600 slow sockets from one address: more than max_connections. */
    for (i = 0; i < 600; i++) {
        int fd = connect_from(&srv, "127.0.0.2");

        if (fd < 0)
            continue;
        send(fd, "GET /v2/ HTTP/1.1\r\nHost: x\r\n", 28, MSG_NOSIGNAL);
        fds[n++] = fd;
    }
    for (i = 0; i < 3; i++) {
        int k;

        for (k = 0; k < n; k++)
            send(fds[k], "X-Slow: 1\r\n", 11, MSG_NOSIGNAL);
        cr_assert_eq(quick_get(&srv), 200, "a client from 127.0.0.1 is locked out (round %d)", i);
        sleep(1);
    }
    /* Past the header deadline every slow socket is gone. */
    sleep(3);
    for (i = 0; i < n; i++) {
        if (!closed_by_server(fds[i], 100))
            open_after++;
        close(fds[i]);
    }
    cr_assert_eq(open_after, 0, "%d slow connections outlived the header deadline", open_after);
    cr_assert_eq(quick_get(&srv), 200);
}

Test(load, ten_thousand_idle_connections_cost_little_and_give_their_descriptors_back)
{
    struct rlimit rl;
    int *fds, i, n = 0, want = 10000, fd0, fd_peak;
    long rss0, rss1;
    char buf[512];

    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)want + 200) {
        want = (int)rl.rlim_cur - 200;
        cr_log_warn("open-file limit %llu: %d connections instead of 10000",
                    (unsigned long long)rl.rlim_cur, want);
    }
    server_start(&srv, "[server]\nmax_connections = 12000\n");
    fds = calloc((size_t)want, sizeof(int));
    fd0 = fd_count(srv.pid);
    rss0 = rss_kib(srv.pid);
    /* One request each, then idle on keep-alive: the pool has been used. */
    for (i = 0; i < want; i++) {
        char src[32];
        int fd;

        snprintf(src, sizeof(src), "127.0.%d.%d", 1 + i / 200, 2 + i % 200);
        fd = connect_from(&srv, src);
        cr_assert(fd >= 0, "connection %d refused", i);
        cr_assert_eq(send(fd, "GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n", 30, MSG_NOSIGNAL), 30);
        fds[n++] = fd;
    }
    for (i = 0; i < n; i++)
        cr_assert_gt(recv(fds[i], buf, sizeof(buf), 0), 0, "no answer on connection %d", i);
    rss1 = rss_kib(srv.pid);
    fd_peak = fd_count(srv.pid);
    cr_log_info("%d idle connections: RSS %ld -> %ld KiB (%.1f KiB each), fds %d -> %d", n, rss0,
                rss1, (double)(rss1 - rss0) / n, fd0, fd_peak);
    cr_assert_geq(fd_peak, fd0 + n - 10, "the server holds the connections");
    /* The default per-connection buffer is 16 KiB: stay under 24 KiB each
     * (AddressSanitizer's allocator adds its redzones: 48 there). */
    cr_assert_lt(rss1 - rss0, (long)n * (getenv("ASAN_OPTIONS") ? 48 : 24),
                 "%.1f KiB per idle connection", (double)(rss1 - rss0) / n);
    cr_assert_eq(quick_get(&srv), 200);
    for (i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    /* Closing 10,000 sockets takes the server a moment, much longer on a
     * busy machine under AddressSanitizer (a CI run beside other suites
     * once needed more than 60 s): wait up to 180 s (a leak never gets
     * there), and say where the count stopped. */
    for (i = 0; i < 3600 && fd_count(srv.pid) > fd0 + 2; i++)
        usleep(50 * 1000);
    fd_peak = fd_count(srv.pid);
    cr_assert_leq(fd_peak, fd0 + 2, "descriptors back to where they started: %d, from %d", fd_peak,
                  fd0);
}

/* ---- a crowd of mixed clients ------------------------------------------------- */

struct job {
    CURL *c;
    struct curl_slist *h;
    char url[400];
    char *body;
    size_t len;
    int kind; /* 0 GET blob, 1 HEAD blob, 2 push, 3 GET manifest */
};

static size_t sink(char *p, size_t n, size_t m, void *u)
{
    (void)p;
    (void)u;
    return n * m;
}

static void job_start(CURLM *m, struct job *j, const struct server *s, const char *blob,
                      const char *mdigest, unsigned seed)
{
    static const char *accept = "Accept: application/vnd.oci.image.manifest.v1+json";
    char d[200];

    j->kind = (int)(seed % 4);
    j->c = curl_easy_init();
    j->h = NULL;
    free(j->body);
    j->body = NULL;
    curl_easy_setopt(j->c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(j->c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(j->c, CURLOPT_PRIVATE, j);
    switch (j->kind) {
    case 0:
    case 1:
        snprintf(j->url, sizeof(j->url), "%s/v2/load/crowd/blobs/%s", s->base, blob);
        if (j->kind == 1)
            curl_easy_setopt(j->c, CURLOPT_NOBODY, 1L);
        break;
    case 2:
        j->len = 1000 + seed % 50000;
        j->body = rand_bytes(j->len);
        digest_str("sha256", j->body, j->len, d, sizeof(d));
        snprintf(j->url, sizeof(j->url), "%s/v2/load/crowd%u/blobs/uploads/?digest=%s", s->base,
                 seed % 7, d);
        curl_easy_setopt(j->c, CURLOPT_POSTFIELDS, j->body);
        curl_easy_setopt(j->c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->len);
        j->h = curl_slist_append(j->h, "Content-Type: application/octet-stream");
        j->h = curl_slist_append(j->h, "Expect:");
        break;
    default:
        snprintf(j->url, sizeof(j->url), "%s/v2/load/crowd/manifests/%s", s->base, mdigest);
        j->h = curl_slist_append(j->h, accept);
        break;
    }
    curl_easy_setopt(j->c, CURLOPT_URL, j->url);
    curl_easy_setopt(j->c, CURLOPT_HTTPHEADER, j->h);
    curl_multi_add_handle(m, j->c);
}

Test(load, two_hundred_mixed_clients_for_a_while_with_no_wrongful_failure)
{
    static struct job jobs[200];
    char blob[200], cfg[200], mdigest[200], body[1200];
    const char *ct[] = {"Content-Type: application/vnd.oci.image.manifest.v1+json", NULL};
    char *data = rand_bytes(300000);
    CURLM *m = curl_multi_init();
    struct resp r;
    unsigned seed = 1;
    int i, running = 0, done = 0, bad = 0;
    time_t end;

    server_start(&srv, "[server]\nmax_connections = 400\nthreads = 4\n");
    push_blob(&srv, "load/crowd", data, 300000, blob, sizeof(blob));
    push_blob(&srv, "load/crowd", "{}", 2, cfg, sizeof(cfg));
    snprintf(body, sizeof(body),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"digest\":"
             "\"%s\",\"size\":2},\"layers\":[{\"mediaType\":"
             "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":300000}]}",
             cfg, blob);
    http(&srv, "PUT", "/v2/load/crowd/manifests/v1", body, strlen(body), ct, &r);
    cr_assert_eq(r.status, 201);
    resp_free(&r);
    digest_str("sha256", body, strlen(body), mdigest, sizeof(mdigest));
    for (i = 0; i < 200; i++)
        job_start(m, &jobs[i], &srv, blob, mdigest, seed++);
    end = time(NULL) + 6;
    do {
        CURLMsg *msg;
        int left;

        curl_multi_perform(m, &running);
        curl_multi_poll(m, NULL, 0, 100, NULL);
        while ((msg = curl_multi_info_read(m, &left)) != NULL) {
            struct job *j;
            long status = 0;

            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&j);
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (msg->data.result != CURLE_OK || status != (j->kind == 2 ? 201 : 200)) {
                if (bad++ < 5)
                    cr_log_error("%s: %s, status %ld", j->url, curl_easy_strerror(msg->data.result),
                                 status);
            }
            done++;
            curl_multi_remove_handle(m, j->c);
            curl_easy_cleanup(j->c);
            curl_slist_free_all(j->h);
            if (time(NULL) < end)
                job_start(m, j, &srv, blob, mdigest, seed++);
        }
    } while (running > 0 || time(NULL) < end);
    for (i = 0; i < 200; i++)
        free(jobs[i].body);
    curl_multi_cleanup(m);
    free(data);
    cr_log_info("%d requests from 200 concurrent clients, %d wrong", done, bad);
    cr_assert_gt(done, 400, "only %d requests completed", done);
    cr_assert_eq(bad, 0, "%d of %d requests failed", bad, done);
}

/* ---- memory for manifest bodies ------------------------------------------------ */

Test(load, manifest_bodies_in_flight_share_one_budget)
{
    char head[512], out[2048];
    int a, b;

    server_start(&srv, "[server]\nmax_manifest_size = 1M\nmanifest_buffers = 1M\n");
    snprintf(head, sizeof(head),
             "PUT /v2/load/m/manifests/a HTTP/1.1\r\nHost: x\r\n"
             "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
             "Content-Length: 600000\r\n\r\n");
    /* Two bodies announced, not yet sent: the second does not fit. */
    a = connect_from(&srv, "127.0.0.1");
    cr_assert(a >= 0);
    cr_assert_gt(send(a, head, strlen(head), MSG_NOSIGNAL), 0);
    usleep(200 * 1000);
    b = connect_from(&srv, "127.0.0.1");
    cr_assert(b >= 0);
    cr_assert_gt(send(b, head, strlen(head), MSG_NOSIGNAL), 0);
    {
        struct timeval tv = {10, 0};
        ssize_t n;

        setsockopt(b, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        n = recv(b, out, sizeof(out) - 1, 0);
        cr_assert_gt(n, 0, "no answer for the body over budget");
        out[n] = '\0';
    }
    cr_assert(strstr(out, " 429 ") && strstr(out, "TOOMANYREQUESTS") && strstr(out, "Retry-After"),
              "%s", out);
    close(a);
    close(b);
    /* Once the first is gone, its share is back. */
    usleep(300 * 1000);
    {
        char cfgd[200], body[600];
        const char *ct[] = {"Content-Type: application/vnd.oci.image.manifest.v1+json", NULL};
        struct resp r;

        push_blob(&srv, "load/m", "{}", 2, cfgd, sizeof(cfgd));
        snprintf(body, sizeof(body),
                 "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\""
                 ",\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
                 "\"digest\":\"%s\",\"size\":2},\"layers\":[]}",
                 cfgd);
        http(&srv, "PUT", "/v2/load/m/manifests/a", body, strlen(body), ct, &r);
        cr_assert_eq(r.status, 201, "%ld %s", r.status, r.body);
        resp_free(&r);
    }
}

Test(load, an_endless_chunked_manifest_body_is_cut_off_at_its_cap)
{
    static char chunk[65536];
    char line[64];
    int fd, i;
    long sent = 0;
    const char *head = "PUT /v2/load/big/manifests/latest HTTP/1.1\r\nHost: x\r\n"
                       "Content-Type: application/vnd.oci.image.manifest.v1+json\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";

    signal(SIGPIPE, SIG_IGN);
    server_start(&srv, "[server]\nmax_manifest_size = 1M\n");
    fd = connect_from(&srv, "127.0.0.1");
    cr_assert(fd >= 0);
    cr_assert_gt(send(fd, head, strlen(head), MSG_NOSIGNAL), 0);
    memset(chunk, ' ', sizeof(chunk));
    snprintf(line, sizeof(line), "%zx\r\n", sizeof(chunk));
    /* Up to 200 MiB; the server must hang up long before. */
    for (i = 0; i < 3200; i++) {
        if (send(fd, line, strlen(line), MSG_NOSIGNAL) < 0 ||
            send(fd, chunk, sizeof(chunk), MSG_NOSIGNAL) < 0 ||
            send(fd, "\r\n", 2, MSG_NOSIGNAL) < 0)
            break;
        sent += (long)sizeof(chunk);
    }
    close(fd);
    cr_log_info("the server hung up after %ld bytes", sent);
    cr_assert_lt(sent, 64L << 20, "read %ld bytes of a body capped at 1 MiB", sent);
    cr_assert_eq(quick_get(&srv), 200);
}

/* Blob bodies go through a buffer while the send budget lasts, by
 * sendfile beyond it: both give the same bytes, ranges included. */
static void get_and_check(const char *conf)
{
    char d[200], got[200], path[400];
    const char *range[] = {"Range: bytes=1000-2999999", NULL};
    char *data = rand_bytes(3000000);
    struct resp r;
    int i;

    server_start(&srv, conf);
    push_blob(&srv, "load/send", data, 3000000, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/load/send/blobs/%s", d);
    for (i = 0; i < 3; i++) {
        http(&srv, "GET", path, NULL, 0, NULL, &r);
        cr_assert_eq(r.status, 200);
        cr_assert_eq(r.len, 3000000);
        digest_str("sha256", r.body, r.len, got, sizeof(got));
        cr_assert_str_eq(got, d);
        resp_free(&r);
    }
    http(&srv, "GET", path, NULL, 0, range, &r);
    cr_assert_eq(r.status, 206);
    cr_assert_eq(r.len, 2999000);
    cr_assert_eq(memcmp(r.body, data + 1000, 2999000), 0);
    resp_free(&r);
    free(data);
}

Test(load, blob_bodies_are_whole_through_the_send_buffers)
{
    get_and_check("[server]\nsend_buffers = 64M\n");
}

Test(load, blob_bodies_are_whole_by_sendfile_when_the_budget_is_spent)
{
    get_and_check("[server]\nsend_buffers = 0\n");
}
