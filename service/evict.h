/* Eviction of cached repositories nobody pulls ([proxy.NAME] evict_after).
 *
 * Every pull the cache serves (a manifest GET or HEAD, a blob GET or HEAD)
 * is remembered in memory, at the cost of a mutex and a hash probe: no
 * transaction per request. The times go to the index (the cached
 * repository's mark, index.h) at most once a minute, before each eviction
 * run and at shutdown, so they survive restarts; a crash loses at most a
 * minute of them, which can only make a repository look idle sooner, and
 * evicted content is fetched again on its next pull.
 *
 * A run, at the start of each GC run, evicts every repository that a proxy
 * with evict_after covers, that holds only cached content and that nobody
 * pulled for evict_after: its tags and manifests are deleted (their
 * references dropped as a manifest DELETE drops them, so the same GC run
 * frees the blobs past their grace), its blob links removed and the
 * repository dropped from the catalog, in one write transaction that checks
 * all of it again. Only cached content: the cache's mark on the repository,
 * a cache mark on every tag, no manifest ever pushed there (index.h), and
 * no blob pushed or mounted since the last pull that no manifest uses (a
 * push under way). */
#ifndef REG_EVICT_H
#define REG_EVICT_H

#include <stddef.h>
#include <stdint.h>

struct index;
struct evict;

/* One proxy's rule: the repositories under prefix ("" = every repository
 * the prefixes leave) are evicted after this many seconds unpulled (0:
 * never). Strings are copied. */
struct evict_rule {
    const char *name;   /* NAME of [proxy.NAME], for the log */
    const char *prefix; /* as proxy.h matches it */
    int64_t after;      /* seconds */
};

/* Over the index (borrowed). */
int evict_new(const struct evict_rule *v, size_t n, struct index *ix, struct evict **out);
/* Frees without writing what is remembered: evict_flush first. NULL is fine. */
void evict_free(struct evict *e);

/* repo was pulled now (e may be NULL). Writes the remembered times when the
 * last write is a minute old and no other thread is writing them. */
void evict_used(struct evict *e, const char *repo);
/* Write the remembered times to the index now. */
int evict_flush(struct evict *e);

/* Evict what is due (dry: count only, write nothing). *repos and
 * *manifests are increased by what was (or would be) evicted. */
int evict_run(struct evict *e, int dry, uint64_t *repos, uint64_t *manifests);

#endif
