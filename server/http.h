/* libmicrohttpd glue: the daemon, the request context behind api/req.h,
 * body streaming and replies. */
#ifndef REG_HTTP_H
#define REG_HTTP_H

#include <stddef.h>

struct registry;
struct http_server;

struct http_opts {
    const char *listen; /* "host:port"; port 0 picks a free one */
    unsigned threads;   /* libmicrohttpd thread pool size */
    unsigned max_connections;
    unsigned timeout;         /* idle seconds before a connection is closed */
    unsigned header_timeout;  /* seconds a request may take to send its headers */
    unsigned max_per_address; /* connections from one address; 0 = no limit */
    size_t connection_memory; /* libmicrohttpd's buffer per connection, bytes */
    size_t send_buffers;      /* bytes blob bodies may buffer together; 0: sendfile only */
    const char *tls_cert;     /* PEM text; with tls_key serves HTTPS; NULL: plain HTTP */
    const char *tls_key;      /* PEM text; must outlive the server */
    int metrics;              /* serve GET /metrics here */
    int metrics_only;         /* serve nothing else (the separate [metrics] listener) */
};

/* Bind and start serving. REG_E_CONFIG when listen is unusable. */
int http_start(const struct http_opts *o, struct registry *reg, struct http_server **out);
/* The port actually bound. */
unsigned http_port(const struct http_server *s);
/* Stop accepting; requests in flight go on. */
void http_quiesce(struct http_server *s);
/* Requests begun and not yet completed. */
unsigned http_in_flight(const struct http_server *s);
/* Client connections open. */
unsigned http_connections(const struct http_server *s);
/* Stop (closing any connection left) and free. */
void http_stop(struct http_server *s);

#endif
