/* Logging to stderr, one line per event, as text or JSON. Thread-safe. */
#ifndef REG_LOG_H
#define REG_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_TEXT, LOG_JSON };

void log_setup(enum log_level level, enum log_format format);
int log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* One access line: method, path (never the query), status, bytes, ms. Control
 * characters in method and path are replaced, as in every message. */
/* One request, as the access line tells it. */
struct log_request {
    const char *client;    /* peer address */
    const char *user;      /* authenticated caller, "" or NULL when anonymous */
    unsigned long long id; /* the server's number for the request */
    const char *method, *path;
    unsigned status;
    unsigned long long bytes; /* reply body */
    double ms;
};

/* The access line: client, user, request number, method, path, status,
 * bytes, milliseconds; control characters scrubbed. */
void log_access(const struct log_request *q);

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
