#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

/* Atomic: a reload (SIGHUP) changes them while other threads log. */
static atomic_int min_level = LOG_INFO;
static atomic_int out_format = LOG_TEXT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_level level, enum log_format format)
{
    atomic_store(&min_level, (int)level);
    atomic_store(&out_format, (int)format);
}

int log_enabled(enum log_level level)
{
    return (int)level >= atomic_load(&min_level);
}

static void timestamp(char *buf, size_t size)
{
    struct timespec ts;
    struct tm tm;
    size_t n;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, size - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* Emit a finished line with one write so that threads never interleave. */
static void emit(const char *line)
{
    fputs(line, stderr);
}

/* Messages may quote what clients sent: control characters could forge
 * lines or drive a terminal. */
static void scrub(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    char ts[40], msg[1024], line[2048];
    va_list ap;

    if (!log_enabled(level))
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    scrub(msg);
    timestamp(ts, sizeof(ts));
    if (out_format == LOG_JSON) {
        json_t *o =
            json_pack("{s:s, s:s, s:s}", "time", ts, "level", level_names[level], "msg", msg);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

        snprintf(line, sizeof(line), "%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        snprintf(line, sizeof(line), "%s %-5s %s\n", ts, level_names[level], msg);
    }
    emit(line);
}

void log_access(const struct log_request *q)
{
    char ts[40], line[2600], m[24], p[1024], u[260], c[64];

    if (!log_enabled(LOG_INFO))
        return;
    snprintf(m, sizeof(m), "%s", q->method);
    snprintf(p, sizeof(p), "%s", q->path);
    snprintf(u, sizeof(u), "%s", q->user && q->user[0] ? q->user : "-");
    snprintf(c, sizeof(c), "%s", q->client ? q->client : "-");
    scrub(m);
    scrub(p);
    scrub(u);
    scrub(c);
    timestamp(ts, sizeof(ts));
    if (out_format == LOG_JSON) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:s, s:i, s:I, s:f}", "time", ts,
                              "level", "info", "client", c, "user", u, "method", m, "request",
                              (json_int_t)q->id, "path", p, "status", (int)q->status, "bytes",
                              (json_int_t)q->bytes, "ms", q->ms);
        char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;

        snprintf(line, sizeof(line), "%s\n", s ? s : "{}");
        free(s);
        json_decref(o);
    } else {
        snprintf(line, sizeof(line), "%s info  %s %s #%llu %s %s %u %llu %.1fms\n", ts, c, u,
                 (unsigned long long)q->id, m, p, q->status, q->bytes, q->ms);
    }
    emit(line);
}
