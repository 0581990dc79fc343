#include "index.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lmdb.h>

#include "../common/err.h"
#include "../common/log.h"

enum {
    DB_BLOB,
    DB_REPO_BLOB,
    DB_BLOB_REPO,
    DB_REPO,
    DB_UPLOAD,
    DB_MANIFEST,
    DB_MANIFEST_DATA,
    DB_TAG,
    DB_REFERRER,
    DB__COUNT
};

static const char *const db_names[DB__COUNT] = {
    "blob",     "repo_blob",     "blob_repo", "repo",     "upload",
    "manifest", "manifest_data", "tag",       "referrer",
};

struct index {
    MDB_env *env;
    MDB_dbi dbi[DB__COUNT];
};

struct index_txn {
    struct index *ix;
    MDB_txn *txn;
};

/* Keys longer than this are refused; LMDB's own limit is 511 bytes. */
#define KEY_MAX 511

struct key {
    size_t len;
    char buf[KEY_MAX];
};

/* Build a key from two parts joined by '\0' (b may be NULL). */
static int key_make(struct key *k, const char *a, const char *b)
{
    size_t al = strlen(a), bl = b ? strlen(b) : 0;
    size_t len = al + (b ? 1 + bl : 0);

    if (len == 0 || len > KEY_MAX)
        return REG_E_INTERNAL;
    memcpy(k->buf, a, al);
    if (b) {
        k->buf[al] = '\0';
        memcpy(k->buf + al + 1, b, bl);
    }
    k->len = len;
    return REG_OK;
}

static int map_mdb(int rc, int notfound)
{
    if (rc == 0)
        return REG_OK;
    if (rc == MDB_NOTFOUND)
        return notfound;
    if (rc == ENOMEM)
        return REG_E_NOMEM;
    log_error("lmdb: %s", mdb_strerror(rc));
    return REG_E_INDEX;
}

/* Tag keys (repo \0 tag) sort by repo bytes, then by tag case-insensitively
 * as the distribution spec orders tag lists, then by bytes so that "A" and
 * "a" stay two keys. LMDB needs the same function on every open. */
static int tag_cmp(const MDB_val *a, const MDB_val *b)
{
    const unsigned char *pa = a->mv_data, *pb = b->mv_data;
    size_t la = a->mv_size, lb = b->mv_size, i, n = la < lb ? la : lb;
    size_t ra, rb;
    int c;

    for (ra = 0; ra < la && pa[ra]; ra++)
        ;
    for (rb = 0; rb < lb && pb[rb]; rb++)
        ;
    c = memcmp(pa, pb, ra < rb ? ra : rb);
    if (c || ra != rb)
        return c ? c : (ra < rb ? -1 : 1);
    for (i = ra; i < n; i++) {
        int ca = tolower(pa[i]), cb = tolower(pb[i]);

        if (ca != cb)
            return ca - cb;
    }
    if (la != lb)
        return la < lb ? -1 : 1;
    c = memcmp(pa, pb, la);
    return c;
}

int index_open(const char *dir, size_t map_size, struct index **out)
{
    struct index *ix = calloc(1, sizeof(*ix));
    MDB_txn *txn = NULL;
    int rc = REG_E_NOMEM, i;

    if (!ix)
        goto out;
    rc = map_mdb(mdb_env_create(&ix->env), REG_E_INDEX);
    if (rc)
        goto out;
    mdb_env_set_maxdbs(ix->env, DB__COUNT);
    mdb_env_set_mapsize(ix->env, map_size);
    mdb_env_set_maxreaders(ix->env, 1024);
    /* NOTLS: a read txn is tied to the request, not the thread. */
    rc = map_mdb(mdb_env_open(ix->env, dir, MDB_NOTLS, 0600), REG_E_INDEX);
    if (rc)
        goto out;
    rc = map_mdb(mdb_txn_begin(ix->env, NULL, 0, &txn), REG_E_INDEX);
    if (rc)
        goto out;
    for (i = 0; i < DB__COUNT; i++) {
        rc = map_mdb(mdb_dbi_open(txn, db_names[i], MDB_CREATE, &ix->dbi[i]), REG_E_INDEX);
        if (!rc && i == DB_TAG)
            rc = map_mdb(mdb_set_compare(txn, ix->dbi[i], tag_cmp), REG_E_INDEX);
        if (rc)
            goto out;
    }
    rc = map_mdb(mdb_txn_commit(txn), REG_E_INDEX);
    txn = NULL;
out:
    if (txn)
        mdb_txn_abort(txn);
    if (rc && ix) {
        if (ix->env)
            mdb_env_close(ix->env);
        free(ix);
        ix = NULL;
    }
    *out = ix;
    return rc;
}

void index_close(struct index *ix)
{
    if (!ix)
        return;
    mdb_env_close(ix->env);
    free(ix);
}

int index_begin(struct index *ix, int writable, struct index_txn **out)
{
    struct index_txn *t = malloc(sizeof(*t));
    int rc;

    *out = NULL;
    if (!t)
        return REG_E_NOMEM;
    t->ix = ix;
    rc = map_mdb(mdb_txn_begin(ix->env, NULL, writable ? 0 : MDB_RDONLY, &t->txn), REG_E_INDEX);
    if (rc) {
        free(t);
        return rc;
    }
    *out = t;
    return REG_OK;
}

int index_commit(struct index_txn *t)
{
    int rc = map_mdb(mdb_txn_commit(t->txn), REG_E_INDEX);

    free(t);
    return rc;
}

void index_abort(struct index_txn *t)
{
    if (!t)
        return;
    mdb_txn_abort(t->txn);
    free(t);
}

static int key_get(struct index_txn *t, int db, const struct key *k, MDB_val *v, int notfound)
{
    MDB_val mk = {k->len, (void *)k->buf};

    return map_mdb(mdb_get(t->txn, t->ix->dbi[db], &mk, v), notfound);
}

static int key_put(struct index_txn *t, int db, const struct key *k, const void *v, size_t vlen)
{
    MDB_val mk = {k->len, (void *)k->buf};
    MDB_val mv = {vlen, (void *)v};

    return map_mdb(mdb_put(t->txn, t->ix->dbi[db], &mk, &mv, 0), REG_E_INDEX);
}

/* Deleting what is absent is not an error. */
static int key_del(struct index_txn *t, int db, const struct key *k)
{
    MDB_val mk = {k->len, (void *)k->buf};

    return map_mdb(mdb_del(t->txn, t->ix->dbi[db], &mk, NULL), REG_OK);
}

/* The same on the key a \0 b (b may be NULL). */
static int kv_get(struct index_txn *t, int db, const char *a, const char *b, MDB_val *v,
                  int notfound)
{
    struct key k;
    int rc = key_make(&k, a, b);

    return rc ? rc : key_get(t, db, &k, v, notfound);
}

static int kv_put(struct index_txn *t, int db, const char *a, const char *b, const void *v,
                  size_t vlen)
{
    struct key k;
    int rc = key_make(&k, a, b);

    return rc ? rc : key_put(t, db, &k, v, vlen);
}

static int kv_del(struct index_txn *t, int db, const char *a, const char *b)
{
    struct key k;
    int rc = key_make(&k, a, b);

    return rc ? rc : key_del(t, db, &k);
}

int index_get_blob(struct index_txn *t, const char *digest, struct index_blob *out)
{
    MDB_val v;
    int rc = kv_get(t, DB_BLOB, digest, NULL, &v, REG_E_BLOB_UNKNOWN);

    if (rc)
        return rc;
    if (v.mv_size != sizeof(*out))
        return REG_E_INDEX;
    memcpy(out, v.mv_data, sizeof(*out));
    return REG_OK;
}

int index_add_blob(struct index_txn *t, const char *digest, uint64_t size)
{
    struct index_blob b;
    int rc = index_get_blob(t, digest, &b);

    if (rc != REG_E_BLOB_UNKNOWN)
        return rc;
    memset(&b, 0, sizeof(b));
    b.size = size;
    b.created = (int64_t)time(NULL);
    return kv_put(t, DB_BLOB, digest, NULL, &b, sizeof(b));
}

int index_add_repo(struct index_txn *t, const char *repo)
{
    int64_t now = (int64_t)time(NULL);
    int rc = index_repo_exists(t, repo);

    if (rc != REG_E_NAME_UNKNOWN)
        return rc;
    return kv_put(t, DB_REPO, repo, NULL, &now, sizeof(now));
}

int index_repo_exists(struct index_txn *t, const char *repo)
{
    MDB_val v;

    return kv_get(t, DB_REPO, repo, NULL, &v, REG_E_NAME_UNKNOWN);
}

int index_link_blob(struct index_txn *t, const char *repo, const char *digest)
{
    int rc = kv_put(t, DB_REPO_BLOB, repo, digest, "", 0);

    if (!rc)
        rc = kv_put(t, DB_BLOB_REPO, digest, repo, "", 0);
    return rc ? rc : index_add_repo(t, repo);
}

int index_unlink_blob(struct index_txn *t, const char *repo, const char *digest)
{
    int rc = kv_del(t, DB_REPO_BLOB, repo, digest);

    return rc ? rc : kv_del(t, DB_BLOB_REPO, digest, repo);
}

int index_repo_has_blob(struct index_txn *t, const char *repo, const char *digest)
{
    MDB_val v;

    return kv_get(t, DB_REPO_BLOB, repo, digest, &v, REG_E_BLOB_UNKNOWN);
}

/* Upload records: fixed header, then the hash state, then the repo name. */
struct upload_hdr {
    uint64_t offset;
    int64_t updated;
    uint32_t algo;
    uint32_t state_len;
};

int index_put_upload(struct index_txn *t, const char *uuid, const struct index_upload *u)
{
    unsigned char buf[sizeof(struct upload_hdr) + INDEX_HASH_STATE_MAX + sizeof(u->repo)];
    struct upload_hdr h = {u->offset, u->updated, u->algo, u->state_len};
    size_t rlen = strnlen(u->repo, sizeof(u->repo)), n = 0;

    if (u->state_len > INDEX_HASH_STATE_MAX || rlen == sizeof(u->repo))
        return REG_E_INTERNAL;
    memcpy(buf, &h, sizeof(h));
    n += sizeof(h);
    memcpy(buf + n, u->state, u->state_len);
    n += u->state_len;
    memcpy(buf + n, u->repo, rlen);
    n += rlen;
    return kv_put(t, DB_UPLOAD, uuid, NULL, buf, n);
}

int index_get_upload(struct index_txn *t, const char *uuid, struct index_upload *out)
{
    struct upload_hdr h;
    MDB_val v;
    size_t rlen;
    int rc = kv_get(t, DB_UPLOAD, uuid, NULL, &v, REG_E_UPLOAD_UNKNOWN);

    if (rc)
        return rc;
    if (v.mv_size < sizeof(h))
        return REG_E_INDEX;
    memcpy(&h, v.mv_data, sizeof(h));
    if (h.state_len > INDEX_HASH_STATE_MAX || v.mv_size < sizeof(h) + h.state_len)
        return REG_E_INDEX;
    rlen = v.mv_size - sizeof(h) - h.state_len;
    if (rlen >= sizeof(out->repo))
        return REG_E_INDEX;
    memset(out, 0, sizeof(*out));
    out->offset = h.offset;
    out->updated = h.updated;
    out->algo = h.algo;
    out->state_len = h.state_len;
    memcpy(out->state, (char *)v.mv_data + sizeof(h), h.state_len);
    memcpy(out->repo, (char *)v.mv_data + sizeof(h) + h.state_len, rlen);
    return REG_OK;
}

int index_del_upload(struct index_txn *t, const char *uuid)
{
    return kv_del(t, DB_UPLOAD, uuid, NULL);
}

/* ---- manifests, tags, referrers ---------------------------------------- */

static int key_make3(struct key *k, const char *a, const char *b, const char *c)
{
    size_t cl = strlen(c);
    int rc = key_make(k, a, b);

    if (rc)
        return rc;
    if (k->len + 1 + cl > KEY_MAX)
        return REG_E_INTERNAL;
    k->buf[k->len] = '\0';
    memcpy(k->buf + k->len + 1, c, cl);
    k->len += 1 + cl;
    return REG_OK;
}

/* Visit keys that start with prefix (plen bytes), beginning after the key
 * prefix+after when after is given. fn returns non-zero to stop. */
typedef int (*scan_fn)(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v);

static int scan(struct index_txn *t, int db, const char *prefix, size_t plen, const char *after,
                scan_fn fn, void *arg)
{
    MDB_cursor *cur = NULL;
    struct key start;
    MDB_val k, v;
    int rc, op = MDB_SET_RANGE, stop = 0;
    size_t al = after ? strlen(after) : 0;

    if (plen + al > KEY_MAX)
        return REG_OK; /* no stored key is that long: nothing to list */
    memcpy(start.buf, prefix, plen);
    memcpy(start.buf + plen, after ? after : "", al);
    start.len = plen + al;
    rc = map_mdb(mdb_cursor_open(t->txn, t->ix->dbi[db], &cur), REG_E_INDEX);
    if (rc)
        return rc;
    k.mv_size = start.len;
    k.mv_data = start.buf;
    if (start.len == 0)
        op = MDB_FIRST;
    for (;;) {
        int mrc = mdb_cursor_get(cur, &k, &v, op);

        op = MDB_NEXT;
        if (mrc == MDB_NOTFOUND)
            break;
        rc = map_mdb(mrc, REG_E_INDEX);
        if (rc)
            break;
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        if (after && k.mv_size == start.len && memcmp(k.mv_data, start.buf, start.len) == 0)
            continue; /* "after" is exclusive */
        stop = fn(arg, cur, &k, &v);
        if (stop < 0) {
            rc = REG_E_INDEX;
            break;
        }
        if (stop)
            break;
    }
    mdb_cursor_close(cur);
    return rc;
}

struct manifest_hdr {
    uint64_t size;
    int64_t created;
    uint16_t mt_len, at_len, subj_len, pad;
    uint32_t nrefs;
};

static int blob_ref(struct index_txn *t, const char *digest, int delta)
{
    struct index_blob b;
    int rc = index_get_blob(t, digest, &b);

    if (rc == REG_E_BLOB_UNKNOWN)
        return REG_OK; /* a manifest digest (index child) or a foreign layer */
    if (rc)
        return rc;
    if (delta > 0)
        b.refcount++;
    else if (b.refcount > 0)
        b.refcount--;
    return kv_put(t, DB_BLOB, digest, NULL, &b, sizeof(b));
}

/* Manifest bytes are shared by the repositories that hold the manifest:
 * digest -> bytes, and digest \0 "#refs" -> how many repositories. */
static int data_ref(struct index_txn *t, const char *digest, int delta, const void *data,
                    size_t len)
{
    MDB_val v;
    uint64_t count = 0;
    int rc = kv_get(t, DB_MANIFEST_DATA, digest, "#refs", &v, REG_E_MANIFEST_UNKNOWN);

    if (rc == REG_OK && v.mv_size == sizeof(count))
        memcpy(&count, v.mv_data, sizeof(count));
    else if (rc != REG_E_MANIFEST_UNKNOWN)
        return rc ? rc : REG_E_INDEX;
    if (delta < 0 && count <= 1) {
        rc = kv_del(t, DB_MANIFEST_DATA, digest, "#refs");
        return rc ? rc : kv_del(t, DB_MANIFEST_DATA, digest, NULL);
    }
    count = delta < 0 ? count - 1 : count + 1;
    rc = kv_put(t, DB_MANIFEST_DATA, digest, "#refs", &count, sizeof(count));
    if (!rc && count == 1)
        rc = kv_put(t, DB_MANIFEST_DATA, digest, NULL, data, len);
    return rc;
}

int index_put_manifest(struct index_txn *t, const char *repo, const char *digest,
                       const struct index_manifest *m, const char *const *refs, size_t nrefs,
                       const void *data, size_t len, int *created)
{
    struct manifest_hdr h;
    struct index_manifest old;
    size_t vlen, i, off;
    char *buf = NULL;
    int rc;

    *created = 0;
    rc = index_get_manifest(t, repo, digest, &old);
    if (rc == REG_OK)
        return index_add_repo(t, repo); /* same bytes, same digest: nothing new */
    if (rc != REG_E_MANIFEST_UNKNOWN)
        return rc;
    memset(&h, 0, sizeof(h));
    h.size = m->size;
    h.created = m->created;
    h.mt_len = (uint16_t)strnlen(m->media_type, sizeof(m->media_type));
    h.at_len = (uint16_t)strnlen(m->artifact_type, sizeof(m->artifact_type));
    h.subj_len = (uint16_t)strnlen(m->subject, sizeof(m->subject));
    h.nrefs = (uint32_t)nrefs;
    vlen = sizeof(h) + h.mt_len + h.at_len + h.subj_len;
    for (i = 0; i < nrefs; i++)
        vlen += strlen(refs[i]) + 1;
    buf = malloc(vlen);
    if (!buf)
        return REG_E_NOMEM;
    memcpy(buf, &h, sizeof(h));
    off = sizeof(h);
    memcpy(buf + off, m->media_type, h.mt_len);
    off += h.mt_len;
    memcpy(buf + off, m->artifact_type, h.at_len);
    off += h.at_len;
    memcpy(buf + off, m->subject, h.subj_len);
    off += h.subj_len;
    for (i = 0; i < nrefs; i++) {
        size_t l = strlen(refs[i]) + 1;

        memcpy(buf + off, refs[i], l);
        off += l;
    }
    rc = kv_put(t, DB_MANIFEST, repo, digest, buf, vlen);
    free(buf);
    for (i = 0; !rc && i < nrefs; i++)
        rc = blob_ref(t, refs[i], +1);
    if (!rc)
        rc = data_ref(t, digest, +1, data, len);
    if (!rc)
        rc = index_add_repo(t, repo);
    if (!rc)
        *created = 1;
    return rc;
}

/* Parse a manifest record; refs (may be NULL) gets a pointer into v. */
static int parse_manifest(const MDB_val *v, struct index_manifest *out, const char **refs,
                          size_t *refs_len, uint32_t *nrefs)
{
    struct manifest_hdr h;
    const char *p = v->mv_data;
    size_t need;

    if (v->mv_size < sizeof(h))
        return REG_E_INDEX;
    memcpy(&h, p, sizeof(h));
    need = sizeof(h) + h.mt_len + h.at_len + h.subj_len;
    if (v->mv_size < need || h.mt_len >= sizeof(out->media_type) ||
        h.at_len >= sizeof(out->artifact_type) || h.subj_len >= sizeof(out->subject))
        return REG_E_INDEX;
    memset(out, 0, sizeof(*out));
    out->size = h.size;
    out->created = h.created;
    p += sizeof(h);
    memcpy(out->media_type, p, h.mt_len);
    p += h.mt_len;
    memcpy(out->artifact_type, p, h.at_len);
    p += h.at_len;
    memcpy(out->subject, p, h.subj_len);
    p += h.subj_len;
    if (refs) {
        *refs = p;
        *refs_len = v->mv_size - need;
        *nrefs = h.nrefs;
    }
    return REG_OK;
}

int index_get_manifest(struct index_txn *t, const char *repo, const char *digest,
                       struct index_manifest *out)
{
    MDB_val v;
    int rc = kv_get(t, DB_MANIFEST, repo, digest, &v, REG_E_MANIFEST_UNKNOWN);

    return rc ? rc : parse_manifest(&v, out, NULL, NULL, NULL);
}

int index_get_manifest_data(struct index_txn *t, const char *digest, const void **data, size_t *len)
{
    MDB_val v;
    int rc = kv_get(t, DB_MANIFEST_DATA, digest, NULL, &v, REG_E_MANIFEST_UNKNOWN);

    if (rc)
        return rc;
    *data = v.mv_data;
    *len = v.mv_size;
    return REG_OK;
}

struct untag_ctx {
    const char *digest;
    size_t dlen;
};

static int untag_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct untag_ctx *c = arg;

    (void)k;
    if (v->mv_size == c->dlen && memcmp(v->mv_data, c->digest, c->dlen) == 0)
        return mdb_cursor_del(cur, 0) ? -1 : 0;
    return 0;
}

int index_delete_manifest(struct index_txn *t, const char *repo, const char *digest)
{
    struct index_manifest m;
    struct untag_ctx uc = {digest, strlen(digest)};
    struct key k;
    MDB_val v;
    const char *refs;
    size_t refs_len, off = 0;
    uint32_t nrefs, i;
    char *copy = NULL, prefix[KEY_MAX];
    size_t plen = strlen(repo) + 1;
    int rc = kv_get(t, DB_MANIFEST, repo, digest, &v, REG_E_MANIFEST_UNKNOWN);

    if (rc)
        return rc;
    rc = parse_manifest(&v, &m, &refs, &refs_len, &nrefs);
    if (rc)
        return rc;
    /* The record's memory is LMDB's and goes stale with the first write. */
    copy = malloc(refs_len + 1);
    if (!copy)
        return REG_E_NOMEM;
    memcpy(copy, refs, refs_len);
    copy[refs_len] = '\0';
    rc = kv_del(t, DB_MANIFEST, repo, digest);
    for (i = 0; !rc && i < nrefs && off < refs_len; i++) {
        rc = blob_ref(t, copy + off, -1);
        off += strlen(copy + off) + 1;
    }
    free(copy);
    if (!rc)
        rc = data_ref(t, digest, -1, NULL, 0);
    if (!rc && m.subject[0]) {
        rc = key_make3(&k, repo, m.subject, digest);
        if (!rc)
            rc = key_del(t, DB_REFERRER, &k);
    }
    if (!rc && plen <= KEY_MAX) {
        memcpy(prefix, repo, plen); /* includes the '\0' separator */
        rc = scan(t, DB_TAG, prefix, plen, NULL, untag_one, &uc);
    }
    return rc;
}

int index_put_tag(struct index_txn *t, const char *repo, const char *tag, const char *digest)
{
    return kv_put(t, DB_TAG, repo, tag, digest, strlen(digest));
}

int index_get_tag(struct index_txn *t, const char *repo, const char *tag, char *out, size_t size)
{
    MDB_val v;
    int rc = kv_get(t, DB_TAG, repo, tag, &v, REG_E_MANIFEST_UNKNOWN);

    if (rc)
        return rc;
    if (v.mv_size >= size)
        return REG_E_INDEX;
    memcpy(out, v.mv_data, v.mv_size);
    out[v.mv_size] = '\0';
    return REG_OK;
}

int index_del_tag(struct index_txn *t, const char *repo, const char *tag)
{
    MDB_val v;
    int rc = kv_get(t, DB_TAG, repo, tag, &v, REG_E_MANIFEST_UNKNOWN);

    return rc ? rc : kv_del(t, DB_TAG, repo, tag);
}

int index_put_referrer(struct index_txn *t, const char *repo, const char *subject,
                       const char *digest, const char *desc, size_t len)
{
    struct key k;
    int rc = key_make3(&k, repo, subject, digest);

    return rc ? rc : key_put(t, DB_REFERRER, &k, desc, len);
}

struct list_ctx {
    size_t plen; /* prefix bytes to strip from each key */
    size_t n, seen;
    int more;
    index_name_cb name_cb;
    index_value_cb value_cb;
    void *arg;
};

static int list_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct list_ctx *c = arg;
    int rc;

    (void)cur;
    if (c->value_cb)
        return c->value_cb(c->arg, v->mv_data, v->mv_size);
    if (c->seen == c->n) {
        c->more = 1;
        return 1;
    }
    c->seen++;
    rc = c->name_cb(c->arg, (const char *)k->mv_data + c->plen, k->mv_size - c->plen);
    if (rc == INDEX_SKIP) {
        c->seen--;
        rc = 0;
    }
    return rc;
}

static int list_names(struct index_txn *t, int db, const char *prefix, size_t plen,
                      const char *last, size_t n, index_name_cb cb, void *arg, int *more)
{
    struct list_ctx c = {plen, n, 0, 0, cb, NULL, arg};
    int rc = scan(t, db, prefix, plen, last, list_one, &c);

    *more = c.more;
    return rc;
}

int index_list_tags(struct index_txn *t, const char *repo, const char *last, size_t n,
                    index_name_cb cb, void *arg, int *more)
{
    char prefix[KEY_MAX];
    size_t plen = strlen(repo) + 1;

    if (plen > KEY_MAX)
        return REG_E_INTERNAL;
    memcpy(prefix, repo, plen);
    return list_names(t, DB_TAG, prefix, plen, last, n, cb, arg, more);
}

int index_list_repos(struct index_txn *t, const char *last, size_t n, index_name_cb cb, void *arg,
                     int *more)
{
    return list_names(t, DB_REPO, "", 0, last, n, cb, arg, more);
}

int index_list_referrers(struct index_txn *t, const char *repo, const char *subject,
                         index_value_cb cb, void *arg)
{
    struct list_ctx c = {0, 0, 0, 0, NULL, cb, arg};
    struct key k;
    int rc = key_make3(&k, repo, subject, "");

    if (rc)
        return rc;
    return scan(t, DB_REFERRER, k.buf, k.len, NULL, list_one, &c);
}

int index_blob_repos(struct index_txn *t, const char *digest, index_name_cb cb, void *arg)
{
    char prefix[KEY_MAX];
    size_t plen = strlen(digest) + 1;
    int more;

    if (plen > KEY_MAX)
        return REG_E_INTERNAL;
    memcpy(prefix, digest, plen);
    return list_names(t, DB_BLOB_REPO, prefix, plen, NULL, SIZE_MAX, cb, arg, &more);
}
