/* The pull-through cache against a real upstream: Debian's docker-registry
 * (CNCF Distribution 2.8) on a free loopback port, with images pushed to it
 * over HTTP, and our registry mirroring it. */
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <curl/curl.h>

#include "harness.h"

#define DIST_BIN "/usr/bin/docker-registry"

/* The upstream: a Distribution process, its root and its log (its access
 * log counts the requests we make of it). */
struct dist {
    pid_t pid;
    char dir[64];
    char log[128];
    struct server http; /* base only: the harness's HTTP helpers talk to it */
};

static struct dist up;
static struct server srv;
static struct server ours; /* our own registry as an upstream, with auth */

static unsigned free_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Start (again) on d's root, configuration and port. */
static void dist_launch(struct dist *d)
{
    char conf[160];
    int i;

    snprintf(conf, sizeof(conf), "%s/config.yml", d->dir);
    d->pid = fork();
    cr_assert_geq(d->pid, 0);
    if (d->pid == 0) {
        int fd;

        fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execl(DIST_BIN, DIST_BIN, "serve", conf, (char *)NULL);
        _exit(127);
    }
    d->http.no_assert = 1;
    for (i = 0; i < 200; i++) {
        struct resp r;
        long status;

        http(&d->http, "GET", "/v2/", NULL, 0, NULL, &r);
        status = r.status;
        resp_free(&r);
        if (status == 200)
            break;
        usleep(50 * 1000);
    }
    if (i == 200) {
        char cmd[200];

        snprintf(cmd, sizeof(cmd), "cat %s >&2", d->log);
        if (system(cmd) != 0)
            cr_log_warn("no log");
    }
    cr_assert_lt(i, 200, "Distribution did not start (its log above)");
    d->http.no_assert = 0;
}

static void dist_start(struct dist *d)
{
    char conf[160], text[1024];
    unsigned port = free_port();
    FILE *f;

    cr_assert(access(DIST_BIN, X_OK) == 0, "%s missing (Debian package docker-registry)", DIST_BIN);
    snprintf(d->dir, sizeof(d->dir), "/tmp/regtest-dist-XXXXXX");
    cr_assert_not_null(mkdtemp(d->dir));
    snprintf(conf, sizeof(conf), "%s/config.yml", d->dir);
    snprintf(d->log, sizeof(d->log), "%s/log", d->dir);
    snprintf(text, sizeof(text),
             "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n"
             "    rootdirectory: %s/data\n  delete:\n    enabled: true\n"
             "http:\n  addr: 127.0.0.1:%u\n",
             d->dir, port);
    f = fopen(conf, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    memset(&d->http, 0, sizeof(d->http));
    snprintf(d->http.base, sizeof(d->http.base), "http://127.0.0.1:%u", port);
    dist_launch(d);
}

static void dist_stop(struct dist *d)
{
    if (d->pid > 0) {
        kill(d->pid, SIGTERM);
        waitpid(d->pid, NULL, 0);
        d->pid = 0;
    }
}

static void dist_destroy(struct dist *d)
{
    char cmd[128];

    dist_stop(d);
    if (d->dir[0]) {
        snprintf(cmd, sizeof(cmd), "rm -rf %s", d->dir);
        if (system(cmd) != 0)
            cr_log_warn("could not remove %s", d->dir);
        d->dir[0] = '\0';
    }
}

/* Lines of the upstream's log that hold needle. */
static int dist_count(const struct dist *d, const char *needle)
{
    char line[8192];
    FILE *f = fopen(d->log, "r");
    int n = 0;

    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void teardown(void)
{
    if (srv.pid > 0) /* a test that failed while it held the mirror stopped */
        kill(srv.pid, SIGCONT);
    server_destroy(&srv);
    server_destroy(&ours);
    dist_destroy(&up);
}

TestSuite(proxy, .fini = teardown, .timeout = 180);

/* An image pushed to the upstream: a config and one layer of len random
 * bytes; out gets the layer's and the manifest's digests and the body. */
struct image {
    char layer[100], config[100], manifest[100];
    char body[1500];
    void *data; /* the layer's bytes */
    size_t len;
};

static void upstream_blob(struct server *to, const char *repo, const void *data, size_t len,
                          char *digest)
{
    char loc[1024], path[1200];
    const char *h[] = {"Content-Type: application/octet-stream", NULL};
    struct resp r;

    digest_str("sha256", data, len, digest, 100);
    start_upload(to, repo, loc, sizeof(loc));
    snprintf(path, sizeof(path), "%s%sdigest=%s", loc, strchr(loc, '?') ? "&" : "?", digest);
    http(to, "PUT", path, data, len, h, &r);
    cr_assert_eq(r.status, 201, "upstream blob PUT: %ld %s", r.status, r.body);
    resp_free(&r);
}

/* Push im to repo of to, tagged tag (NULL: by digest alone). */
static void push_to(struct server *to, const char *repo, const char *tag, size_t len,
                    struct image *im)
{
    char cfgdata[64];
    struct resp r;

    im->data = rand_bytes(len);
    im->len = len;
    snprintf(cfgdata, sizeof(cfgdata), "{\"n\":%d}", rand());
    upstream_blob(to, repo, cfgdata, strlen(cfgdata), im->config);
    upstream_blob(to, repo, im->data, len, im->layer);
    snprintf(im->body, sizeof(im->body),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":[{\"mediaType\":"
             "\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"%s\",\"size\":%zu}]}",
             im->config, strlen(cfgdata), im->layer, len);
    digest_str("sha256", im->body, strlen(im->body), im->manifest, sizeof(im->manifest));
    cr_assert_eq(http_put_manifest(to, repo, tag ? tag : im->manifest,
                                   "application/vnd.oci.image.manifest.v1+json", im->body,
                                   strlen(im->body), &r),
                 201, "upstream manifest PUT: %s", r.body);
    resp_free(&r);
}

static void push_upstream(const char *repo, const char *tag, size_t len, struct image *im)
{
    push_to(&up.http, repo, tag, len, im);
}

/* Our registry mirroring the upstream under fast/ (tags revalidated after
 * 1 s) and slow/ (after an hour). */
static void start_mirror(void)
{
    char conf[1024];

    snprintf(conf, sizeof(conf),
             "[storage]\ndelete = true\n[gc]\ninterval = 0\n"
             "[proxy.fast]\nurl = %s\nprefix = fast\ntag_ttl = 1s\n"
             "[proxy.slow]\nurl = %s\nprefix = slow\ntag_ttl = 1h\n",
             up.http.base, up.http.base);
    server_start(&srv, conf);
}

/* GET path from the mirror: 200 and exactly want (len bytes). */
static void expect_body(const char *path, const void *want, size_t len)
{
    struct resp r;

    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "GET %s: %ld %s", path, r.status, r.body);
    cr_assert_eq(r.len, len, "GET %s: %zu bytes, not %zu", path, r.len, len);
    cr_assert(memcmp(r.body, want, len) == 0, "GET %s: other bytes", path);
    resp_free(&r);
}

static void expect_fsck_clean(void)
{
    char args[400], out[8192];
    int rc;

    snprintf(args, sizeof(args), "fsck --root %s/data", srv.root);
    rc = registry_run(args, out, sizeof(out));
    cr_assert_eq(rc, 0, "fsck: %d\n%s", rc, out);
}

Test(proxy, pulls_by_tag_and_digest_give_the_upstreams_bytes_and_fsck_stays_clean)
{
    struct image im;
    char path[600], hv[200];
    struct resp r;

    dist_start(&up);
    push_upstream("library/img", "v1", 300000, &im);
    start_mirror();
    http(&srv, "GET", "/v2/slow/library/img/manifests/v1", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", hv, sizeof(hv)), im.manifest);
    cr_assert_str_eq(resp_header(&r, "Content-Type", hv, sizeof(hv)),
                     "application/vnd.oci.image.manifest.v1+json");
    cr_assert_eq(r.len, strlen(im.body));
    cr_assert(memcmp(r.body, im.body, r.len) == 0);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/slow/library/img/manifests/%s", im.manifest);
    expect_body(path, im.body, strlen(im.body));
    snprintf(path, sizeof(path), "/v2/slow/library/img/blobs/%s", im.layer);
    expect_body(path, im.data, im.len);
    expect_body(path, im.data, im.len); /* the second time from the store */
    snprintf(path, sizeof(path), "GET /v2/library/img/blobs/%s", im.layer);
    cr_assert_eq(dist_count(&up, path), 1, "the upstream was asked once for the layer");
    snprintf(path, sizeof(path), "GET /v2/library/img/manifests/v1");
    cr_assert_eq(dist_count(&up, path), 1, "the tag was fetched once within its TTL");
    /* By digest, a manifest never fetched by tag. */
    snprintf(path, sizeof(path), "/v2/fast/library/img/manifests/%s", im.manifest);
    expect_body(path, im.body, strlen(im.body));
    /* Unknown upstream: 404 with the spec's codes. */
    cr_assert_eq(http_status(&srv, "GET", "/v2/slow/library/none/manifests/v1", hv, sizeof(hv)),
                 404);
    cr_assert_str_eq(hv, "MANIFEST_UNKNOWN");
    snprintf(path, sizeof(path), "/v2/slow/library/img/blobs/sha256:%064d", 0);
    cr_assert_eq(http_status(&srv, "GET", path, hv, sizeof(hv)), 404);
    cr_assert_str_eq(hv, "BLOB_UNKNOWN");
    /* The config blob was never pulled: fsck knows the cache fetches on demand. */
    expect_fsck_clean();
    free(im.data);
}

Test(proxy, a_moved_tag_is_seen_after_its_ttl_and_not_before)
{
    struct image a, b;
    char hv[200];
    struct resp r;

    dist_start(&up);
    push_upstream("library/img", "latest", 1000, &a);
    start_mirror();
    http(&srv, "GET", "/v2/slow/library/img/manifests/latest", NULL, 0, NULL, &r);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", hv, sizeof(hv)), a.manifest);
    resp_free(&r);
    http(&srv, "GET", "/v2/fast/library/img/manifests/latest", NULL, 0, NULL, &r);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", hv, sizeof(hv)), a.manifest);
    resp_free(&r);
    push_upstream("library/img", "latest", 1000, &b); /* the tag moves */
    sleep(2);                                         /* past fast's TTL, far from slow's */
    http(&srv, "GET", "/v2/slow/library/img/manifests/latest", NULL, 0, NULL, &r);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", hv, sizeof(hv)), a.manifest,
                     "within the TTL the cached tag is served");
    resp_free(&r);
    http(&srv, "HEAD", "/v2/fast/library/img/manifests/latest", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", hv, sizeof(hv)), b.manifest,
                     "past the TTL the moved tag is seen");
    resp_free(&r);
    expect_body("/v2/fast/library/img/manifests/latest", b.body, strlen(b.body));
    free(a.data);
    free(b.data);
}

Test(proxy, cached_content_is_served_when_the_upstream_is_down)
{
    struct image im;
    char path[600], hv[200];
    struct resp r;

    dist_start(&up);
    push_upstream("library/img", "v1", 50000, &im);
    start_mirror();
    expect_body("/v2/fast/library/img/manifests/v1", im.body, strlen(im.body));
    snprintf(path, sizeof(path), "/v2/fast/library/img/blobs/%s", im.layer);
    expect_body(path, im.data, im.len);
    dist_stop(&up);
    sleep(2); /* past the TTL: the tag must be revalidated, and cannot be */
    http(&srv, "GET", "/v2/fast/library/img/manifests/v1", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200, "%ld %s", r.status, r.body);
    cr_assert_str_eq(resp_header(&r, "Docker-Content-Digest", hv, sizeof(hv)), im.manifest);
    cr_assert_not_null(resp_header(&r, "Warning", hv, sizeof(hv)), "a stale tag says so");
    cr_assert_str_eq(hv, "110 - \"Response is Stale\"");
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/fast/library/img/manifests/%s", im.manifest);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_null(resp_header(&r, "Warning", hv, sizeof(hv)), "by digest nothing is stale");
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/fast/library/img/blobs/%s", im.layer);
    expect_body(path, im.data, im.len);
    /* What was never cached: the upstream's absence is a 502. */
    cr_assert_eq(http_status(&srv, "GET", "/v2/fast/library/other/manifests/v1", NULL, 0), 502);
    free(im.data);
}

/* The third figure of a /proc/sys/net/ipv4/tcp_[rw]mem (the largest buffer). */
static unsigned long long sock_buf_max(const char *file)
{
    unsigned long long lo, def, max = 0;
    FILE *f = fopen(file, "r");

    cr_assert_not_null(f, "%s", file);
    cr_assert_eq(fscanf(f, "%llu %llu %llu", &lo, &def, &max), 3, "%s", file);
    fclose(f);
    return max;
}

static void *pull(void *arg);

struct puller {
    const char *url;
    long status;          /* what the mirror answered, 0 when nothing */
    _Atomic size_t bytes; /* of the body, so far */
    int complete;         /* the transfer ended well */
};

static size_t count_bytes(char *p, size_t size, size_t n, void *arg)
{
    (void)p;
    *(_Atomic size_t *)arg += size * n;
    return size * n;
}

static void *pull(void *arg)
{
    struct puller *p = arg;
    CURL *c = curl_easy_init();

    curl_easy_setopt(c, CURLOPT_URL, p->url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, count_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &p->bytes);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    p->complete = curl_easy_perform(c) == CURLE_OK;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &p->status);
    curl_easy_cleanup(c);
    return NULL;
}

/* n clients GET url at once; each must get 200 and exactly len bytes. */
static void pull_at_once(const char *url, int n, size_t len)
{
    struct puller p[20];
    pthread_t th[20];
    int i;

    cr_assert_leq(n, 20);
    for (i = 0; i < n; i++) {
        p[i] = (struct puller){url, 0, 0, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, pull, &p[i]), 0);
    }
    for (i = 0; i < n; i++) {
        pthread_join(th[i], NULL);
        cr_expect(p[i].complete && p[i].status == 200, "client %d: %ld", i, p[i].status);
        cr_expect_eq((size_t)p[i].bytes, len, "client %d: %zu bytes", i, (size_t)p[i].bytes);
    }
}

Test(proxy, twenty_clients_pulling_one_cold_blob_cause_one_upstream_get)
{
    enum { N = 20 };
    struct image im;
    char url[600], needle[300];

    dist_start(&up);
    push_upstream("library/big", "v1", 8 << 20, &im);
    start_mirror();
    expect_body("/v2/slow/library/big/manifests/v1", im.body, strlen(im.body));
    snprintf(url, sizeof(url), "%s/v2/slow/library/big/blobs/%s", srv.base, im.layer);
    pull_at_once(url, N, im.len);
    snprintf(needle, sizeof(needle), "GET /v2/library/big/blobs/%s", im.layer);
    cr_assert_eq(dist_count(&up, needle), 1, "one upstream GET for %d clients", N);
    expect_fsck_clean();
    free(im.data);
}

Test(proxy, pushes_into_a_mirrored_prefix_are_405_and_local_names_stay_pushable)
{
    char digest[100], code[64], path[300];
    struct resp r;

    dist_start(&up);
    start_mirror();
    http(&srv, "POST", "/v2/fast/library/img/blobs/uploads/", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 405, "%ld %s", r.status, r.body);
    cr_assert_str_eq(resp_error_code(&r, code, sizeof(code)), "UNSUPPORTED");
    cr_assert_not_null(strstr(r.body, "mirrors"), "%s", r.body);
    resp_free(&r);
    cr_assert_eq(http_put_manifest(&srv, "slow/x", "v1",
                                   "application/vnd.oci.image.manifest.v1+json", "{}", 2, NULL),
                 405);
    cr_assert_eq(http_status(&srv, "DELETE", "/v2/slow/x/manifests/v1", code, sizeof(code)), 405);
    push_blob(&srv, "local/x", "hello", 5, digest, sizeof(digest));
    push_blob(&srv, "fastlane/x", "hello", 5, digest, sizeof(digest));
    snprintf(path, sizeof(path), "/v2/local/x/blobs/%s", digest);
    expect_body(path, "hello", 5);
}

/* ---- our own registry as the upstream, behind its auth ------------------------------ */

/* Our registry holding im as library/img:v1, restarted in auth mode mode
 * (token or basic) where user puller (password pullpw) may pull anything
 * and nobody else anything. */
static void start_ours(const char *mode, struct image *im)
{
    const char *bin = getenv("REGISTRY_BIN") ? getenv("REGISTRY_BIN") : "build/registry";
    char cmd[1200], cfg[2048], htpasswd[400], key[400];

    server_start(&ours, "[storage]\ndelete = true\n");
    push_to(&ours, "library/img", "v1", 200000, im);
    cr_assert_eq(server_stop(&ours), 0);
    snprintf(htpasswd, sizeof(htpasswd), "%s", server_file(&ours, "htpasswd", NULL));
    snprintf(key, sizeof(key), "%s", server_file(&ours, "key.pem", NULL));
    snprintf(cmd, sizeof(cmd),
             "echo pullpw | %s passwd puller > %s 2>/dev/null && openssl genpkey -algorithm EC "
             "-pkeyopt ec_paramgen_curve:P-256 -out %s 2>/dev/null",
             bin, htpasswd, key);
    cr_assert_eq(system(cmd), 0, "registry passwd, openssl genpkey");
    snprintf(cfg, sizeof(cfg),
             "[storage]\ndelete = true\n[auth]\nmode = %s\nhtpasswd = %s\nkey = %s\n"
             "rule = user:puller pull *\n",
             mode, htpasswd, key);
    server_file(&ours, "registry.conf", cfg);
    server_restart(&ours);
    cr_assert_eq(http_status(&ours, "GET", "/v2/library/img/manifests/v1", NULL, 0), 401,
                 "the upstream wants credentials");
}

/* The mirror of ours under good/ with the right credentials, bad/ with a
 * wrong password, anon/ with none. */
static void start_mirror_of_ours(void)
{
    char conf[1024];

    snprintf(conf, sizeof(conf),
             "[proxy.good]\nurl = %s\nprefix = good\nusername = puller\npassword = pullpw\n"
             "[proxy.bad]\nurl = %s\nprefix = bad\nusername = puller\npassword = wrongpw\n"
             "[proxy.anon]\nurl = %s\nprefix = anon\n",
             ours.base, ours.base, ours.base);
    server_start(&srv, conf);
}

static void pulls_through_auth(const char *mode)
{
    struct image im;
    char path[600], hv[200], cmd[600];
    struct resp r;

    start_ours(mode, &im);
    start_mirror_of_ours();
    expect_body("/v2/good/library/img/manifests/v1", im.body, strlen(im.body));
    snprintf(path, sizeof(path), "/v2/good/library/img/manifests/%s", im.manifest);
    expect_body(path, im.body, strlen(im.body));
    snprintf(path, sizeof(path), "/v2/good/library/img/blobs/%s", im.layer);
    expect_body(path, im.data, im.len);
    /* Wrong credentials: an error that says so, at once. */
    http(&srv, "GET", "/v2/bad/library/img/manifests/v1", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 502, "%ld %s", r.status, r.body);
    cr_assert_str_eq(resp_error_code(&r, hv, sizeof(hv)), "UNKNOWN");
    cr_assert_not_null(strstr(r.body, "credentials"), "%s", r.body);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/bad/library/img/blobs/%s", im.layer);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 502, "%ld %s", r.status, r.body);
    cr_assert_not_null(strstr(r.body, "credentials"), "%s", r.body);
    resp_free(&r);
    /* No credentials: the upstream shows nothing, as if it had nothing. */
    cr_assert_eq(http_status(&srv, "GET", "/v2/anon/library/img/manifests/v1", hv, sizeof(hv)),
                 404);
    cr_assert_str_eq(hv, "MANIFEST_UNKNOWN");
    /* The configured password never reaches the mirror's log. */
    snprintf(cmd, sizeof(cmd), "grep -qE 'pullpw|wrongpw' %s",
             server_file(&srv, "server.log", NULL));
    cr_assert_neq(system(cmd), 0, "a password is in the mirror's log");
    free(im.data);
}

Test(proxy, an_upstream_in_token_mode_is_pulled_through_with_the_configured_credentials)
{
    pulls_through_auth("token");
}

Test(proxy, an_upstream_in_basic_mode_is_pulled_through_with_the_configured_credentials)
{
    pulls_through_auth("basic");
}

/* Push a fresh len-byte image as repo upstream, fetch its manifest through
 * slow/, and start a pull of its layer in *th; return once the mirror's
 * upload session (under uploads) holds bytes of it, or the pull ended. */
static void start_cold_pull(const char *repo, size_t len, const char *uploads, struct image *im,
                            char *url, size_t url_size, struct puller *p, pthread_t *th)
{
    char path[600];

    push_upstream(repo, "v1", len, im);
    snprintf(path, sizeof(path), "/v2/slow/%s/manifests/v1", repo);
    expect_body(path, im->body, strlen(im->body));
    snprintf(url, url_size, "%s/v2/slow/%s/blobs/%s", srv.base, repo, im->layer);
    *p = (struct puller){url, 0, 0, 0};
    cr_assert_eq(pthread_create(th, NULL, pull, p), 0);
    while (dir_bytes(uploads) == 0 && !p->complete)
        usleep(1000);
}

/* The upstream dies in the middle of a blob. To know it is the middle
 * without timing anything: as soon as the first bytes reach the upload
 * session the blob goes into, the mirror is stopped (SIGSTOP); the upstream
 * can then send no more than what the socket buffers hold, so when what the
 * mirror holds plus those buffers is less than the blob, its SIGKILL cuts
 * the blob short. (Were the mirror stopped too late, the attempt is made
 * again with a fresh blob.) */
Test(proxy, an_upstream_killed_in_the_middle_of_a_blob_leaves_nothing_and_the_next_pull_works)
{
    unsigned long long slack = sock_buf_max("/proc/sys/net/ipv4/tcp_rmem") +
                               sock_buf_max("/proc/sys/net/ipv4/tcp_wmem") + (1 << 20);
    /* Twice what the buffers can hold: 22 MiB with Debian's defaults. */
    const size_t len = (size_t)slack * 2;
    char uploads[400], blobs[400], url[600], path[600], repo[64], hv[200];
    struct image im;
    struct puller p;
    pthread_t th;
    unsigned long long held = 0;
    int attempt, cut = 0;

    dist_start(&up);
    start_mirror();
    snprintf(uploads, sizeof(uploads), "%s/data/uploads", srv.root);
    snprintf(blobs, sizeof(blobs), "%s/data/blobs", srv.root);
    for (attempt = 0; attempt < 4 && !cut; attempt++) {
        if (up.pid <= 0)
            dist_launch(&up);
        snprintf(repo, sizeof(repo), "library/big%d", attempt);
        start_cold_pull(repo, len, uploads, &im, url, sizeof(url), &p, &th);
        kill(srv.pid, SIGSTOP);
        held = dir_bytes(uploads);
        cut = held > 0 && held + slack < len;
        kill(up.pid, SIGKILL);
        waitpid(up.pid, NULL, 0);
        up.pid = 0;
        kill(srv.pid, SIGCONT);
        pthread_join(th, NULL);
        cr_log_info("attempt %d: the mirror held %llu of %zu bytes when stopped", attempt, held,
                    len);
        if (!cut) {
            free(im.data);
            continue;
        }
        /* The client gets an error (a body cut short: the bytes streamed
         * to it as they came), and nothing of the blob stays. */
        cr_assert(!p.complete && p.status == 200 && p.bytes < len,
                  "the client got %ld with %zu bytes, complete %d", p.status, (size_t)p.bytes,
                  p.complete);
        cr_assert_eq(count_files(uploads), 0, "the upload session is gone");
        cr_assert_eq(count_files(blobs), 0, "no blob was stored");
        snprintf(path, sizeof(path), "/v2/slow/%s/blobs/%s", repo, im.layer);
        cr_assert_eq(http_status(&srv, "HEAD", path, NULL, 0), 502,
                     "with the upstream still down the blob is not there");
        cr_assert_eq(count_files(uploads), 0);
        expect_fsck_clean();
        /* The upstream back: the next pull gets the upstream's bytes. */
        dist_launch(&up);
        expect_body(path, im.data, im.len);
        cr_assert_eq(count_files(uploads), 0);
        cr_assert_eq(http_status(&srv, "HEAD", path, hv, sizeof(hv)), 200);
        expect_fsck_clean();
        free(im.data);
    }
    cr_assert(cut, "the mirror held %llu of %zu bytes when stopped, every time", held, len);
}

/* A cold blob reaches the client while the mirror still fetches it: with
 * the upstream stopped (SIGSTOP) after the mirror's first bytes, the mirror
 * cannot hold the whole blob (it is twice what socket buffers hold), yet
 * the client has bytes. Continued, the client gets every byte. */
Test(proxy, a_cold_blob_streams_to_the_client_while_it_is_fetched)
{
    unsigned long long slack = sock_buf_max("/proc/sys/net/ipv4/tcp_rmem") +
                               sock_buf_max("/proc/sys/net/ipv4/tcp_wmem") + (1 << 20);
    const size_t len = (size_t)slack * 2;
    char uploads[400], url[600], path[600], needle[300], repo[64];
    struct image im;
    struct puller p;
    pthread_t th;
    size_t got = 0;
    int i, attempt, cut = 0;

    dist_start(&up);
    start_mirror();
    snprintf(uploads, sizeof(uploads), "%s/data/uploads", srv.root);
    /* Were the upstream stopped too late (the mirror had it all), the
     * attempt is made again with a fresh blob. */
    for (attempt = 0; attempt < 4 && !cut; attempt++) {
        snprintf(repo, sizeof(repo), "library/stream%d", attempt);
        start_cold_pull(repo, len, uploads, &im, url, sizeof(url), &p, &th);
        kill(up.pid, SIGSTOP);
        /* A bound, not a timing: without streaming no byte ever comes. */
        for (i = 0; i < 3000 && p.bytes == 0; i++)
            usleep(10 * 1000);
        got = p.bytes;
        cut = dir_bytes(uploads) < len && got < len;
        cr_expect(!cut || got > 0, "no byte reached the client while the upstream was stopped");
        kill(up.pid, SIGCONT);
        pthread_join(th, NULL);
        cr_assert(p.complete && p.status == 200, "the pull ended %ld", p.status);
        cr_assert_eq((size_t)p.bytes, len);
        snprintf(path, sizeof(path), "/v2/slow/%s/blobs/%s", repo, im.layer);
        expect_body(path, im.data, im.len); /* from the store now, the same bytes */
        snprintf(needle, sizeof(needle), "GET /v2/%s/blobs/%s", repo, im.layer);
        cr_assert_eq(dist_count(&up, needle), 1, "one upstream GET of the blob");
        free(im.data);
    }
    cr_assert(cut, "the mirror held the whole blob before the upstream stopped, every time");
    expect_fsck_clean();
}

/* An upstream that sends other bytes than the digest names (its stored
 * file corrupted, same length): the client is cut short before the last
 * byte (or, when the fetch failed before the reply began, gets a 502), so
 * it never holds a whole wrong blob, and nothing is stored. The blob is
 * large enough that the reply normally starts first. */
Test(proxy, an_upstream_blob_that_fails_its_digest_never_reaches_a_client_whole)
{
    char blobs[400], file[2600], url[600];
    struct image im;
    struct puller p;
    FILE *f;
    int c;

    dist_start(&up);
    start_mirror();
    push_upstream("library/bad", "v1", 16 << 20, &im);
    snprintf(file, sizeof(file), "%s/data/docker/registry/v2/blobs/sha256/%.2s/%s/data", up.dir,
             im.layer + 7, im.layer + 7);
    f = fopen(file, "r+b");
    cr_assert_not_null(f, "%s", file);
    cr_assert_eq(fseek(f, 1000, SEEK_SET), 0);
    c = fgetc(f);
    cr_assert_eq(fseek(f, 1000, SEEK_SET), 0);
    fputc(c ^ 0xff, f);
    fclose(f);
    expect_body("/v2/slow/library/bad/manifests/v1", im.body, strlen(im.body));
    snprintf(url, sizeof(url), "%s/v2/slow/library/bad/blobs/%s", srv.base, im.layer);
    p = (struct puller){url, 0, 0, 0};
    pull(&p);
    cr_assert(p.status == 502 || (p.status == 200 && !p.complete && p.bytes < im.len),
              "a wrong blob was sent whole (%ld, %zu bytes, complete %d)", p.status,
              (size_t)p.bytes, p.complete);
    snprintf(blobs, sizeof(blobs), "%s/data/blobs", srv.root);
    cr_assert_eq(count_files(blobs), 0, "no blob was stored");
    expect_fsck_clean();
    free(im.data);
}

/* Eight clients asking for one cold tag at once: one upstream GET of it.
 * The upstream is stopped (SIGSTOP) until all eight requests are in the
 * mirror, so they overlap for sure. */
static long metric(const char *name);

struct pull_set {
    const char *url;
    int n;
    size_t len;
};

static void *pull_all(void *arg)
{
    struct pull_set *ps = arg;

    pull_at_once(ps->url, ps->n, ps->len);
    return NULL;
}

Test(proxy, clients_asking_for_one_cold_manifest_at_once_cause_one_upstream_get)
{
    enum { N = 8 };
    struct image im;
    struct pull_set ps;
    pthread_t th;
    char url[600], needle[300];
    int i;

    dist_start(&up);
    push_upstream("library/many", "v1", 4096, &im);
    start_mirror();
    snprintf(url, sizeof(url), "%s/v2/slow/library/many/manifests/v1", srv.base);
    ps = (struct pull_set){url, N, strlen(im.body)};
    kill(up.pid, SIGSTOP);
    cr_assert_eq(pthread_create(&th, NULL, pull_all, &ps), 0);
    /* The eight, and the /metrics request that counts them; the upstream
     * is stopped, so none can end before SIGCONT. */
    for (i = 0; i < 3000 && metric("registry_http_requests_in_flight") < N + 1; i++)
        usleep(10 * 1000);
    cr_expect_lt(i, 3000, "the eight requests never were in the mirror at once");
    kill(up.pid, SIGCONT);
    pthread_join(th, NULL);
    snprintf(needle, sizeof(needle), "GET /v2/library/many/manifests/v1");
    cr_assert_eq(dist_count(&up, needle), 1, "one upstream GET for %d clients", N);
    free(im.data);
}

/* A loopback socket that takes connections (the kernel's backlog) and
 * answers nothing until the test reads or closes them; *port is its port. */
static int mute_upstream(unsigned *port)
{
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(l, 4), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &alen), 0);
    *port = ntohs(a.sin_port);
    return l;
}

/* GET url with a bound on the whole exchange; 0 when it did not end well. */
static long status_within(const char *url, long seconds)
{
    CURL *c = curl_easy_init();
    long status = 0;

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, count_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &(_Atomic size_t){0});
    curl_easy_setopt(c, CURLOPT_TIMEOUT, seconds);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

/* An upstream that takes the request and never answers holds no serving
 * thread: with one thread, the registry answers other requests while a
 * pull waits on it, and the pull gets a 502 once the upstream goes away. */
Test(proxy, an_upstream_that_never_answers_holds_no_serving_thread)
{
    char conf[400], url[600], req[4096];
    struct puller p;
    pthread_t th;
    size_t got = 0;
    ssize_t n;
    unsigned port;
    int l, c;

    l = mute_upstream(&port);
    snprintf(conf, sizeof(conf),
             "[server]\nthreads = 1\n[proxy.mute]\nurl = http://127.0.0.1:%u\nprefix = mute\n",
             port);
    server_start(&srv, conf);
    snprintf(url, sizeof(url), "%s/v2/mute/library/x/manifests/v1", srv.base);
    p = (struct puller){url, 0, 0, 0};
    cr_assert_eq(pthread_create(&th, NULL, pull, &p), 0);
    c = accept(l, NULL, NULL); /* the mirror asks ... */
    cr_assert_geq(c, 0);
    while (got < sizeof(req) - 1 && (n = read(c, req + got, sizeof(req) - 1 - got)) > 0) {
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    cr_assert(strstr(req, "GET /v2/"), "the mirror's request: %s", req);
    /* ... and gets no answer, while its only thread serves others (the
     * bound is far below the mirror's 60 s wait for an upstream answer). */
    snprintf(url, sizeof(url), "%s/v2/", srv.base);
    cr_assert_eq(status_within(url, 20), 200, "the serving thread is held");
    snprintf(url, sizeof(url), "%s/v2/_catalog", srv.base);
    cr_assert_eq(status_within(url, 20), 200, "the serving thread is held");
    close(c);
    close(l);
    pthread_join(th, NULL);
    cr_assert_eq(p.status, 502, "the pull ended %ld", p.status);
}

/* A server told to stop while a pull waits on a mute upstream ends that
 * wait (the client gets a 502) and exits cleanly after shutdown_timeout,
 * not after the upstream's 60 s. */
Test(proxy, a_stop_ends_the_waits_on_a_mute_upstream)
{
    char conf[400], url[600], byte;
    struct timespec t0, t1;
    struct puller p;
    pthread_t th;
    unsigned port;
    int l, c;

    l = mute_upstream(&port);
    snprintf(conf, sizeof(conf),
             "[server]\nshutdown_timeout = 1\n"
             "[proxy.mute]\nurl = http://127.0.0.1:%u\nprefix = mute\n",
             port);
    server_start(&srv, conf);
    snprintf(url, sizeof(url), "%s/v2/mute/library/x/manifests/v1", srv.base);
    p = (struct puller){url, 0, 0, 0};
    cr_assert_eq(pthread_create(&th, NULL, pull, &p), 0);
    c = accept(l, NULL, NULL);
    cr_assert_geq(c, 0);
    cr_assert_eq(read(c, &byte, 1), 1); /* the mirror's request has begun */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cr_assert_eq(server_stop(&srv), 0, "the registry did not exit cleanly");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    /* A bound, not a timing: without the stop ending it, the wait lasts the
     * mirror's 60 s limit on an upstream answer. */
    cr_assert_lt(t1.tv_sec - t0.tv_sec, 30, "the stop waited for the mute upstream");
    pthread_join(th, NULL);
    cr_assert_eq(p.status, 502, "the waiting pull ended %ld", p.status);
    close(c);
    close(l);
}

/* ---- metrics --------------------------------------------------------------------------- */

/* registry_proxy_requests_total{kind,result} on the mirror's page. */
static long proxy_count(const char *kind, const char *result)
{
    char series[200];

    snprintf(series, sizeof(series), "registry_proxy_requests_total{kind=\"%s\",result=\"%s\"}",
             kind, result);
    return metric(series);
}

Test(proxy, metrics_count_hits_misses_revalidations_stale_tags_and_upstream_errors)
{
    static const char *const kinds[] = {"manifest", "blob"};
    static const char *const results[] = {"hit", "miss", "revalidated", "stale", "error"};
    /* What the requests below must add up to, in the order of the tables. */
    static const long want[2][5] = {{2, 3, 1, 1, 1}, {2, 1, 0, 0, 1}};
    struct image im;
    char conf[600], path[600], cmd[600];
    struct resp r;
    int k, i;

    dist_start(&up);
    push_upstream("library/img", "v1", 1000, &im);
    snprintf(conf, sizeof(conf),
             "[proxy.slow]\nurl = %s\nprefix = slow\ntag_ttl = 1h\n"
             "[proxy.now]\nurl = %s\nprefix = now\ntag_ttl = 0s\n",
             up.http.base, up.http.base);
    server_start(&srv, conf);
    for (k = 0; k < 2; k++)
        for (i = 0; i < 5; i++)
            cr_assert_eq(proxy_count(kinds[k], results[i]), 0, "%s %s", kinds[k], results[i]);
    expect_body("/v2/slow/library/img/manifests/v1", im.body, strlen(im.body)); /* miss */
    expect_body("/v2/slow/library/img/manifests/v1", im.body, strlen(im.body)); /* hit */
    snprintf(path, sizeof(path), "/v2/slow/library/img/manifests/%s", im.manifest);
    expect_body(path, im.body, strlen(im.body)); /* hit */
    snprintf(path, sizeof(path), "/v2/slow/library/img/blobs/%s", im.layer);
    expect_body(path, im.data, im.len);                                        /* blob miss */
    expect_body(path, im.data, im.len);                                        /* blob hit */
    expect_body("/v2/now/library/img/manifests/v1", im.body, strlen(im.body)); /* miss */
    expect_body("/v2/now/library/img/manifests/v1", im.body, strlen(im.body)); /* revalidated */
    snprintf(path, sizeof(path), "/v2/now/library/img/blobs/%s", im.layer);
    expect_body(path, im.data, im.len); /* blob hit: slow/'s pull brought it */
    cr_assert_eq(http_status(&srv, "GET", "/v2/slow/library/none/manifests/v1", NULL, 0),
                 404); /* miss: the upstream said it has none */
    dist_stop(&up);
    http(&srv, "GET", "/v2/now/library/img/manifests/v1", NULL, 0, NULL, &r); /* stale */
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    cr_assert_eq(http_status(&srv, "GET", "/v2/now/library/other/manifests/v1", NULL, 0),
                 502); /* error */
    snprintf(path, sizeof(path), "/v2/slow/library/img/blobs/%s", im.config);
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 502); /* blob error */
    for (k = 0; k < 2; k++)
        for (i = 0; i < 5; i++)
            cr_expect_eq(proxy_count(kinds[k], results[i]), want[k][i], "%s %s: %ld, not %ld",
                         kinds[k], results[i], proxy_count(kinds[k], results[i]), want[k][i]);
    /* The page stays valid Prometheus text, with no repository in it. */
    http(&srv, "GET", "/metrics", NULL, 0, NULL, &r);
    cr_assert_null(strstr(r.body, "library"), "a repository name is in the page");
    server_file(&srv, "scrape.txt", r.body);
    resp_free(&r);
    snprintf(cmd, sizeof(cmd), "promtool check metrics < %s",
             server_file(&srv, "scrape.txt", NULL));
    cr_assert_eq(system(cmd), 0, "promtool check metrics");
    free(im.data);
}

/* ---- eviction ---------------------------------------------------------------------------- */

/* Whether the mirror stores blob digest ("sha256:...") as a file. */
static int blob_file(const char *digest)
{
    char path[sizeof(srv.root) + 100];

    snprintf(path, sizeof(path), "%s/data/blobs/sha256/%.2s/%.64s", srv.root, digest + 7,
             digest + 7);
    return access(path, F_OK) == 0;
}

/* A metric without labels on the mirror's page; -1 when absent. */
static long metric(const char *name)
{
    char series[200];
    const char *p;
    struct resp r;
    long v = -1;
    size_t n = (size_t)snprintf(series, sizeof(series), "%s ", name);

    http(&srv, "GET", "/metrics", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    for (p = r.body; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, series, n)) {
            v = strtol(p + n, NULL, 10);
            break;
        }
    resp_free(&r);
    return v;
}

/* A GC run in the mirror now (SIGUSR1): how many cached repositories its
 * log line says it evicted. */
static unsigned long long gc_now(void)
{
    char line[1024] = "";
    const char *p;
    int before = server_log_find(&srv, "gc: freed ", NULL, 0), i;
    unsigned long long evicted = 0;

    kill(srv.pid, SIGUSR1);
    for (i = 0; i < 3000 && server_log_find(&srv, "gc: freed ", line, sizeof(line)) == before; i++)
        usleep(10000);
    cr_assert_gt(server_log_find(&srv, "gc: freed ", line, sizeof(line)), before,
                 "no GC run was logged within 30 s of SIGUSR1");
    p = strstr(line, "orphan blob files");
    p = p ? strstr(p, "), ") : NULL;
    cr_assert(p && sscanf(p, "), %llu cached repositories evicted", &evicted) == 1,
              "GC line without its evictions: %s", line);
    return evicted;
}

/* Pull im of repo through the mirror: the manifest by tag, then both blobs. */
static void pull_image(const char *repo, const struct image *im)
{
    char path[600];

    snprintf(path, sizeof(path), "/v2/%s/manifests/v1", repo);
    expect_body(path, im->body, strlen(im->body));
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, im->layer);
    expect_body(path, im->data, im->len);
    snprintf(path, sizeof(path), "/v2/%s/blobs/%s", repo, im->config);
    cr_assert_eq(http_status(&srv, "GET", path, NULL, 0), 200);
}

/* With the mirror for every name not found locally (empty prefix) and
 * evict_after as given: library/old is pulled and left alone; library/new
 * is pulled, then again just before GC (a hit, remembered in memory only);
 * library/mixed is pulled, then a manifest is pushed into it by digest;
 * local/app is pushed. Returns how many repositories GC evicted. */
static unsigned long long idle_pull_then_gc(const char *evict_after, struct image *old,
                                            struct image *fresh)
{
    struct image mixed, local, pushed;
    char conf[1024];

    dist_start(&up);
    push_upstream("library/old", "v1", 100000, old);
    push_upstream("library/new", "v1", 100000, fresh);
    push_upstream("library/mixed", "v1", 1000, &mixed);
    snprintf(conf, sizeof(conf),
             "[gc]\ninterval = 0\ngrace = 0\n"
             "[proxy.hub]\nurl = %s\nprefix =\ntag_ttl = 1h\nevict_after = %s\n",
             up.http.base, evict_after);
    server_start(&srv, conf);
    push_to(&srv, "local/app", "v1", 1000, &local);
    pull_image("library/old", old);
    pull_image("library/new", fresh);
    pull_image("library/mixed", &mixed);
    /* A manifest pushed by digest alone (no tag) into the cached library/mixed. */
    push_to(&srv, "library/mixed", NULL, 1000, &pushed);
    sleep(7); /* past evict_after (6 s: room for a loaded machine between pull and GC) */
    expect_body("/v2/library/new/manifests/v1", fresh->body, strlen(fresh->body));
    cr_assert_eq(dist_count(&up, "GET /v2/library/new/manifests/v1"), 1, "a hit, not a fetch");
    free(mixed.data);
    free(local.data);
    free(pushed.data);
    return gc_now();
}

Test(proxy, a_cached_repository_unpulled_for_evict_after_is_evicted_by_gc_and_pulled_again)
{
    struct image old, fresh;
    char args[800], out[8192];
    int rc;

    cr_assert_eq(idle_pull_then_gc("6s", &old, &fresh), 1, "library/old alone is evicted");
    cr_assert_not(in_catalog(&srv, "library/old"),
                  "the evicted repository is still in the catalog");
    cr_assert(in_catalog(&srv, "library/new"),
              "a repository pulled within evict_after was evicted");
    cr_assert(in_catalog(&srv, "library/mixed"), "a repository with a pushed manifest was evicted");
    cr_assert(in_catalog(&srv, "local/app"), "a pushed repository was evicted");
    cr_assert_not(blob_file(old.layer), "the evicted layer's file is still stored");
    cr_assert_not(blob_file(old.config), "the evicted config's file is still stored");
    cr_assert(blob_file(fresh.layer), "a kept repository lost its layer");
    cr_assert_eq(server_log_find(&srv, "proxy hub: evicted library/old: not pulled for", NULL, 0),
                 1);
    cr_assert_eq(metric("registry_proxy_evicted_repositories_total"), 1);
    expect_fsck_clean();
    /* The next pull fetches it again from the upstream. */
    pull_image("library/old", &old);
    cr_assert_eq(dist_count(&up, "GET /v2/library/old/manifests/v1"), 2);
    cr_assert(blob_file(old.layer));
    cr_assert(in_catalog(&srv, "library/old"));
    /* Pull times survive a restart: library/new, pulled just before the stop
     * (remembered in memory), stays through an offline `registry gc`; the
     * refetched library/old, left alone for evict_after, goes. */
    sleep(7);
    expect_body("/v2/library/new/manifests/v1", fresh.body, strlen(fresh.body));
    cr_assert_eq(server_stop(&srv), 0);
    snprintf(args, sizeof(args), "gc --root %s/data --config %s", srv.root, srv.config);
    rc = registry_run(args, out, sizeof(out));
    cr_assert_eq(rc, 0, "registry gc: %d: %s", rc, out);
    cr_assert(strstr(out, ", 1 cached repositories evicted (1 manifests)"), "%s", out);
    expect_fsck_clean();
    server_restart(&srv);
    cr_assert_not(in_catalog(&srv, "library/old"));
    cr_assert(in_catalog(&srv, "library/new"), "a pull just before a restart was forgotten");
    cr_assert(in_catalog(&srv, "library/mixed"));
    cr_assert(in_catalog(&srv, "local/app"));
    cr_assert_not(blob_file(old.layer));
    expect_body("/v2/library/old/manifests/v1", old.body, strlen(old.body));
    free(old.data);
    free(fresh.data);
}

Test(proxy, without_evict_after_gc_keeps_every_cached_repository)
{
    struct image old, fresh;

    cr_assert_eq(idle_pull_then_gc("0", &old, &fresh), 0);
    cr_assert(in_catalog(&srv, "library/old"));
    cr_assert(blob_file(old.layer));
    cr_assert_eq(metric("registry_proxy_evicted_repositories_total"), 0);
    free(old.data);
    free(fresh.data);
}

/* ---- joining and letting go of a fetch ------------------------------------------------- */

/* A repository whose manifest uses a layer another repository is fetching
 * (two prefixes on one upstream) streams from that fetch instead of waiting
 * for it to end: with the upstream stopped mid-blob, both clients have
 * bytes. */
Test(proxy, a_layer_another_repository_is_fetching_streams_to_a_repository_that_uses_it)
{
    unsigned long long slack = sock_buf_max("/proc/sys/net/ipv4/tcp_rmem") +
                               sock_buf_max("/proc/sys/net/ipv4/tcp_wmem") + (1 << 20);
    const size_t len = (size_t)slack * 2;
    char uploads[400], url[600], url2[600];
    struct image im;
    struct puller p, q;
    pthread_t th, th2;
    int i;

    dist_start(&up);
    start_mirror();
    snprintf(uploads, sizeof(uploads), "%s/data/uploads", srv.root);
    push_upstream("library/shared", "v1", len, &im);
    expect_body("/v2/slow/library/shared/manifests/v1", im.body, strlen(im.body));
    expect_body("/v2/fast/library/shared/manifests/v1", im.body, strlen(im.body));
    snprintf(url, sizeof(url), "%s/v2/slow/library/shared/blobs/%s", srv.base, im.layer);
    snprintf(url2, sizeof(url2), "%s/v2/fast/library/shared/blobs/%s", srv.base, im.layer);
    p = (struct puller){url, 0, 0, 0};
    cr_assert_eq(pthread_create(&th, NULL, pull, &p), 0);
    while (dir_bytes(uploads) == 0 && !p.complete)
        usleep(1000);
    kill(up.pid, SIGSTOP);
    q = (struct puller){url2, 0, 0, 0};
    cr_assert_eq(pthread_create(&th2, NULL, pull, &q), 0);
    /* Bounds, not timings: a waiting client gets nothing until SIGCONT. */
    for (i = 0; i < 3000 && (p.bytes == 0 || q.bytes == 0); i++)
        usleep(10 * 1000);
    if (dir_bytes(uploads) < len) { /* else the fetch ended before the stop */
        cr_expect_gt((size_t)p.bytes, 0, "the fetching repository got nothing");
        cr_expect_gt((size_t)q.bytes, 0, "the other repository waits for the whole fetch");
    }
    kill(up.pid, SIGCONT);
    pthread_join(th, NULL);
    pthread_join(th2, NULL);
    cr_assert(p.complete && p.status == 200 && p.bytes == len);
    cr_assert(q.complete && q.status == 200 && q.bytes == len);
    cr_assert_eq(dist_count(&up, "GET /v2/library/shared/blobs/"), 1, "one upstream GET");
    expect_fsck_clean();
    free(im.data);
}

/* Open descriptors of the mirror on an unlinked spool file. */
static int spools_open(void)
{
    char dir[64], link[400], target[600];
    struct dirent *de;
    DIR *d;
    ssize_t n;
    int count = 0;

    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)srv.pid);
    d = opendir(dir);
    cr_assert_not_null(d);
    while ((de = readdir(d)) != NULL) {
        snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
        n = readlink(link, target, sizeof(target) - 1);
        if (n > 0) {
            target[n] = '\0';
            count += strstr(target, "proxy-spool") != NULL;
        }
    }
    closedir(d);
    return count;
}

static void *slow_pull(void *arg)
{
    struct puller *p = arg;
    CURL *c = curl_easy_init();

    curl_easy_setopt(c, CURLOPT_URL, p->url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, count_bytes);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &p->bytes);
    curl_easy_setopt(c, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t)(1 << 20));
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    p->complete = curl_easy_perform(c) == CURLE_OK;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &p->status);
    curl_easy_cleanup(c);
    return NULL;
}

/* Once the blob has landed, a slow client reads on from the store: the
 * spool (a second copy of the blob) is let go long before the client is
 * done (32 MiB at 1 MiB/s). */
Test(proxy, the_spool_is_let_go_once_the_blob_has_landed_while_a_slow_client_reads)
{
    const size_t len = 32 << 20;
    char url[600];
    struct image im;
    struct puller p;
    pthread_t th;
    int i;

    dist_start(&up);
    start_mirror();
    push_upstream("library/slowc", "v1", len, &im);
    expect_body("/v2/slow/library/slowc/manifests/v1", im.body, strlen(im.body));
    snprintf(url, sizeof(url), "%s/v2/slow/library/slowc/blobs/%s", srv.base, im.layer);
    p = (struct puller){url, 0, 0, 0};
    cr_assert_eq(pthread_create(&th, NULL, slow_pull, &p), 0);
    for (i = 0; i < 3000 && !blob_file(im.layer); i++)
        usleep(10 * 1000);
    cr_assert(blob_file(im.layer), "the blob never landed");
    for (i = 0; i < 1000 && spools_open() > 0; i++)
        usleep(10 * 1000);
    cr_expect_eq(spools_open(), 0, "the spool is held after the blob landed");
    cr_expect_lt((size_t)p.bytes, len, "the client was done first: nothing shown");
    pthread_join(th, NULL);
    cr_assert(p.complete && p.status == 200 && p.bytes == len);
    free(im.data);
}
