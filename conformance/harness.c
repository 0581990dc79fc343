#include "harness.h"
#include "httpc.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

static const char *registry_bin(void)
{
    const char *b = getenv("REGISTRY_BIN");

    return b && *b ? b : "build/registry";
}

static void spawn(struct server *s)
{
    char ready[300], log[300];
    struct timespec ts = {0, 10 * 1000 * 1000};
    int i;
    FILE *f;

    snprintf(ready, sizeof(ready), "%s/ready", s->root);
    snprintf(log, sizeof(log), "%s/server.log", s->root);
    unlink(ready);
    s->pid = fork();
    cr_assert(s->pid >= 0, "fork");
    if (s->pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        char data[300];

        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        snprintf(data, sizeof(data), "%s/data", s->root);
        if (s->config[0])
            execl(registry_bin(), "registry", "serve", "--listen", "127.0.0.1:0", "--root", data,
                  "--ready-file", ready, "--config", s->config, (char *)NULL);
        else
            execl(registry_bin(), "registry", "serve", "--listen", "127.0.0.1:0", "--root", data,
                  "--ready-file", ready, (char *)NULL);
        _exit(127);
    }
    /* ASan start-up is slow; allow 30 s. */
    for (i = 0; i < 3000; i++) {
        char line[64] = "";
        int status;

        f = fopen(ready, "r");
        if (f) {
            if (fgets(line, sizeof(line), f))
                line[strcspn(line, "\n")] = '\0';
            fclose(f);
            if (line[0]) {
                snprintf(s->base, sizeof(s->base), "http://%s", line);
                return;
            }
        }
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            cr_assert_fail("registry exited at start-up (status %d), see %s", status, log);
        }
        nanosleep(&ts, NULL);
    }
    cr_assert_fail("registry did not become ready");
}

void server_prepare(struct server *s)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->root, sizeof(s->root), "/tmp/regtest.XXXXXX");
    cr_assert(mkdtemp(s->root), "mkdtemp");
}

const char *server_file(struct server *s, const char *name, const char *text)
{
    static char path[4][400];
    static int next;
    char *p = path[next++ % 4];
    FILE *f;

    snprintf(p, sizeof(path[0]), "%s/%s", s->root, name);
    if (text) {
        f = fopen(p, "w");
        cr_assert(f, "write %s", p);
        fputs(text, f);
        fclose(f);
    }
    return p;
}

void server_launch(struct server *s, const char *config_text)
{
    if (config_text) {
        FILE *f;

        snprintf(s->config, sizeof(s->config), "%s/registry.conf", s->root);
        f = fopen(s->config, "w");
        cr_assert(f);
        fputs(config_text, f);
        fclose(f);
    }
    spawn(s);
}

void server_start(struct server *s, const char *config_text)
{
    server_prepare(s);
    server_launch(s, config_text);
}

void server_restart(struct server *s)
{
    spawn(s);
}

int server_stop(struct server *s)
{
    int status = 0;

    if (s->pid <= 0)
        return 0;
    kill(s->pid, SIGTERM);
    waitpid(s->pid, &status, 0);
    s->pid = 0;
    s->exit_status = status;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

void server_kill9(struct server *s)
{
    if (s->pid <= 0)
        return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

static void dump_log(struct server *s)
{
    char path[300], line[512];
    FILE *f;

    snprintf(path, sizeof(path), "%s/server.log", s->root);
    f = fopen(path, "r");
    if (!f)
        return;
    fprintf(stderr, "---- %s\n", path);
    while (fgets(line, sizeof(line), f))
        fputs(line, stderr);
    fclose(f);
}

static int rm_rf(const char *path)
{
    char cmd[400];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
    return system(cmd);
}

void server_destroy(struct server *s)
{
    int rc = server_stop(s);

    if (rc != 0 || getenv("HARNESS_LOG"))
        dump_log(s);
    if (s->root[0])
        rm_rf(s->root);
    /* A sanitizer report or a crash at exit fails the test. */
    cr_expect_eq(rc, 0, "registry exited with %d", rc);
}

void http(struct server *s, const char *method, const char *path, const void *body, size_t len,
          const char *const *hdrs, struct resp *out)
{
    CURL *c = curl_easy_init();
    struct curl_slist *list = NULL;
    struct httpc_buf b = {NULL, 0}, h = {NULL, 0};
    char url[4096];
    CURLcode rc;

    cr_assert(c);
    if (strncmp(path, "http", 4) == 0)
        snprintf(url, sizeof(url), "%s", path);
    else
        snprintf(url, sizeof(url), "%s%s", s->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    if (!strcmp(method, "HEAD"))
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body || !strcmp(method, "PUT") || !strcmp(method, "POST") || !strcmp(method, "PATCH")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        const char *const *hp;
        int has_ct = 0;

        for (hp = hdrs; hp && *hp; hp++)
            has_ct |= strncasecmp(*hp, "Content-Type:", 13) == 0;
        if (!has_ct)
            list = curl_slist_append(list, "Content-Type: application/octet-stream");
    }
    list = curl_slist_append(list, "Expect:");
    for (; hdrs && *hdrs; hdrs++)
        list = curl_slist_append(list, *hdrs);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, httpc_on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, httpc_on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    if (s->cafile[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, s->cafile);
    rc = curl_easy_perform(c);
    if (rc != CURLE_OK && s->no_assert) {
        out->status = -1;
        out->body = b.p ? b.p : strdup("");
        out->len = b.len;
        out->headers = h.p ? h.p : strdup("");
        curl_slist_free_all(list);
        curl_easy_cleanup(c);
        return;
    }
    cr_assert_eq(rc, CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    out->body = b.p ? b.p : strdup("");
    out->len = b.len;
    out->headers = h.p ? h.p : strdup("");
    curl_slist_free_all(list);
    curl_easy_cleanup(c);
}

long http_status(struct server *s, const char *method, const char *path, char *code, size_t csize)
{
    struct resp r;
    long st;

    http(s, method, path, NULL, 0, NULL, &r);
    st = r.status;
    if (code)
        resp_error_code(&r, code, csize);
    resp_free(&r);
    return st;
}

long http_put_manifest(struct server *s, const char *repo, const char *ref, const char *ct,
                       const void *body, size_t len, struct resp *out)
{
    char path[1024], cth[200];
    const char *h[] = {cth, NULL};
    struct resp r;
    long st;

    snprintf(path, sizeof(path), "/v2/%s/manifests/%s", repo, ref);
    snprintf(cth, sizeof(cth), "Content-Type: %s", ct ? ct : "");
    http(s, "PUT", path, body, len, ct ? h : NULL, &r);
    st = r.status;
    if (out)
        *out = r;
    else
        resp_free(&r);
    return st;
}

void resp_free(struct resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

const char *resp_header(const struct resp *r, const char *name, char *buf, size_t size)
{
    return httpc_header(r->headers, name, buf, size);
}

const char *resp_error_code(const struct resp *r, char *buf, size_t size)
{
    return httpc_error_code(r->body, r->len, buf, size);
}

void *rand_bytes(size_t len)
{
    unsigned char *p = malloc(len ? len : 1);
    FILE *f = fopen("/dev/urandom", "rb");

    cr_assert(p && f);
    cr_assert_eq(fread(p, 1, len, f), len);
    fclose(f);
    return p;
}

void digest_str(const char *algo, const void *data, size_t len, char *out, size_t size)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0, i;
    size_t off;

    EVP_Digest(data, len, md, &n, !strcmp(algo, "sha512") ? EVP_sha512() : EVP_sha256(), NULL);
    off = (size_t)snprintf(out, size, "%s:", algo);
    for (i = 0; i < n && off + 2 < size; i++)
        off += (size_t)snprintf(out + off, size - off, "%02x", md[i]);
}

void push_blob(struct server *s, const char *repo, const void *data, size_t len, char *digest,
               size_t dsize)
{
    char path[1024];
    struct resp r;

    digest_str("sha256", data, len, digest, dsize);
    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repo, digest);
    http(s, "POST", path, data, len, NULL, &r);
    cr_assert_eq(r.status, 201, "push %s: %ld %s", repo, r.status, r.body);
    resp_free(&r);
}

void start_upload(struct server *s, const char *repo, char *loc, size_t size)
{
    char path[1024];
    struct resp r;

    snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/", repo);
    http(s, "POST", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 202, "start upload: %ld %s", r.status, r.body);
    cr_assert(resp_header(&r, "Location", loc, size));
    resp_free(&r);
}

void raw_send(struct server *s, const void *req, size_t len, int close_early, char *out,
              size_t outsize)
{
    struct sockaddr_in a;
    const char *colon = strrchr(s->base, ':');
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    size_t got = 0;

    cr_assert(fd >= 0 && colon);
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)atoi(colon + 1));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    if (close_early) {
        /* Give the server time to take in what was sent, then hang up. */
        struct timespec ts = {0, 300 * 1000 * 1000};

        nanosleep(&ts, NULL);
    } else {
        struct timeval tv = {10, 0};

        shutdown(fd, SHUT_WR);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        while (out && got + 1 < outsize) {
            ssize_t n = recv(fd, out + got, outsize - got - 1, 0);

            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (out)
            out[got] = '\0';
    }
    close(fd);
}

/* Walk the regular files under dir: their count and apparent bytes. */
static void walk(const char *dir, int *files, unsigned long long *bytes)
{
    DIR *d = opendir(dir);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char path[1024];
        struct stat st;

        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            walk(path, files, bytes);
        } else if (S_ISREG(st.st_mode)) {
            (*files)++;
            *bytes += (unsigned long long)st.st_size;
        }
    }
    closedir(d);
}

int count_files(const char *dir)
{
    unsigned long long bytes = 0;
    int n = 0;

    walk(dir, &n, &bytes);
    return n;
}

unsigned long long dir_bytes(const char *dir)
{
    unsigned long long bytes = 0;
    int n = 0;

    walk(dir, &n, &bytes);
    return bytes;
}

int registry_run(const char *args, char *out, size_t size)
{
    char cmd[2048];
    size_t n;
    FILE *p;
    int st;

    snprintf(cmd, sizeof(cmd), "timeout -s KILL 20 %s %s 2>&1", registry_bin(), args);
    p = popen(cmd, "r");
    cr_assert(p);
    n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int server_log_find(struct server *s, const char *needle, char *buf, size_t size)
{
    char path[1024], *line = NULL;
    size_t cap = 0;
    int n = 0;
    FILE *f;

    snprintf(path, sizeof(path), "%s/server.log", s->root);
    f = fopen(path, "r");
    if (!f)
        return 0;
    while (getline(&line, &cap, f) > 0) {
        if (!strstr(line, needle))
            continue;
        n++;
        if (buf)
            snprintf(buf, size, "%s", strstr(line, needle));
    }
    free(line);
    fclose(f);
    return n;
}

int in_catalog(struct server *s, const char *repo)
{
    struct resp r;
    char want[300];
    int found;

    http(s, "GET", "/v2/_catalog?n=1000", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    snprintf(want, sizeof(want), "\"%s\"", repo);
    found = strstr(r.body, want) != NULL;
    resp_free(&r);
    return found;
}

void write_users(struct server *s)
{
    char cmd[1200];
    const char *bin = getenv("REGISTRY_BIN") ? getenv("REGISTRY_BIN") : "build/registry";

    snprintf(cmd, sizeof(cmd),
             "(echo secret | %s passwd alice && echo pw2 | %s passwd bob) > %s 2>/dev/null", bin,
             bin, server_file(s, "htpasswd", NULL));
    cr_assert_eq(system(cmd), 0, "registry passwd");
}
