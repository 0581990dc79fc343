/* Prometheus metrics (text exposition format 0.0.4) for GET /metrics.
 *
 * Counting a request costs a handful of relaxed atomic additions on counters
 * that belong to the calling thread (one shard per thread, up to
 * METRICS_SHARDS): no lock, no allocation, no shared cache line on the
 * request path. A scrape adds the shards up. Labels name the route kind,
 * never a repository, so nothing a client pushed shows in a label. The
 * state is one per process, like the data root. */
#ifndef REG_METRICS_H
#define REG_METRICS_H

#include <stdint.h>

#include "../api/api.h"

struct http_server;
struct gc_stats;

/* Why a request was refused by the auth check. */
enum metrics_auth_reason {
    METRICS_AUTH_MISSING,   /* no credentials: challenged (the first step of every login) */
    METRICS_AUTH_INVALID,   /* wrong password, bad or expired token */
    METRICS_AUTH_THROTTLED, /* too many failures from the address: 429 */
    METRICS_AUTH_DENIED,    /* known caller without the right */
    METRICS_AUTH__COUNT
};

/* Note the start time; srv (may be NULL) is the main listener, whose open
 * connections and requests in flight a scrape reports. Call once, before
 * serving. */
void metrics_start(struct http_server *srv);

/* One finished request: method NULL counts as "other", route is an enum
 * route_kind or -1 when the path named no endpoint. status 499: the client
 * went away. */
void metrics_request(const char *method, int route, unsigned status, uint64_t nanoseconds,
                     uint64_t bytes_in, uint64_t bytes_out);
void metrics_auth_failure(enum metrics_auth_reason why);
/* A GC run inside serve ended with rc (stats valid when rc is REG_OK). */
void metrics_gc_run(int rc, const struct gc_stats *stats);

/* The handler of /metrics for method; NULL when the method is not allowed. */
const struct handler *metrics_handler(const char *method);

#endif
