/* Eviction of cached repositories (evict.h). */
#include "evict.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/array.h"
#include "../common/err.h"
#include "../common/log.h"
#include "../storage/index.h"

/* Seconds between two writes of the remembered pull times. */
#define FLUSH_SECONDS 60
/* Repositories remembered before the next pull writes them, whatever the
 * time: bounds the table's memory. */
#define USES_MAX 65536
#define BUCKETS 1024

struct rule {
    char name[64];
    char prefix[256];
    size_t plen;
    int64_t after; /* seconds; 0: never */
};

/* A repository pulled since the last write of the times. */
struct use {
    struct use *next;
    int64_t when; /* unix seconds of its last pull */
    char repo[];
};

struct evict {
    struct rule *rules;
    size_t n;
    struct index *ix;
    pthread_mutex_t lock; /* guards table and nuses */
    struct use *table[BUCKETS];
    size_t nuses;
    pthread_mutex_t writing; /* one writer of the times at a time, held through a run */
    atomic_llong written;    /* unix seconds of the last write */
};

int evict_new(const struct evict_rule *v, size_t n, struct index *ix, struct evict **out)
{
    struct evict *e = calloc(1, sizeof(*e));
    size_t i;

    *out = NULL;
    if (!e || (n && !(e->rules = calloc(n, sizeof(*e->rules))))) {
        free(e);
        return REG_E_NOMEM;
    }
    for (i = 0; i < n; i++) {
        snprintf(e->rules[i].name, sizeof(e->rules[i].name), "%s", v[i].name);
        snprintf(e->rules[i].prefix, sizeof(e->rules[i].prefix), "%s",
                 v[i].prefix ? v[i].prefix : "");
        e->rules[i].plen = strlen(e->rules[i].prefix);
        e->rules[i].after = v[i].after;
    }
    e->n = n;
    e->ix = ix;
    pthread_mutex_init(&e->lock, NULL);
    pthread_mutex_init(&e->writing, NULL);
    atomic_init(&e->written, (long long)time(NULL));
    *out = e;
    return REG_OK;
}

static void uses_free(struct use *u)
{
    struct use *next;

    for (; u; u = next) {
        next = u->next;
        free(u);
    }
}

void evict_free(struct evict *e)
{
    size_t i;

    if (!e)
        return;
    for (i = 0; i < BUCKETS; i++)
        uses_free(e->table[i]);
    pthread_mutex_destroy(&e->writing);
    pthread_mutex_destroy(&e->lock);
    free(e->rules);
    free(e);
}

/* The rule of the proxy covering repo, as proxy.h matches upstreams: a
 * prefix wins over the empty prefix. NULL when no proxy covers it. */
static const struct rule *find(const struct evict *e, const char *repo)
{
    const struct rule *any = NULL;
    size_t i;

    for (i = 0; i < e->n; i++) {
        const struct rule *r = &e->rules[i];

        if (!r->plen)
            any = r;
        else if (!strncmp(repo, r->prefix, r->plen) && repo[r->plen] == '/' && repo[r->plen + 1])
            return r;
    }
    return any;
}

static size_t bucket(const char *repo)
{
    uint32_t h = 2166136261u; /* FNV-1a */

    for (; *repo; repo++)
        h = (h ^ (unsigned char)*repo) * 16777619u;
    return h % BUCKETS;
}

/* Under lock: the remembered entry of repo, or NULL. */
static struct use *lookup(struct evict *e, const char *repo)
{
    struct use *u;

    for (u = e->table[bucket(repo)]; u && strcmp(u->repo, repo) != 0; u = u->next)
        ;
    return u;
}

/* When repo was pulled according to memory; 0 when it is not remembered. */
static int64_t remembered(struct evict *e, const char *repo)
{
    struct use *u;
    int64_t when;

    pthread_mutex_lock(&e->lock);
    u = lookup(e, repo);
    when = u ? u->when : 0;
    pthread_mutex_unlock(&e->lock);
    return when;
}

/* Under lock: take u into the table, or merge it into repo's entry there. */
static void keep(struct evict *e, struct use *u)
{
    struct use *have = lookup(e, u->repo);
    size_t b = bucket(u->repo);

    if (have) {
        if (have->when < u->when)
            have->when = u->when;
        free(u);
        return;
    }
    u->next = e->table[b];
    e->table[b] = u;
    e->nuses++;
}

/* With writing held: write the remembered times, each over the repository's
 * mark when it is older. Only repositories with cached content have a mark;
 * the others are not recorded. On failure the times stay remembered. */
static int write_times(struct evict *e)
{
    struct use *list = NULL, *u, *next;
    struct index_txn *t = NULL;
    int64_t when;
    size_t i;
    int rc;

    pthread_mutex_lock(&e->lock);
    for (i = 0; i < BUCKETS; i++) {
        for (u = e->table[i]; u; u = next) {
            next = u->next;
            u->next = list;
            list = u;
        }
        e->table[i] = NULL;
    }
    e->nuses = 0;
    pthread_mutex_unlock(&e->lock);
    atomic_store(&e->written, (long long)time(NULL));
    if (!list)
        return REG_OK;
    rc = index_begin(e->ix, INDEX_WRITE, &t);
    for (u = list; !rc && u; u = u->next) {
        rc = index_get_cached(t, u->repo, NULL, &when);
        if (rc == REG_E_NOT_FOUND)
            rc = REG_OK;
        else if (!rc && when < u->when)
            rc = index_set_cached(t, u->repo, NULL, u->when);
    }
    if (t)
        rc = index_end(t, rc);
    if (!rc) {
        uses_free(list);
        return REG_OK;
    }
    log_warn("evict: cannot record when cached repositories were last pulled: %s",
             reg_strerror(rc));
    pthread_mutex_lock(&e->lock);
    for (u = list; u; u = next) {
        next = u->next;
        keep(e, u);
    }
    pthread_mutex_unlock(&e->lock);
    return rc;
}

void evict_used(struct evict *e, const char *repo)
{
    const struct rule *r = e ? find(e, repo) : NULL;
    int64_t now = (int64_t)time(NULL);
    size_t len = strlen(repo);
    struct use *u;
    int due;

    if (!r || !r->after)
        return;
    pthread_mutex_lock(&e->lock);
    u = lookup(e, repo);
    if (u) {
        u->when = now;
    } else if ((u = malloc(sizeof(*u) + len + 1)) != NULL) {
        /* Without memory the pull is not remembered: the repository may
         * look idle sooner, and its content is fetched again if evicted. */
        memcpy(u->repo, repo, len + 1);
        u->when = now;
        u->next = NULL;
        keep(e, u);
    }
    due = e->nuses >= USES_MAX || now - (int64_t)atomic_load(&e->written) >= FLUSH_SECONDS;
    pthread_mutex_unlock(&e->lock);
    /* A request never waits for a run or another request's write. */
    if (due && pthread_mutex_trylock(&e->writing) == 0) {
        write_times(e);
        pthread_mutex_unlock(&e->writing);
    }
}

int evict_flush(struct evict *e)
{
    int rc;

    if (!e)
        return REG_OK;
    pthread_mutex_lock(&e->writing);
    rc = write_times(e);
    pthread_mutex_unlock(&e->writing);
    return rc;
}

/* ---- a run --------------------------------------------------------------------- */

struct names {
    char **v;
    size_t n, cap;
};

static int names_add(struct names *l, const char *name, size_t len)
{
    if (array_reserve(&l->v, &l->cap, l->n, sizeof(*l->v)))
        return REG_E_NOMEM;
    l->v[l->n] = strndup(name, len);
    if (!l->v[l->n])
        return REG_E_NOMEM;
    l->n++;
    return REG_OK;
}

static void names_free(struct names *l)
{
    size_t i;

    for (i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* One repository's content, read in the transaction that evicts it. */
struct content {
    struct index_txn *t;
    const char *repo;
    int64_t last;    /* its last pull */
    const char *why; /* set when it holds content of its own: not evicted */
    struct names tags, manifests, blobs;
    int rc;
};

static int add_tag(void *arg, const char *name, size_t len)
{
    struct content *c = arg;
    int64_t when;

    c->rc = names_add(&c->tags, name, len);
    if (!c->rc && index_get_cached(c->t, c->repo, c->tags.v[c->tags.n - 1], &when) != REG_OK)
        c->why = "a tag was pushed there";
    return c->rc || c->why;
}

static int add_manifest(void *arg, const char *name, size_t len)
{
    struct content *c = arg;

    c->rc = names_add(&c->manifests, name, len);
    return c->rc != REG_OK;
}

/* A blob no manifest of the repository uses, pushed or mounted (touched)
 * since its last pull: a push under way. */
static int add_blob(void *arg, const char *name, size_t len)
{
    struct content *c = arg;
    struct index_blob b;
    char user[DIGEST_STR_MAX];
    const char *digest;

    c->rc = names_add(&c->blobs, name, len);
    if (c->rc)
        return 1;
    digest = c->blobs.v[c->blobs.n - 1];
    if (index_in_use(c->t, c->repo, digest, user, sizeof(user)) == REG_OK &&
        index_get_blob(c->t, digest, &b) == REG_OK && b.touched > c->last)
        c->why = "a blob no manifest uses was pushed there since its last pull";
    return c->why != NULL;
}

/* Read what c->repo holds into c; c->why when it is not only cached. */
static int read_content(struct content *c)
{
    int more;

    if (index_get_pushed(c->t, c->repo) == REG_OK) {
        c->why = "a manifest was pushed there";
        return REG_OK;
    }
    c->rc = REG_OK;
    if (index_list_tags(c->t, c->repo, NULL, SIZE_MAX, add_tag, c, &more) != REG_OK && !c->rc)
        c->rc = REG_E_INDEX;
    if (!c->rc && !c->why && index_repo_manifests(c->t, c->repo, add_manifest, c) != REG_OK &&
        !c->rc)
        c->rc = REG_E_INDEX;
    if (!c->rc && !c->why && index_repo_blobs(c->t, c->repo, add_blob, c) != REG_OK && !c->rc)
        c->rc = REG_E_INDEX;
    return c->rc;
}

/* Remove everything c lists, then the repository. */
static int remove_content(struct content *c)
{
    size_t i;
    int rc = REG_OK;

    for (i = 0; !rc && i < c->tags.n; i++) {
        rc = index_del_tag(c->t, c->repo, c->tags.v[i]);
        rc = rc == REG_E_MANIFEST_UNKNOWN ? REG_OK : rc;
    }
    for (i = 0; !rc && i < c->manifests.n; i++) {
        rc = index_delete_manifest(c->t, c->repo, c->manifests.v[i]);
        rc = rc == REG_E_MANIFEST_UNKNOWN ? REG_OK : rc;
    }
    for (i = 0; !rc && i < c->blobs.n; i++)
        rc = index_unlink_blob(c->t, c->repo, c->blobs.v[i]);
    if (!rc)
        rc = index_repo_empty(c->t, c->repo);
    if (!rc)
        rc = index_drop_repo(c->t, c->repo);
    return rc;
}

/* Evict repo under rule r when it is still due and only cached, checked
 * again in the transaction that removes it. */
static int evict_repo(struct evict *e, const struct rule *r, const char *repo, int64_t now, int dry,
                      uint64_t *repos, uint64_t *manifests)
{
    struct content c;
    int64_t mem = remembered(e, repo);
    int rc, evicted = 0;

    memset(&c, 0, sizeof(c));
    c.repo = repo;
    rc = index_begin(e->ix, dry ? INDEX_READ : INDEX_WRITE_FREEING, &c.t);
    if (rc)
        return rc;
    rc = index_get_cached(c.t, repo, NULL, &c.last);
    if (rc == REG_E_NOT_FOUND) { /* no longer cached content */
        rc = REG_OK;
        goto end;
    }
    if (rc)
        goto end;
    if (mem > c.last)
        c.last = mem;
    if (now - c.last < r->after) /* pulled meanwhile */
        goto end;
    rc = read_content(&c);
    if (rc || c.why) {
        if (c.why)
            log_debug("proxy %s: %s is not evicted: %s", r->name, repo, c.why);
        goto end;
    }
    if (!dry)
        rc = remove_content(&c);
    evicted = !rc;
end:
    if (dry)
        index_abort(c.t);
    else
        rc = index_end(c.t, rc);
    if (!rc && evicted) {
        log_info("proxy %s: %s %s: not pulled for %llds (evict_after %llds): %zu manifests, "
                 "%zu tags",
                 r->name, dry ? "would evict" : "evicted", repo, (long long)(now - c.last),
                 (long long)r->after, c.manifests.n, c.tags.n);
        (*repos)++;
        *manifests += c.manifests.n;
    }
    names_free(&c.tags);
    names_free(&c.manifests);
    names_free(&c.blobs);
    return rc;
}

/* Repositories that look due, from a read transaction. */
struct due {
    struct evict *e;
    struct index_txn *t;
    int64_t now;
    struct names found;
};

static int collect_due(void *arg, const char *repo, const char *unused, const void *v, size_t len)
{
    struct due *d = arg;
    const struct rule *r = find(d->e, repo);
    int64_t when;

    (void)unused;
    (void)v;
    (void)len;
    if (!r || !r->after || index_get_cached(d->t, repo, NULL, &when) != REG_OK ||
        d->now - when < r->after || d->now - remembered(d->e, repo) < r->after)
        return REG_OK;
    return names_add(&d->found, repo, strlen(repo));
}

int evict_run(struct evict *e, int dry, uint64_t *repos, uint64_t *manifests)
{
    struct due d;
    size_t i;
    int rc, any = 0;

    for (i = 0; e && i < e->n; i++)
        any |= e->rules[i].after > 0;
    if (!any)
        return REG_OK;
    memset(&d, 0, sizeof(d));
    d.e = e;
    pthread_mutex_lock(&e->writing);
    if (!dry)
        write_times(e); /* on failure they stay remembered, and are asked below */
    d.now = (int64_t)time(NULL);
    rc = index_begin(e->ix, INDEX_READ, &d.t);
    if (!rc) {
        rc = index_each_repo(d.t, collect_due, &d);
        index_abort(d.t);
    }
    for (i = 0; !rc && i < d.found.n; i++)
        rc = evict_repo(e, find(e, d.found.v[i]), d.found.v[i], d.now, dry, repos, manifests);
    pthread_mutex_unlock(&e->writing);
    names_free(&d.found);
    return rc;
}
