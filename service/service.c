/* The registry's operations (service.h): each one a metadata transaction
 * over the index, with the blob store where bytes are involved. */
#include "service.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/err.h"
#include "../storage/blobstore.h"
#include "../storage/index.h"
#include "evict.h"
#include "manifest.h"
#include "proxy.h"
#include "shared.h"

_Static_assert(SVC_NAME_MAX == INDEX_NAME_MAX, "one limit on repository names");

struct service {
    struct blobstore *bs;
    struct index *ix;
    struct uploads *us;
    struct proxy *proxy;  /* NULL: no pull-through cache */
    struct evict *evict;  /* NULL: no cached repository is ever evicted */
    atomic_int read_only; /* the cache serves what it holds, and fetches nothing */
    atomic_int delete_enabled;
};

int svc_new(struct blobstore *bs, struct index *ix, struct uploads *us, int delete_enabled,
            struct service **out)
{
    struct service *s = calloc(1, sizeof(*s));

    *out = NULL;
    if (!s)
        return REG_E_NOMEM;
    s->bs = bs;
    s->ix = ix;
    s->us = us;
    atomic_init(&s->delete_enabled, delete_enabled);
    *out = s;
    return REG_OK;
}

void svc_free(struct service *s)
{
    free(s);
}

struct uploads *svc_uploads(struct service *s)
{
    return s->us;
}

void svc_set_delete(struct service *s, int enabled)
{
    atomic_store(&s->delete_enabled, enabled);
}

int svc_delete_enabled(struct service *s)
{
    return atomic_load(&s->delete_enabled);
}

void svc_set_read_only(struct service *s, int on)
{
    atomic_store(&s->read_only, on);
}

/* The pull-through cache, when there is one and it may write. */
static struct proxy *cache(struct service *s)
{
    return s->proxy && !atomic_load(&s->read_only) ? s->proxy : NULL;
}

void svc_set_proxy(struct service *s, struct proxy *p)
{
    s->proxy = p;
}

void svc_set_evict(struct service *s, struct evict *e)
{
    s->evict = e;
}

int svc_proxy_stats(struct service *s, struct proxy_stats *out)
{
    if (!s->proxy)
        return REG_E_NOT_FOUND;
    proxy_stats(s->proxy, out);
    return REG_OK;
}

int svc_writable(struct service *s, const char *repo)
{
    reg_detail_clear();
    return s->proxy ? proxy_writable(s->proxy, repo) : REG_OK;
}

int svc_check(struct service *s)
{
    struct index_txn *t = NULL;
    int rc = index_begin(s->ix, INDEX_READ, &t);

    if (!rc)
        index_abort(t);
    return rc;
}

int svc_stats(struct service *s, struct svc_stats *out)
{
    struct index_stats st;
    int rc = index_stats(s->ix, &st);

    memset(out, 0, sizeof(*out));
    if (rc)
        return rc;
    out->blobs = st.blobs;
    out->blob_bytes = st.blob_bytes;
    out->repos = st.repos;
    out->uploads = st.uploads;
    out->index_used_bytes = st.used_bytes;
    out->index_limit = st.limit_bytes;
    out->index_map_bytes = st.map_bytes;
    return REG_OK;
}

/* ---- manifests --------------------------------------------------------------- */

/* Every reference of m must be in repo: its blobs (but non-distributable
 * layers) and, for an index, its manifests. refs gets them, *n their count. */
static int check_refs(struct index_txn *t, const char *repo, const struct manifest_info *m,
                      const char **refs, size_t *n)
{
    struct index_manifest child;
    size_t i;
    int rc;

    *n = 0;
    for (i = 0; i < m->nblobs; i++) {
        if (m->skip[i])
            continue;
        rc = index_repo_has_blob(t, repo, m->blobs[i]);
        if (rc == REG_E_BLOB_UNKNOWN) {
            reg_detail_set("blob %s is not in repository %s", m->blobs[i], repo);
            return REG_E_MANIFEST_BLOB_UNKNOWN;
        }
        if (rc)
            return rc;
        refs[(*n)++] = m->blobs[i];
    }
    for (i = 0; i < m->nchildren; i++) {
        rc = index_get_manifest(t, repo, m->children[i], &child);
        if (rc == REG_E_MANIFEST_UNKNOWN) {
            reg_detail_set("manifest %s is not in repository %s", m->children[i], repo);
            return REG_E_MANIFEST_BLOB_UNKNOWN;
        }
        if (rc)
            return rc;
        refs[(*n)++] = m->children[i];
    }
    return REG_OK;
}

/* In one write transaction: check every reference, then store. */
static int store(struct service *s, const char *repo, const struct manifest_info *m,
                 const char *digest, const char *tag, const void *body, size_t len)
{
    struct index_txn *t = NULL;
    struct index_manifest rec;
    const char **refs = malloc(2 * MANIFEST_REFS_MAX * sizeof(*refs));
    char *desc = NULL;
    size_t nrefs = 0;
    int rc, created;

    if (!refs)
        return REG_E_NOMEM;
    rc = index_begin(s->ix, INDEX_WRITE, &t);
    if (rc)
        goto out;
    rc = check_refs(t, repo, m, refs, &nrefs);
    if (rc)
        goto end;
    memset(&rec, 0, sizeof(rec));
    snprintf(rec.media_type, sizeof(rec.media_type), "%s", m->media_type);
    if (m->artifact_type)
        snprintf(rec.artifact_type, sizeof(rec.artifact_type), "%s", m->artifact_type);
    if (m->subject)
        snprintf(rec.subject, sizeof(rec.subject), "%s", m->subject);
    rec.size = len;
    rec.created = (int64_t)time(NULL);
    rc = index_put_manifest(t, repo, digest, &rec, refs, nrefs, body, len, &created);
    if (!rc && tag)
        rc = index_put_tag(t, repo, tag, digest);
    if (!rc && tag) /* pushed: the cache no longer revalidates it */
        rc = index_del_cached(t, repo, tag);
    if (!rc) /* and never evicts the repository */
        rc = index_set_pushed(t, repo);
    if (!rc && m->subject) {
        desc = manifest_descriptor(m, digest, len);
        rc = desc ? index_put_referrer(t, repo, m->subject, digest, desc, strlen(desc))
                  : REG_E_NOMEM;
        free(desc);
    }
end:
    rc = index_end(t, rc);
out:
    free(refs);
    return rc;
}

int svc_manifest_put(struct service *s, const char *repo, const struct svc_ref *ref,
                     const char *content_type, const void *body, size_t len,
                     struct svc_manifest *out)
{
    struct manifest_info *m = NULL;
    struct digest d;
    json_error_t jerr;
    json_t *root;
    int rc;

    reg_detail_clear();
    memset(out, 0, sizeof(*out));
    root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        reg_detail_set("invalid JSON at line %d: %s", jerr.line, jerr.text);
        return REG_E_MANIFEST_INVALID;
    }
    m = malloc(sizeof(*m));
    rc = m ? manifest_parse(root, content_type, m) : REG_E_NOMEM;
    if (rc)
        goto out;
    digest_of(ref->tag ? DIGEST_SHA256 : ref->d.algo, body, len, &d);
    if (!ref->tag && strcmp(d.str, ref->d.str) != 0) {
        reg_detail_set("the body's digest is %s", d.str);
        rc = REG_E_DIGEST_INVALID;
        goto out;
    }
    rc = store(s, repo, m, d.str, ref->tag, body, len);
    if (rc)
        goto out;
    snprintf(out->digest, sizeof(out->digest), "%s", d.str);
    snprintf(out->media_type, sizeof(out->media_type), "%s", m->media_type);
    if (m->subject)
        snprintf(out->subject, sizeof(out->subject), "%s", m->subject);
    out->len = len;
out:
    free(m);
    json_decref(root);
    return rc;
}

int svc_manifest_read(struct index *ix, const char *repo, const struct svc_ref *ref, int with_data,
                      struct svc_manifest *out)
{
    struct index_txn *t = NULL;
    struct index_manifest m;
    const void *data;
    size_t len;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = index_begin(ix, INDEX_READ, &t);
    if (rc)
        return rc;
    if (ref->tag)
        rc = index_get_tag(t, repo, ref->tag, out->digest, sizeof(out->digest));
    else
        snprintf(out->digest, sizeof(out->digest), "%s", ref->d.str);
    if (!rc)
        rc = index_get_manifest(t, repo, out->digest, &m);
    if (!rc)
        rc = index_get_manifest_data(t, out->digest, &data, &len);
    if (!rc) {
        snprintf(out->media_type, sizeof(out->media_type), "%s", m.media_type);
        snprintf(out->subject, sizeof(out->subject), "%s", m.subject);
        out->len = len;
        /* The bytes are LMDB's until the transaction ends. */
        if (with_data) {
            out->data = malloc(len ? len : 1);
            if (out->data)
                memcpy(out->data, data, len);
            else
                rc = REG_E_NOMEM;
        }
    }
    index_abort(t);
    return rc;
}

int svc_manifest_get(struct service *s, const char *repo, const struct svc_ref *ref, int with_data,
                     struct svc_wait *w, struct svc_manifest *out)
{
    int rc;

    memset(out, 0, sizeof(*out));
    if (cache(s)) {
        rc = proxy_manifest_get(s->proxy, repo, ref, with_data, w, out);
        if (rc == REG_OK)
            evict_used(s->evict, repo);
        if (rc != REG_E_NOT_FOUND)
            return rc;
    }
    return svc_manifest_read(s->ix, repo, ref, with_data, out);
}

/* A delete's transaction: it only frees, so it is never refused for space. */
static int begin_delete(struct service *s, struct index_txn **t)
{
    reg_detail_clear();
    if (!atomic_load(&s->delete_enabled))
        return REG_E_UNSUPPORTED;
    return index_begin(s->ix, INDEX_WRITE_FREEING, t);
}

int svc_manifest_delete(struct service *s, const char *repo, const struct svc_ref *ref)
{
    struct index_txn *t = NULL;
    char user[DIGEST_STR_MAX] = "";
    int rc;

    rc = begin_delete(s, &t);
    if (rc)
        return rc;
    if (ref->tag) {
        rc = index_del_tag(t, repo, ref->tag);
    } else {
        /* A child of an index in this repository stays while the index does. */
        rc = index_in_use(t, repo, ref->d.str, user, sizeof(user));
        if (!rc)
            rc = index_delete_manifest(t, repo, ref->d.str);
    }
    rc = index_end(t, rc);
    if (rc == REG_E_IN_USE)
        reg_detail_set("manifest %s is used by index %s in %s; delete that first", ref->d.str, user,
                       repo);
    return rc;
}

/* ---- blobs -------------------------------------------------------------------- */

/* The size the index records for blob d. */
static int blob_size_of(struct service *s, const struct digest *d, uint64_t *size)
{
    struct index_txn *t = NULL;
    struct index_blob b;
    int rc = index_begin(s->ix, INDEX_READ, &t);

    if (rc)
        return rc;
    rc = index_get_blob(t, d->str, &b);
    index_abort(t);
    *size = rc ? 0 : b.size;
    return rc;
}

void svc_wait_drop(struct service *s, struct svc_wait *w)
{
    (void)s;
    if (w && w->held)
        w->release(w);
}

/* Bytes from the store, or from the cache while it fetches them. */
struct svc_blob_reader {
    struct blob_reader *br;
    struct proxy_tap *tap;
};

int svc_blob_open(struct service *s, const char *repo, const struct digest *d, int can_redirect,
                  struct svc_wait *w, struct svc_blob *out)
{
    struct index_txn *t = NULL;
    struct proxy_tap *tap = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    out->fd = -1;
    rc = index_begin(s->ix, INDEX_READ, &t);
    if (rc)
        return rc;
    /* The link first: in redirect mode open_read signs a URL, and a URL
     * reads the object with no further check (test_s3.c pins the order). */
    rc = index_repo_has_blob(t, repo, d->str);
    index_abort(t);
    if (rc == REG_E_BLOB_UNKNOWN && cache(s)) {
        int prc = proxy_blob_open(s->proxy, repo, d, w, &tap);

        rc = prc == REG_E_NOT_FOUND ? rc : prc;
    } else {
        svc_wait_drop(s, w); /* here now: nothing more to wait for */
        if (rc == REG_OK && cache(s))
            proxy_blob_served(s->proxy, repo);
    }
    if (!rc && cache(s))
        evict_used(s->evict, repo);
    if (!rc && tap) { /* on its way: the bytes stream from the cache's fetch */
        out->rd = calloc(1, sizeof(*out->rd));
        if (!out->rd) {
            proxy_tap_close(tap);
            return REG_E_NOMEM;
        }
        out->rd->tap = tap;
        out->size = proxy_tap_size(tap);
        out->stream = 1;
        return REG_OK;
    }
    if (rc)
        return rc;
    rc = blobstore_open_read(s->bs, d, &out->fd, can_redirect ? &out->url : NULL, &out->size);
    if (rc == REG_E_UNSUPPORTED || (!rc && out->fd < 0)) {
        /* A backend without descriptors (S3): the size is the index's, the
         * bytes come through svc_blob_reader_open, or from out->url. */
        rc = blob_size_of(s, d, &out->size);
        out->stream = !out->url;
        if (rc) {
            free(out->url);
            out->url = NULL;
        }
    }
    return rc;
}

void svc_blob_close(struct svc_blob *b)
{
    if (b->fd >= 0)
        close(b->fd);
    b->fd = -1;
    free(b->url);
    b->url = NULL;
    svc_blob_reader_close(b->rd);
    b->rd = NULL;
}

int svc_blob_reader_open(struct service *s, struct svc_blob *b, const struct digest *d,
                         uint64_t off, uint64_t len, struct svc_blob_reader **out)
{
    struct svc_blob_reader *r = b->rd;
    int rc;

    *out = NULL;
    if (r) { /* the fetch svc_blob_open joined */
        rc = proxy_tap_range(r->tap, off, len);
        if (rc)
            return rc;
        b->rd = NULL;
        *out = r;
        return REG_OK;
    }
    r = calloc(1, sizeof(*r));
    if (!r)
        return REG_E_NOMEM;
    rc = blobstore_reader_open(s->bs, d, off, len, &r->br);
    if (rc) {
        free(r);
        return rc;
    }
    *out = r;
    return REG_OK;
}

int svc_blob_reader_read(struct svc_blob_reader *r, void *buf, size_t max, size_t *n,
                         struct svc_wait *w)
{
    return r->tap ? proxy_tap_read(r->tap, buf, max, n, w) : blob_reader_read(r->br, buf, max, n);
}

void svc_blob_reader_close(struct svc_blob_reader *r)
{
    if (!r)
        return;
    proxy_tap_close(r->tap);
    blob_reader_close(r->br);
    free(r);
}

int svc_blob_delete(struct service *s, const char *repo, const struct digest *d)
{
    struct index_txn *t = NULL;
    char user[DIGEST_STR_MAX] = "";
    int rc;

    rc = begin_delete(s, &t);
    if (rc)
        return rc;
    rc = index_repo_has_blob(t, repo, d->str);
    /* In the same write transaction as a manifest PUT's own check that its
     * blobs are here: no interleaving leaves a manifest without its blob. */
    if (!rc)
        rc = index_in_use(t, repo, d->str, user, sizeof(user));
    if (!rc)
        rc = index_unlink_blob(t, repo, d->str);
    rc = index_end(t, rc);
    if (rc == REG_E_IN_USE)
        reg_detail_set("blob %s is used by manifest %s in %s; delete that first", d->str, user,
                       repo);
    return rc;
}

struct mount_search {
    svc_may_fn may;
    void *arg;
    int found;
};

/* Stop at the first repository holding the blob that the caller may read. */
static int may_read(void *arg, const char *repo, size_t len)
{
    struct mount_search *m = arg;
    char name[SVC_NAME_MAX + 1];

    if (len > SVC_NAME_MAX)
        return 0;
    memcpy(name, repo, len);
    name[len] = '\0';
    m->found = m->may(m->arg, name);
    return m->found;
}

int svc_blob_mount(struct service *s, const char *repo, const struct digest *d, const char *from,
                   svc_may_fn may, void *arg, int *mounted)
{
    struct index_txn *t = NULL;
    struct mount_search ms = {may, arg, 0};
    int rc;

    *mounted = 0;
    rc = index_begin(s->ix, INDEX_WRITE, &t);
    if (rc)
        return rc;
    if (from) {
        rc = index_repo_has_blob(t, from, d->str);
        ms.found = rc == REG_OK;
        if (rc == REG_E_BLOB_UNKNOWN)
            rc = REG_OK;
    } else {
        rc = index_blob_repos(t, d->str, may_read, &ms);
    }
    if (!rc && ms.found)
        rc = index_link_blob(t, repo, d->str);
    if (!rc && !ms.found) {
        index_abort(t);
        return REG_OK;
    }
    rc = index_end(t, rc);
    if (!rc)
        *mounted = 1;
    return rc;
}

/* ---- listings ----------------------------------------------------------------- */

struct collect {
    struct svc_page *page;
    svc_may_fn may; /* catalog: list only what it allows; NULL: all */
    void *arg;
};

static int add_name(void *arg, const char *name, size_t len)
{
    struct collect *c = arg;
    char *last = c->page->last;

    if (len > SVC_NAME_MAX)
        return INDEX_SKIP;
    memcpy(last, name, len);
    last[len] = '\0';
    if (c->may && !c->may(c->arg, last))
        return INDEX_SKIP;
    return json_array_append_new(c->page->names, json_stringn(name, len)) ? -1 : 0;
}

/* Start a page: an empty array. */
static int page_new(struct svc_page *out)
{
    memset(out, 0, sizeof(*out));
    out->names = json_array();
    return out->names ? REG_OK : REG_E_NOMEM;
}

/* End a page: on failure, nothing to free for the caller. */
static int page_end(struct svc_page *out, int rc)
{
    if (rc) {
        json_decref(out->names);
        out->names = NULL;
    }
    if (!out->more)
        out->last[0] = '\0';
    return rc;
}

int svc_tags(struct service *s, const char *repo, const char *last, size_t n, struct svc_page *out)
{
    struct collect c = {out, NULL, NULL};
    struct index_txn *t = NULL;
    int rc = page_new(out);

    if (!rc)
        rc = index_begin(s->ix, INDEX_READ, &t);
    if (rc)
        return page_end(out, rc);
    rc = index_repo_exists(t, repo);
    if (!rc)
        rc = index_list_tags(t, repo, last, n, add_name, &c, &out->more);
    index_abort(t);
    return page_end(out, rc);
}

int svc_catalog(struct service *s, const char *last, size_t n, svc_may_fn may, void *arg,
                struct svc_page *out)
{
    struct collect c = {out, may, arg};
    struct index_txn *t = NULL;
    int rc = page_new(out);

    if (!rc)
        rc = index_begin(s->ix, INDEX_READ, &t);
    if (rc)
        return page_end(out, rc);
    rc = index_list_repos(t, last, n, add_name, &c, &out->more);
    index_abort(t);
    return page_end(out, rc);
}

struct filter {
    json_t *list;
    const char *artifact_type; /* NULL: no filter */
};

static int add_referrer(void *arg, const void *value, size_t len)
{
    struct filter *f = arg;
    json_t *d = json_loadb(value, len, 0, NULL);
    const char *at;

    if (!d)
        return 0; /* never written that way; skip rather than fail the list */
    at = json_string_value(json_object_get(d, "artifactType"));
    if (f->artifact_type && (!at || strcmp(at, f->artifact_type) != 0)) {
        json_decref(d);
        return 0;
    }
    return json_array_append_new(f->list, d) ? -1 : 0;
}

int svc_referrers(struct service *s, const char *repo, const struct digest *subject,
                  const char *artifact_type, json_t **out)
{
    struct filter f = {json_array(), artifact_type};
    struct index_txn *t = NULL;
    int rc = f.list ? REG_OK : REG_E_NOMEM;

    *out = NULL;
    if (!rc)
        rc = index_begin(s->ix, INDEX_READ, &t);
    if (!rc) {
        rc = index_list_referrers(t, repo, subject->str, add_referrer, &f);
        index_abort(t);
    }
    if (rc) {
        json_decref(f.list);
        return rc;
    }
    *out = f.list;
    return REG_OK;
}
