/* registry healthcheck: GET /healthz from the server the configuration
 * describes, over TLS when it serves TLS. For container HEALTHCHECKs in
 * images without curl. The server is the one on this host: a wildcard
 * listen address is asked on loopback, and its certificate is not verified
 * (the question is "does it answer", not "is it who it says"). */
#include "healthcheck.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define PROBE_TIMEOUT_SEC 5

/* Split "host:port" or "[v6]:port"; a wildcard or empty host becomes the
 * loopback address of its family. */
static int split_listen(const char *listen, char *host, size_t hsize, char *port, size_t psize)
{
    const char *colon = strrchr(listen, ':');
    const char *h = listen;
    size_t hl;

    if (!colon || !colon[1] || strlen(colon + 1) >= psize)
        return -1;
    hl = (size_t)(colon - listen);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl >= hsize)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (!host[0] || !strcmp(host, "0.0.0.0") || !strcmp(host, "*"))
        snprintf(host, hsize, "127.0.0.1");
    else if (!strcmp(host, "::"))
        snprintf(host, hsize, "::1");
    snprintf(port, psize, "%s", colon + 1);
    return 0;
}

static int dial(const char *host, const char *port)
{
    struct addrinfo hints, *res, *ai;
    struct timeval tv = {PROBE_TIMEOUT_SEC, 0};
    int fd = -1, rc;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        fprintf(stderr, "healthcheck: %s:%s: %s\n", host, port, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        /* On Linux the send timeout also bounds connect(). */
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        fprintf(stderr, "healthcheck: cannot connect to %s:%s\n", host, port);
    return fd;
}

/* Send the request, read the head's first line into line. */
static int exchange(int fd, SSL *ssl, const char *host, char *line, size_t lsize)
{
    char req[512];
    size_t got = 0;
    int n;

    n = snprintf(req, sizeof(req),
                 "GET /healthz HTTP/1.1\r\nHost: %s%s%s\r\nUser-Agent: registry-healthcheck\r\n"
                 "Connection: close\r\n\r\n",
                 strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "");
    if (n <= 0 || (size_t)n >= sizeof(req))
        return -1;
    if (ssl ? SSL_write(ssl, req, n) != n : write(fd, req, (size_t)n) != n)
        return -1;
    while (got + 1 < lsize) {
        n = ssl ? SSL_read(ssl, line + got, (int)(lsize - 1 - got))
                : (int)read(fd, line + got, lsize - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        line[got] = '\0';
        if (strchr(line, '\n'))
            break;
    }
    line[got] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    return got ? 0 : -1;
}

int healthcheck_run(const char *listen, int tls)
{
    char host[256], port[16], line[256] = "";
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    int fd, rc = 1;

    if (split_listen(listen, host, sizeof(host), port, sizeof(port))) {
        fprintf(stderr, "healthcheck: bad listen address '%s'\n", listen);
        return 2;
    }
    fd = dial(host, port);
    if (fd < 0)
        return 1;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        ssl = ctx ? SSL_new(ctx) : NULL;
        if (!ssl || !SSL_set_fd(ssl, fd) || SSL_connect(ssl) != 1) {
            fprintf(stderr, "healthcheck: TLS handshake with %s:%s failed\n", host, port);
            goto out;
        }
    }
    if (exchange(fd, ssl, host, line, sizeof(line))) {
        fprintf(stderr, "healthcheck: no answer from %s:%s\n", host, port);
        goto out;
    }
    /* "HTTP/1.1 200 OK" */
    if (!strncmp(line, "HTTP/1.", 7) && !strncmp(line + 8, " 200", 4)) {
        printf("healthy: %s%s:%s/healthz %s\n", tls ? "https://" : "http://", host, port, line);
        rc = 0;
    } else {
        fprintf(stderr, "healthcheck: %s:%s/healthz answered '%s'\n", host, port, line);
    }
out:
    if (ssl) {
        SSL_shutdown(ssl);
        SSL_free(ssl);
    }
    SSL_CTX_free(ctx);
    ERR_clear_error();
    close(fd);
    return rc;
}
