/* The pull-through cache (proxy.h). */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "../common/err.h"
#include "../common/log.h"
#include "../storage/blobstore.h"
#include "../storage/index.h"
#include "manifest.h"
#include "service.h"
#include "shared.h"
#include "uploads.h"
#include "upstream.h"

/* Seconds: to connect; for a whole manifest or token exchange; that a blob
 * may deliver nothing before it is given up. */
#define CONNECT_TIMEOUT 10
#define MANIFEST_TIMEOUT 60
#define STALL_TIMEOUT 60
/* Blobs fetched at once, at most, and manifests asked about at once: past
 * it a cold one gets a 429. */
#define FLIGHTS_MAX 64

struct proxy_up {
    char name[64];
    char prefix[256]; /* "" = every repository not found locally */
    size_t plen;
    long tag_ttl; /* seconds */
    struct upstream *u;
};

/* A blob being fetched (single-flight). A thread of its own writes it
 * into an upload session, which verifies it before it becomes visible, and
 * into a spool file that readers (struct proxy_tap) read as it arrives. */
struct waiter;
struct flight {
    struct flight *next;
    struct proxy *p;
    struct digest d;
    char digest[DIGEST_STR_MAX];
    const struct proxy_up *up;   /* whom the fetcher asks */
    char name[SVC_NAME_MAX + 1]; /* for which of its repositories */
    char repo[SVC_NAME_MAX + 1]; /* ours, which the blob lands in */
    int spool;                   /* unlinked file: the bytes so far */
    uint64_t size;               /* the upstream's Content-Length; UINT64_MAX: not said */
    int sized;                   /* the upstream has answered (size set, or never will be) */
    uint64_t have;               /* bytes in the spool */
    int done, rc;
    char detail[256];       /* reg_detail of a failure, for the waiters' threads */
    unsigned served;        /* requests answered from it: all but the first are hits */
    unsigned refs;          /* the fetcher, waiters, taps: the last one frees it */
    struct waiter *waiters; /* suspended until it has news */
};

struct proxy {
    struct proxy_up *ups;
    size_t n;
    struct blobstore *bs;
    struct index *ix;
    struct uploads *us;
    size_t max_manifest;
    pthread_mutex_t lock; /* guards flights and everything in them the fetcher changes */
    pthread_cond_t cond;  /* a flight has news */
    struct flight *flights;
    unsigned nflights;    /* fetchers running */
    struct mtask *mtasks; /* manifests being asked about */
    unsigned ntasks;      /* their threads running */
    atomic_int stopping;  /* proxy_stop: every fetch ends, no new one starts */
    atomic_ullong counts[PROXY__KINDS][PROXY__RESULTS]; /* proxy_stats */
};

/* The one place a cache event is counted. */
static void count(struct proxy *p, enum proxy_kind kind, enum proxy_result result)
{
    atomic_fetch_add_explicit(&p->counts[kind][result], 1, memory_order_relaxed);
}

/* An upstream answer's outcome: an error of its own, or a miss (the
 * upstream was asked, and had it or not). */
static enum proxy_result fetched(int rc)
{
    return rc == REG_OK || rc == REG_E_MANIFEST_UNKNOWN || rc == REG_E_BLOB_UNKNOWN ? PROXY_MISS
                                                                                    : PROXY_ERROR;
}

void proxy_stats(struct proxy *p, struct proxy_stats *out)
{
    int k, r;

    for (k = 0; k < PROXY__KINDS; k++)
        for (r = 0; r < PROXY__RESULTS; r++)
            out->n[k][r] = atomic_load_explicit(&p->counts[k][r], memory_order_relaxed);
}

int proxy_new(const struct proxy_conf *v, size_t n, struct blobstore *bs, struct index *ix,
              struct uploads *us, size_t max_manifest, struct proxy **out)
{
    struct proxy *p = calloc(1, sizeof(*p));
    size_t i;
    int rc = REG_OK;

    *out = NULL;
    if (!p || (n && !(p->ups = calloc(n, sizeof(*p->ups))))) {
        free(p);
        return REG_E_NOMEM;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    p->bs = bs;
    p->ix = ix;
    p->us = us;
    p->max_manifest = max_manifest;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (i = 0; i < n && !rc; i++) {
        struct upstream_opts o = {v[i].url,        v[i].username,    v[i].password, v[i].ca,
                                  CONNECT_TIMEOUT, MANIFEST_TIMEOUT, STALL_TIMEOUT, &p->stopping};
        struct proxy_up *up = &p->ups[i];

        snprintf(up->name, sizeof(up->name), "%s", v[i].name);
        snprintf(up->prefix, sizeof(up->prefix), "%s", v[i].prefix ? v[i].prefix : "");
        up->plen = strlen(up->prefix);
        up->tag_ttl = v[i].tag_ttl;
        rc = upstream_new(&o, &up->u);
        p->n = i + 1;
    }
    if (rc) {
        proxy_free(p);
        return rc;
    }
    *out = p;
    return REG_OK;
}

void proxy_free(struct proxy *p)
{
    size_t i;

    if (!p)
        return;
    proxy_stop(p);
    for (i = 0; i < p->n; i++)
        upstream_free(p->ups[i].u);
    free(p->ups);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

/* The upstream covering repo, and repo's name there (a suffix of repo). A
 * prefix wins over the empty prefix. */
static struct proxy_up *find(struct proxy *p, const char *repo, const char **name)
{
    struct proxy_up *any = NULL;
    size_t i;

    for (i = 0; p && i < p->n; i++) {
        struct proxy_up *up = &p->ups[i];

        if (!up->plen) {
            any = up;
        } else if (!strncmp(repo, up->prefix, up->plen) && repo[up->plen] == '/' &&
                   repo[up->plen + 1]) {
            *name = repo + up->plen + 1;
            return up;
        }
    }
    *name = repo;
    return any;
}

int proxy_writable(struct proxy *p, const char *repo)
{
    const char *name;
    struct proxy_up *up = find(p, repo, &name);

    if (!up || !up->plen)
        return REG_OK;
    reg_detail_set("%s/ mirrors %s: push there, or outside %s/", up->prefix, upstream_url(up->u),
                   up->prefix);
    return REG_E_MIRRORED;
}

/* Someone suspended until a flight or a task has news. */
struct waiter {
    struct waiter *next;
    struct svc_wait *w;
    uint64_t until; /* wake once this many bytes are readable (or at the end) */
};

/* Under p->lock: wake the waiters on list that have what they wait for
 * (have bytes are readable), or all of them. */
static void wake_list(struct proxy *p, struct waiter **list, uint64_t have, int all)
{
    struct waiter **pp = list, *x;

    while ((x = *pp) != NULL) {
        if (all || have >= x->until) {
            *pp = x->next;
            x->w->wake(x->w->arg);
            free(x);
        } else {
            pp = &x->next;
        }
    }
    pthread_cond_broadcast(&p->cond);
}

/* Under p->lock: wait on list until until bytes are readable, or the end.
 * With w: suspend w's caller and return REG_E_PENDING; without: block
 * (REG_OK once there is news: the caller looks again). */
static int wait_on(struct proxy *p, struct waiter **list, struct svc_wait *w, uint64_t until)
{
    struct waiter *x;

    if (!w) {
        pthread_cond_wait(&p->cond, &p->lock);
        return REG_OK;
    }
    x = malloc(sizeof(*x));
    if (!x)
        return REG_E_NOMEM;
    x->w = w;
    x->until = until;
    x->next = *list;
    *list = x;
    w->suspend(w->arg);
    return REG_E_PENDING;
}

/* Under p->lock: forget w's waiter on list, if it has one. */
static void unwait(struct waiter **list, struct svc_wait *w)
{
    struct waiter **pp = list, *x;

    while ((x = *pp) != NULL) {
        if (x->w == w) {
            *pp = x->next;
            free(x);
        } else {
            pp = &x->next;
        }
    }
}

/* Start fn(arg) on a detached thread of its own. */
static int spawn(void *(*fn)(void *), void *arg)
{
    pthread_attr_t attr;
    pthread_t t;
    int rc;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&t, &attr, fn, arg);
    pthread_attr_destroy(&attr);
    return rc ? REG_E_NOMEM : REG_OK;
}

/* ---- manifests ------------------------------------------------------------------ */

/* What the cache holds for a reference, read in one transaction. */
struct local {
    int have_tag;                /* the tag is in repo */
    int cached;                  /* ... and the cache fetched it */
    int64_t when;                /* then, or when last revalidated */
    char digest[DIGEST_STR_MAX]; /* what the tag (or ref) names */
    int have_manifest;           /* repo holds that manifest */
    int repo_cached;             /* the cache brought repo (not pushes here) */
};

static int look(struct proxy *p, const char *repo, const struct svc_ref *ref, struct local *l)
{
    struct index_txn *t = NULL;
    struct index_manifest m;
    int rc = index_begin(p->ix, INDEX_READ, &t);

    memset(l, 0, sizeof(*l));
    if (rc)
        return rc;
    if (ref->tag) {
        rc = index_get_tag(t, repo, ref->tag, l->digest, sizeof(l->digest));
        l->have_tag = rc == REG_OK;
        if (rc == REG_E_MANIFEST_UNKNOWN)
            rc = REG_OK;
        if (!rc && l->have_tag) {
            rc = index_get_cached(t, repo, ref->tag, &l->when);
            l->cached = rc == REG_OK;
            if (rc == REG_E_NOT_FOUND)
                rc = REG_OK;
        }
    } else {
        snprintf(l->digest, sizeof(l->digest), "%s", ref->d.str);
    }
    if (!rc && l->digest[0]) {
        rc = index_get_manifest(t, repo, l->digest, &m);
        l->have_manifest = rc == REG_OK;
        if (rc == REG_E_MANIFEST_UNKNOWN)
            rc = REG_OK;
    }
    if (!rc) {
        int64_t when;

        rc = index_get_cached(t, repo, NULL, &when);
        l->repo_cached = rc == REG_OK;
        if (rc == REG_E_NOT_FOUND)
            rc = REG_OK;
    }
    index_abort(t);
    return rc;
}

/* The stored manifest digest of repo, as svc_manifest_get reads it. */
static int read_local(struct proxy *p, const char *repo, const char *digest, int with_data,
                      struct svc_manifest *out)
{
    struct svc_ref ref;

    memset(&ref, 0, sizeof(ref));
    snprintf(ref.d.str, sizeof(ref.d.str), "%s", digest);
    return svc_manifest_read(p->ix, repo, &ref, with_data, out);
}

/* Store a fetched manifest in repo (tagged tag when not NULL), with every
 * reference it makes counted whether or not the blob is here yet. */
/* In t: *pushed is set when repo's tag exists and the cache did not bring
 * it: a client pushed it (perhaps while we asked the upstream), and a push
 * acknowledged with a 201 is never overwritten by what the upstream says. */
static int tag_pushed(struct index_txn *t, const char *repo, const char *tag, int *pushed)
{
    char digest[DIGEST_STR_MAX];
    int64_t when;
    int rc = index_get_tag(t, repo, tag, digest, sizeof(digest));

    *pushed = 0;
    if (rc == REG_E_MANIFEST_UNKNOWN)
        return REG_OK;
    if (rc)
        return rc;
    rc = index_get_cached(t, repo, tag, &when);
    if (rc == REG_E_NOT_FOUND) {
        *pushed = 1;
        return REG_OK;
    }
    return rc;
}

static int store(struct proxy *p, const char *repo, const char *tag,
                 const struct upstream_manifest *um, struct svc_manifest *out)
{
    struct manifest_info *m = malloc(sizeof(*m));
    const char **refs = malloc(2 * MANIFEST_REFS_MAX * sizeof(*refs));
    struct index_txn *t = NULL;
    struct index_manifest rec;
    json_error_t jerr;
    json_t *root = NULL;
    char *desc;
    size_t nrefs = 0, i;
    int64_t now = (int64_t)time(NULL);
    int rc = m && refs ? REG_OK : REG_E_NOMEM, created, pushed = 0;

    if (rc)
        goto out;
    root = json_loadb(um->data, um->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        reg_detail_set("the upstream's manifest is not JSON: %s", jerr.text);
        rc = REG_E_UPSTREAM;
        goto out;
    }
    rc = manifest_parse(root, um->media_type[0] ? um->media_type : NULL, m);
    if (rc) {
        rc = REG_E_UPSTREAM; /* reg_detail says why */
        goto out;
    }
    for (i = 0; i < m->nblobs; i++)
        if (!m->skip[i])
            refs[nrefs++] = m->blobs[i];
    for (i = 0; i < m->nchildren; i++)
        refs[nrefs++] = m->children[i];
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.media_type, sizeof(rec.media_type), "%s", m->media_type);
    if (m->artifact_type)
        snprintf(rec.artifact_type, sizeof(rec.artifact_type), "%s", m->artifact_type);
    if (m->subject)
        snprintf(rec.subject, sizeof(rec.subject), "%s", m->subject);
    rec.size = um->len;
    rec.created = now;
    rc = index_begin(p->ix, INDEX_WRITE, &t);
    if (rc)
        goto out;
    rc = index_put_manifest(t, repo, um->digest, &rec, refs, nrefs, um->data, um->len, &created);
    if (!rc && tag)
        rc = tag_pushed(t, repo, tag, &pushed);
    if (pushed) /* the manifest is stored untagged; the client gets what it asked for */
        log_info("proxy: %s:%s was pushed meanwhile: keeping the push", repo, tag);
    if (!rc && tag && !pushed)
        rc = index_put_tag(t, repo, tag, um->digest);
    if (!rc && tag && !pushed)
        rc = index_set_cached(t, repo, tag, now);
    if (!rc)
        rc = index_set_cached(t, repo, NULL, now);
    if (!rc && m->subject) {
        desc = manifest_descriptor(m, um->digest, um->len);
        rc = desc ? index_put_referrer(t, repo, m->subject, um->digest, desc, strlen(desc))
                  : REG_E_NOMEM;
        free(desc);
    }
    rc = index_end(t, rc);
    if (!rc) {
        snprintf(out->digest, sizeof(out->digest), "%s", um->digest);
        snprintf(out->media_type, sizeof(out->media_type), "%s", m->media_type);
        if (m->subject)
            snprintf(out->subject, sizeof(out->subject), "%s", m->subject);
        out->len = um->len;
    }
out:
    json_decref(root);
    free(refs);
    free(m);
    return rc;
}

/* Fetch ref (a tag or a digest) from up, store it, and answer with it. */
static int fetch_manifest(struct proxy *p, struct proxy_up *up, const char *repo, const char *name,
                          const char *ref, const char *tag, int with_data, struct svc_manifest *out)
{
    struct upstream_manifest um;
    int rc = upstream_manifest(up->u, name, ref, 0, p->max_manifest, &um);

    if (!rc)
        rc = store(p, repo, tag, &um, out);
    if (!rc && with_data) {
        out->data = um.data;
        um.data = NULL;
    }
    free(um.data);
    if (!rc)
        log_info("proxy %s: miss: %s:%s fetched (%s)", up->name, repo, ref, out->digest);
    else
        log_warn("proxy %s: %s:%s: %s%s%s", up->name, repo, ref, reg_strerror(rc),
                 reg_detail() ? ": " : "", reg_detail() ? reg_detail() : "");
    return rc;
}

/* The tag still names digest, as the cache brought it: its TTL starts
 * again. A tag pushed or moved meanwhile is left as it is. */
static int mark_revalidated(struct proxy *p, const char *repo, const char *tag, const char *digest)
{
    struct index_txn *t = NULL;
    char now_names[DIGEST_STR_MAX];
    int64_t when;
    int rc = index_begin(p->ix, INDEX_WRITE, &t);

    if (rc)
        return rc;
    rc = index_get_tag(t, repo, tag, now_names, sizeof(now_names));
    if (!rc && strcmp(now_names, digest) == 0 && index_get_cached(t, repo, tag, &when) == REG_OK)
        rc = index_set_cached(t, repo, tag, (int64_t)time(NULL));
    else if (rc == REG_E_MANIFEST_UNKNOWN || !rc)
        rc = REG_OK; /* deleted, pushed or moved meanwhile: nothing to mark */
    return index_end(t, rc);
}

/* What a pull of a manifest the cache must ask its upstream about comes
 * to: the digest to serve (stored by then), and whether it is a stale tag.
 * Waits on the upstream: runs on a task's thread (or a blocking caller's). */
static int resolve(struct proxy *p, struct proxy_up *up, const char *repo, const char *name,
                   const char *tag, const char *ref, const struct local *l, char *digest,
                   int *stale)
{
    struct upstream_manifest head;
    struct svc_manifest m;
    int rc;

    *stale = 0;
    memset(&m, 0, sizeof(m));
    if (!tag || !l->have_tag || !l->have_manifest) { /* never fetched (or gone) */
        rc = fetch_manifest(p, up, repo, name, ref, tag, 0, &m);
        count(p, PROXY_MANIFEST, fetched(rc));
        snprintf(digest, DIGEST_STR_MAX, "%s", m.digest);
        return rc;
    }
    /* Stale: has the tag moved? */
    rc = upstream_manifest(up->u, name, tag, 1, p->max_manifest, &head);
    if (!rc && !strcmp(head.digest, l->digest)) {
        log_info("proxy %s: revalidated: %s:%s is still %s", up->name, repo, tag, l->digest);
        count(p, PROXY_MANIFEST, PROXY_REVALIDATED);
        snprintf(digest, DIGEST_STR_MAX, "%s", l->digest);
        return mark_revalidated(p, repo, tag, l->digest);
    }
    if (!rc) {
        log_info("proxy %s: revalidated: %s:%s moved to %s", up->name, repo, tag, head.digest);
        rc = fetch_manifest(p, up, repo, name, head.digest, tag, 0, &m);
        if (!rc) {
            count(p, PROXY_MANIFEST, PROXY_REVALIDATED);
            snprintf(digest, DIGEST_STR_MAX, "%s", m.digest);
            return rc;
        }
    }
    /* The upstream cannot say: what we have is better than nothing. */
    log_warn("proxy %s: upstream error, serving stale %s:%s: %s%s%s", up->name, repo, tag,
             reg_strerror(rc), reg_detail() ? ": " : "", reg_detail() ? reg_detail() : "");
    count(p, PROXY_MANIFEST, PROXY_STALE);
    snprintf(digest, DIGEST_STR_MAX, "%s", l->digest);
    *stale = 1;
    return REG_OK;
}

/* A manifest the cache asks its upstream about, on a thread of its own:
 * one per (repository, reference) at a time, whoever asks meanwhile waits
 * for its answer. */
struct mtask {
    struct mtask *next;
    struct proxy *p;
    struct proxy_up *up;
    char repo[SVC_NAME_MAX + 1];
    char name[SVC_NAME_MAX + 1]; /* repo's name upstream */
    char ref[DIGEST_STR_MAX];    /* the tag or digest asked for */
    int by_tag;
    struct local l; /* what the cache held when it was asked */
    int done, rc, stale;
    char digest[DIGEST_STR_MAX]; /* its answer: serve this one */
    char detail[256];            /* reg_detail of a failure */
    unsigned refs, served;
    struct waiter *waiters;
};

static void mtask_put(struct mtask *t)
{
    if (--t->refs == 0)
        free(t);
}

/* svc_wait.release of a wait on a task. */
static void mtask_release(struct svc_wait *w)
{
    struct mtask *t = w->held;
    struct proxy *p = t->p;

    pthread_mutex_lock(&p->lock);
    unwait(&t->waiters, w);
    w->held = NULL;
    mtask_put(t);
    pthread_mutex_unlock(&p->lock);
}

static void *mtask_run(void *arg)
{
    struct mtask *t = arg;
    struct proxy *p = t->p;
    struct mtask **pp;
    int rc;

    reg_detail_clear();
    rc = resolve(p, t->up, t->repo, t->name, t->by_tag ? t->ref : NULL, t->ref, &t->l, t->digest,
                 &t->stale);
    pthread_mutex_lock(&p->lock);
    if (rc && reg_detail())
        snprintf(t->detail, sizeof(t->detail), "%s", reg_detail());
    for (pp = &p->mtasks; *pp != t; pp = &(*pp)->next)
        ;
    *pp = t->next;
    t->done = 1;
    t->rc = rc;
    p->ntasks--;
    wake_list(p, &t->waiters, 0, 1);
    mtask_put(t);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Under p->lock: the task asking about ref in repo, started if need be. */
static int mtask_get(struct proxy *p, struct proxy_up *up, const char *repo, const char *name,
                     const struct svc_ref *ref, const struct local *l, struct mtask **out)
{
    const char *r = ref->tag ? ref->tag : ref->d.str;
    struct mtask *t;
    int rc;

    for (t = p->mtasks; t; t = t->next)
        if (!strcmp(t->repo, repo) && !strcmp(t->ref, r) && t->by_tag == !!ref->tag) {
            t->refs++;
            *out = t;
            return REG_OK;
        }
    if (atomic_load(&p->stopping)) {
        reg_detail_set("the registry is stopping");
        return REG_E_UPSTREAM;
    }
    if (p->ntasks >= FLIGHTS_MAX) {
        reg_detail_set("%d manifests are being asked of upstreams already", FLIGHTS_MAX);
        return REG_E_TOOMANY;
    }
    t = calloc(1, sizeof(*t));
    if (!t)
        return REG_E_NOMEM;
    t->p = p;
    t->up = up;
    snprintf(t->repo, sizeof(t->repo), "%s", repo);
    snprintf(t->name, sizeof(t->name), "%s", name);
    snprintf(t->ref, sizeof(t->ref), "%s", r);
    t->by_tag = !!ref->tag;
    t->l = *l;
    t->refs = 2; /* the task's thread, and the caller's */
    rc = spawn(mtask_run, t);
    if (rc) {
        free(t);
        return rc;
    }
    t->next = p->mtasks;
    p->mtasks = t;
    p->ntasks++;
    *out = t;
    return REG_OK;
}

/* Under p->lock, holding a reference on t (handed to w or dropped here):
 * take t's answer, or wait for it. */
static int on_task(struct proxy *p, struct mtask *t, struct svc_wait *w, char *digest, int *stale)
{
    int rc;

    while (!t->done) {
        rc = wait_on(p, &t->waiters, w, UINT64_MAX);
        if (rc == REG_E_PENDING) {
            w->held = t;
            w->release = mtask_release;
            return rc;
        }
        if (rc) {
            mtask_put(t);
            return rc;
        }
    }
    rc = t->rc;
    if (rc && t->detail[0])
        reg_detail_set("%s", t->detail);
    if (!rc && t->served++)
        count(p, PROXY_MANIFEST, t->stale ? PROXY_STALE : PROXY_HIT); /* one answer for both */
    snprintf(digest, DIGEST_STR_MAX, "%s", t->digest);
    *stale = t->stale;
    mtask_put(t);
    return rc;
}

/* manifest_get's answer when what it found was gone when it read it
 * (evicted or deleted meanwhile). Not a reg_err. */
#define GONE (-2)

/* What read_local says, with a manifest found a moment ago and missing
 * now told apart. */
static int reread(struct proxy *p, const char *repo, const char *digest, int with_data,
                  struct svc_manifest *out)
{
    int rc = read_local(p, repo, digest, with_data, out);

    return rc == REG_E_MANIFEST_UNKNOWN ? GONE : rc;
}

/* One pass of proxy_manifest_get: what is at hand, else the upstream's
 * answer (through a task), read from the store. */
static int manifest_get(struct proxy *p, struct proxy_up *up, const char *repo, const char *name,
                        const struct svc_ref *ref, int with_data, struct svc_wait *w,
                        struct svc_manifest *out)
{
    struct mtask *t = w ? w->held : NULL;
    char digest[DIGEST_STR_MAX];
    struct local l;
    int rc, stale = 0;

    if (t) { /* woken: the task has answered */
        w->held = NULL;
        pthread_mutex_lock(&p->lock);
        rc = on_task(p, t, w, digest, &stale);
        pthread_mutex_unlock(&p->lock);
        goto answer;
    }
    rc = look(p, repo, ref, &l);
    if (rc)
        return rc;
    if (!ref->tag && l.have_manifest) { /* by digest: the bytes never change */
        if (l.repo_cached)
            count(p, PROXY_MANIFEST, PROXY_HIT);
        return reread(p, repo, l.digest, with_data, out);
    }
    if (ref->tag && l.have_tag && !l.cached) /* pushed here, not fetched: ours */
        return l.have_manifest ? reread(p, repo, l.digest, with_data, out) : REG_E_MANIFEST_UNKNOWN;
    if (ref->tag && l.have_tag && l.have_manifest && (int64_t)time(NULL) - l.when < up->tag_ttl) {
        log_debug("proxy %s: hit: %s:%s", up->name, repo, ref->tag);
        count(p, PROXY_MANIFEST, PROXY_HIT);
        return reread(p, repo, l.digest, with_data, out);
    }
    /* The upstream must be asked. */
    if (!w) {
        rc = resolve(p, up, repo, name, ref->tag, ref->tag ? ref->tag : ref->d.str, &l, digest,
                     &stale);
    } else {
        pthread_mutex_lock(&p->lock);
        rc = mtask_get(p, up, repo, name, ref, &l, &t);
        if (!rc)
            rc = on_task(p, t, w, digest, &stale);
        pthread_mutex_unlock(&p->lock);
    }
answer:
    if (rc)
        return rc;
    rc = reread(p, repo, digest, with_data, out);
    out->stale = stale;
    if (rc && stale)
        count(p, PROXY_MANIFEST, PROXY_ERROR);
    return rc;
}

int proxy_manifest_get(struct proxy *p, const char *repo, const struct svc_ref *ref, int with_data,
                       struct svc_wait *w, struct svc_manifest *out)
{
    const char *name;
    struct proxy_up *up = find(p, repo, &name);
    int rc;

    if (!up)
        return REG_E_NOT_FOUND;
    reg_detail_clear();
    memset(out, 0, sizeof(*out));
    rc = manifest_get(p, up, repo, name, ref, with_data, w, out);
    /* Evicted (or deleted) between the look and the read: once more, which
     * asks the upstream. */
    if (rc == GONE)
        rc = manifest_get(p, up, repo, name, ref, with_data, w, out);
    return rc == GONE ? REG_E_MANIFEST_UNKNOWN : rc;
}

/* ---- blobs ------------------------------------------------------------------------ */

/* Link d into repo when it is stored and a manifest of repo uses it: a
 * layer another repository's pull already brought. REG_E_BLOB_UNKNOWN when
 * it cannot be; *used then says whether a manifest of repo uses it. */
static int link_if_used(struct proxy *p, const char *repo, const struct digest *d, int *used)
{
    struct index_txn *t = NULL;
    struct index_blob b;
    char user[DIGEST_STR_MAX];
    int rc = index_begin(p->ix, INDEX_WRITE, &t);

    *used = 0;
    if (rc)
        return rc;
    rc = index_repo_has_blob(t, repo, d->str);
    if (rc == REG_OK) {
        index_abort(t);
        return REG_OK;
    }
    *used = index_in_use(t, repo, d->str, user, sizeof(user)) == REG_E_IN_USE;
    rc = index_get_blob(t, d->str, &b);
    if (!rc)
        rc = *used ? index_link_blob(t, repo, d->str) : REG_E_BLOB_UNKNOWN;
    return index_end(t, rc);
}

/* Readers are woken after this many new bytes (or at the end), not on
 * every chunk the upstream sends. */
#define WAKE_BATCH ((uint64_t)64 << 10)

static void flight_put(struct proxy *p, struct flight *f)
{
    (void)p;
    if (--f->refs)
        return;
    if (f->spool >= 0)
        close(f->spool);
    free(f);
}

/* Bytes of f a reader may have: the last byte waits until the whole blob
 * matched its digest, so no client ever receives a complete wrong blob.
 * Nothing streams before the upstream has said the size. */
static uint64_t readable(const struct flight *f)
{
    if (f->done)
        return f->rc ? 0 : f->have;
    if (!f->sized || f->size == UINT64_MAX || f->have == 0)
        return 0;
    return f->have < f->size ? f->have : f->size - 1;
}

/* Under p->lock: wake f's waiters that have what they wait for (all of
 * them once f is done or has said its size). */
static void wake(struct proxy *p, struct flight *f, int all)
{
    wake_list(p, &f->waiters, readable(f), all);
}

/* The fetcher's state while bytes arrive. */
struct fetch {
    struct flight *f;
    struct upload *u;
};

static void fetch_size(void *arg, uint64_t size)
{
    struct flight *f = ((struct fetch *)arg)->f;

    pthread_mutex_lock(&f->p->lock);
    f->size = size;
    f->sized = 1;
    wake(f->p, f, 1);
    pthread_mutex_unlock(&f->p->lock);
}

static int pwrite_all(int fd, const char *data, size_t len, uint64_t off)
{
    ssize_t n;

    while (len) {
        n = pwrite(fd, data, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return reg_errno(errno);
        data += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return REG_OK;
}

/* Into the upload session (hashed, and verified at the end) and the spool
 * the readers read. Only the fetcher writes have: no lock to read it. */
static int fetch_data(void *arg, const void *data, size_t len)
{
    struct fetch *x = arg;
    struct flight *f = x->f;
    int rc = atomic_load(&f->p->stopping) ? REG_E_UPSTREAM : upload_write(x->u, data, len);

    if (!rc)
        rc = pwrite_all(f->spool, data, len, f->have);
    if (rc)
        return rc;
    pthread_mutex_lock(&f->p->lock);
    f->have += len;
    wake(f->p, f, 0);
    pthread_mutex_unlock(&f->p->lock);
    return REG_OK;
}

/* Fetch f's blob from its upstream into an upload session of f->repo; the
 * session verifies the digest before the blob becomes visible. */
static int fetch_blob(struct flight *f)
{
    struct proxy *p = f->p;
    const struct proxy_up *up = f->up;
    struct fetch x = {f, NULL};
    uint64_t size = 0;
    int rc = upload_create(p->us, f->repo, 0, &x.u);

    if (rc)
        return rc;
    rc = upstream_blob(up->u, f->name, f->digest, fetch_size, fetch_data, &x);
    if (!rc && atomic_load(&p->stopping))
        rc = REG_E_UPSTREAM;
    if (!rc) {
        rc = upload_finish(x.u, &f->d, &size);
        if (rc == REG_E_DIGEST_INVALID) {
            reg_detail_set("upstream %s sent bytes that are not %s", upstream_url(up->u),
                           f->digest);
            rc = REG_E_UPSTREAM;
        }
    } else {
        upload_cancel(x.u);
    }
    upload_release(x.u);
    if (!rc)
        log_info("proxy %s: miss: %s@%s fetched (%llu bytes)", up->name, f->repo, f->digest,
                 (unsigned long long)size);
    else
        log_warn("proxy %s: %s@%s: %s%s%s", up->name, f->repo, f->digest, reg_strerror(rc),
                 reg_detail() ? ": " : "", reg_detail() ? reg_detail() : "");
    return rc;
}

/* The fetcher's thread: fetch, then land the flight and wake everyone. */
static void *fetcher(void *arg)
{
    struct flight *f = arg;
    struct proxy *p = f->p;
    struct flight **pp;
    int rc;

    reg_detail_clear();
    rc = fetch_blob(f);
    count(p, PROXY_BLOB, fetched(rc));
    pthread_mutex_lock(&p->lock);
    if (rc && reg_detail())
        snprintf(f->detail, sizeof(f->detail), "%s", reg_detail());
    for (pp = &p->flights; *pp != f; pp = &(*pp)->next)
        ;
    *pp = f->next;
    f->done = 1;
    f->rc = rc;
    p->nflights--;
    wake(p, f, 1);
    flight_put(p, f);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Under p->lock: start fetching d from up's name into repo. */
static int launch(struct proxy *p, const struct proxy_up *up, const char *repo, const char *name,
                  const struct digest *d, struct flight **out)
{
    char path[4096];
    struct flight *f;
    int rc;

    if (atomic_load(&p->stopping)) {
        reg_detail_set("the registry is stopping");
        return REG_E_UPSTREAM;
    }
    if (p->nflights >= FLIGHTS_MAX) {
        reg_detail_set("%d blobs are being fetched from upstreams already", FLIGHTS_MAX);
        return REG_E_TOOMANY;
    }
    f = calloc(1, sizeof(*f));
    if (!f)
        return REG_E_NOMEM;
    /* Unlinked at once: a crash leaves nothing of it behind. */
    snprintf(path, sizeof(path), "%s/proxy-spool.XXXXXX", blobstore_index_dir(p->bs));
    f->spool = mkostemp(path, O_CLOEXEC);
    if (f->spool < 0) {
        rc = reg_errno(errno);
        free(f);
        return rc;
    }
    unlink(path);
    f->p = p;
    f->d = *d;
    snprintf(f->digest, sizeof(f->digest), "%s", d->str);
    snprintf(f->name, sizeof(f->name), "%s", name);
    snprintf(f->repo, sizeof(f->repo), "%s", repo);
    f->up = up;
    f->size = UINT64_MAX;
    f->refs = 2; /* the fetcher, and the caller's until it lets go */
    rc = spawn(fetcher, f);
    if (rc) {
        close(f->spool);
        free(f);
        return rc;
    }
    f->next = p->flights;
    p->flights = f;
    p->nflights++;
    *out = f;
    return REG_OK;
}

static struct flight *flight_find(struct proxy *p, const char *digest)
{
    struct flight *f;

    for (f = p->flights; f && strcmp(f->digest, digest) != 0; f = f->next)
        ;
    return f;
}

/* Whether f fetches what repo's upstream would give it: the same upstream
 * repository. */
static int ours(const struct flight *f, const struct proxy_up *up, const char *name)
{
    return f->up == up && strcmp(f->name, name) == 0;
}

struct proxy_tap {
    struct proxy *p;
    struct flight *f;       /* while it reads the spool; NULL once it reads the store */
    struct blob_reader *br; /* the store's reader, once the blob has landed */
    uint64_t pos, end;      /* the next byte to hand out, and the end of the range */
    struct svc_wait *w;     /* the last one waited with */
};

/* Under p->lock: a tap over all of f, taking the caller's reference. */
static int tap_new(struct proxy *p, struct flight *f, struct proxy_tap **out)
{
    struct proxy_tap *t = calloc(1, sizeof(*t));

    if (!t) {
        flight_put(p, f);
        return REG_E_NOMEM;
    }
    t->p = p;
    t->f = f;
    t->end = f->size;
    *out = t;
    return REG_OK;
}

/* svc_wait.release of a wait on a flight. */
static void flight_release(struct svc_wait *w)
{
    struct flight *f = w->held;
    struct proxy *p = f->p;

    pthread_mutex_lock(&p->lock);
    unwait(&f->waiters, w);
    w->held = NULL;
    flight_put(p, f);
    pthread_mutex_unlock(&p->lock);
}

/* on_flight's answer when f has landed (or someone else's fetch ended):
 * look for the blob again. Not a reg_err. */
#define LOOK_AGAIN (-1)

/* Under p->lock, holding a reference on f (handed to w, to the tap, or
 * dropped here): answer from f, or wait on it. A request joins f when f
 * fetches from its own upstream repository, or when a manifest of its
 * repository uses the blob (used): link_if_used would link it once it has
 * landed, so nothing reaches a repository it could not reach anyway. */
static int on_flight(struct proxy *p, struct flight *f, const struct proxy_up *up, const char *name,
                     int used, struct svc_wait *w, struct proxy_tap **tap)
{
    int join = ours(f, up, name) || used, rc;

    for (;;) {
        if (f->done) {
            rc = f->rc && ours(f, up, name) ? f->rc : REG_OK;
            if (rc && f->detail[0])
                reg_detail_set("%s", f->detail);
            if (!f->rc && join && f->served++)
                count(p, PROXY_BLOB, PROXY_HIT); /* one upstream GET served us both */
            flight_put(p, f);
            return rc ? rc : LOOK_AGAIN;
        }
        /* An empty blob is never streamed: nothing could be held back. */
        if (join && f->sized && f->size != UINT64_MAX && f->size > 0) {
            if (f->served++)
                count(p, PROXY_BLOB, PROXY_HIT);
            return tap_new(p, f, tap);
        }
        /* Not sized yet; or sized only at its end; or not joined: at the end. */
        rc = wait_on(p, &f->waiters, w, join && !f->sized ? 0 : UINT64_MAX);
        if (rc == REG_E_PENDING) {
            w->held = f;
            w->release = flight_release;
            return rc;
        }
        if (rc) {
            flight_put(p, f);
            return rc;
        }
    }
}

int proxy_blob_open(struct proxy *p, const char *repo, const struct digest *d, struct svc_wait *w,
                    struct proxy_tap **tap)
{
    const char *name;
    struct proxy_up *up = find(p, repo, &name);
    struct flight *f = w ? w->held : NULL;
    int rc, used = 0, waited = f != NULL;

    *tap = NULL;
    if (!up)
        return REG_E_NOT_FOUND;
    reg_detail_clear();
    for (;;) {
        if (f) { /* woken: what became of the flight waited on */
            w->held = NULL;
            pthread_mutex_lock(&p->lock);
            rc = on_flight(p, f, up, name, used, w, tap);
            pthread_mutex_unlock(&p->lock);
            if (rc != LOOK_AGAIN)
                return rc;
        }
        rc = link_if_used(p, repo, d, &used);
        if (rc == REG_OK && !waited)
            count(p, PROXY_BLOB, PROXY_HIT); /* another repository's pull brought it */
        if (rc != REG_E_BLOB_UNKNOWN)
            return rc;
        pthread_mutex_lock(&p->lock);
        f = flight_find(p, d->str);
        if (f) {
            f->refs++;
            rc = REG_OK;
        } else {
            rc = launch(p, up, repo, name, d, &f);
        }
        if (!rc)
            rc = on_flight(p, f, up, name, used, w, tap);
        pthread_mutex_unlock(&p->lock);
        if (rc != LOOK_AGAIN)
            return rc;
        f = NULL;
        waited = 1;
    }
}

uint64_t proxy_tap_size(const struct proxy_tap *t)
{
    return t->end;
}

int proxy_tap_range(struct proxy_tap *t, uint64_t off, uint64_t len)
{
    if (off > t->end || (len && len > t->end - off))
        return REG_E_RANGE;
    t->pos = off;
    if (len)
        t->end = off + len;
    return REG_OK;
}

/* Under p->lock: f has landed in the store: read the rest from there, and
 * let go of f (its spool goes with the last reference). */
static int tap_to_store(struct proxy_tap *t)
{
    struct flight *f = t->f;
    int rc = blobstore_reader_open(t->p->bs, &f->d, t->pos, t->end - t->pos, &t->br);

    if (t->w)
        unwait(&f->waiters, t->w);
    flight_put(t->p, f);
    t->f = NULL;
    return rc;
}

int proxy_tap_read(struct proxy_tap *t, void *buf, size_t max, size_t *n, struct svc_wait *w)
{
    struct proxy *p = t->p;
    struct flight *f = t->f;
    uint64_t r = 0;
    ssize_t got;
    int rc = REG_OK;

    *n = 0;
    if (t->pos >= t->end)
        return REG_OK;
    if (t->br)
        goto store;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        if (f->done && !f->rc) {
            rc = tap_to_store(t);
            break;
        }
        r = readable(f);
        if (r > t->pos)
            break;
        if (f->done) {
            rc = f->rc;
            break;
        }
        t->w = w;
        rc =
            wait_on(p, &f->waiters, w, t->pos + WAKE_BATCH < t->end ? t->pos + WAKE_BATCH : t->end);
        if (rc)
            break;
    }
    pthread_mutex_unlock(&p->lock);
    if (rc)
        return rc;
    if (t->br)
        goto store;
    if (r > t->end)
        r = t->end;
    if (max > r - t->pos)
        max = (size_t)(r - t->pos);
    /* The bytes below r are in the spool, and the spool lives as long as
     * this tap's reference. */
    do
        got = pread(f->spool, buf, max, (off_t)t->pos);
    while (got < 0 && errno == EINTR);
    if (got <= 0)
        return got < 0 ? reg_errno(errno) : REG_E_IO;
    t->pos += (uint64_t)got;
    *n = (size_t)got;
    return REG_OK;
store:
    rc = blob_reader_read(t->br, buf, max, n);
    if (!rc)
        t->pos += *n;
    return rc;
}

void proxy_tap_close(struct proxy_tap *t)
{
    if (!t)
        return;
    if (t->f) {
        pthread_mutex_lock(&t->p->lock);
        if (t->w)
            unwait(&t->f->waiters, t->w);
        flight_put(t->p, t->f);
        pthread_mutex_unlock(&t->p->lock);
    }
    blob_reader_close(t->br);
    free(t);
}

void proxy_stop(struct proxy *p)
{
    if (!p)
        return;
    atomic_store(&p->stopping, 1);
    pthread_mutex_lock(&p->lock);
    while (p->nflights || p->ntasks)
        pthread_cond_wait(&p->cond, &p->lock);
    pthread_mutex_unlock(&p->lock);
}

void proxy_blob_served(struct proxy *p, const char *repo)
{
    const char *name;
    struct proxy_up *up = find(p, repo, &name);
    struct index_txn *t = NULL;
    int64_t when;
    int cached;

    if (!up)
        return;
    if (up->plen) { /* nothing is pushed under a prefix: the cache brought it */
        count(p, PROXY_BLOB, PROXY_HIT);
        return;
    }
    if (index_begin(p->ix, INDEX_READ, &t))
        return;
    cached = index_get_cached(t, repo, NULL, &when) == REG_OK;
    index_abort(t);
    if (cached)
        count(p, PROXY_BLOB, PROXY_HIT);
}
