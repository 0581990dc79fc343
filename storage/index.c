#include "index.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lmdb.h>

#include "../common/array.h"
#include "../common/err.h"
#include "../common/log.h"
#include "digest.h"

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
    DB_REPO_REF,
    DB_META,
    DB_PENDING,
    DB_CACHED,
    DB__COUNT
};

static const char *const db_names[DB__COUNT] = {
    "blob", "repo_blob", "blob_repo", "repo", "upload",       "manifest", "manifest_data",
    "tag",  "referrer",  "repo_ref",  "meta", "blob_pending", "cached",
};

/* Disk allocated ahead of the index file, so that deletes and GC still have
 * pages to write when the disk is full; growing writes keep it topped up. */
#define INDEX_SLACK ((uint64_t)8 << 20)
/* Map beyond index_max_size: room for deletes and GC when the index is full. */
#define INDEX_HEADROOM_MIN ((size_t)16 << 20)

/* The schema version in meta "version"; 1 added repo_ref, 2 the running
 * total meta "blob_bytes", 3 blob_pending and cached. */
#define INDEX_SCHEMA 3

struct index {
    MDB_env *env;
    MDB_dbi dbi[DB__COUNT];
    uint64_t limit;       /* index_max_size: growing writes stop here */
    uint64_t psize;       /* LMDB page size */
    pthread_mutex_t grow; /* serialises the disk reservation */
    uint64_t reserved;    /* bytes of the data file allocated on disk */
    int old_schema;       /* opened read-only before an upgrade: see index_current */
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
    if (rc == MDB_MAP_FULL)
        return REG_E_INDEX_FULL;
    if (rc == ENOSPC || rc == EDQUOT)
        return REG_E_NOSPC;
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

static int repo_ref(struct index_txn *t, const char *repo, const char *digest, int delta);
static int rebuild_repo_refs(struct index_txn *t);
static int rebuild_blob_bytes(struct index_txn *t);
static int rebuild_pending(struct index_txn *t);
static int referrer_key(struct key *k, const char *repo, const char *subject, const char *digest);

/* The schema version the index says it has: 0 when it says none. */
static uint32_t stored_version(struct index_txn *t)
{
    uint32_t version = 0;
    MDB_val k = {7, "version"}, v;

    if (mdb_get(t->txn, t->ix->dbi[DB_META], &k, &v) == 0 && v.mv_size == sizeof(version))
        memcpy(&version, v.mv_data, sizeof(version));
    return version;
}

/* Bring an index written by an older version up to INDEX_SCHEMA. */
static int upgrade(struct index_txn *t)
{
    uint32_t version = 0;
    MDB_val k = {7, "version"}, v;
    int rc = map_mdb(mdb_get(t->txn, t->ix->dbi[DB_META], &k, &v), REG_E_NOT_FOUND);

    if (rc == REG_OK && v.mv_size == sizeof(version))
        memcpy(&version, v.mv_data, sizeof(version));
    else if (rc != REG_E_NOT_FOUND)
        return rc ? rc : REG_E_INDEX;
    if (version >= INDEX_SCHEMA)
        return REG_OK;
    rc = version < 1 ? rebuild_repo_refs(t) : REG_OK;
    if (!rc)
        rc = version < 2 ? rebuild_blob_bytes(t) : REG_OK;
    if (!rc)
        rc = rebuild_pending(t); /* schema 3 */
    if (rc)
        return rc;
    version = INDEX_SCHEMA;
    v.mv_size = sizeof(version);
    v.mv_data = &version;
    return map_mdb(mdb_put(t->txn, t->ix->dbi[DB_META], &k, &v, 0), REG_E_INDEX);
}

static int open_env(const char *dir, size_t max_size, int readonly, struct index **out)
{
    struct index *ix = calloc(1, sizeof(*ix));
    struct index_txn t;
    MDB_txn *txn = NULL;
    MDB_stat st;
    size_t headroom = max_size / 8 > INDEX_HEADROOM_MIN ? max_size / 8 : INDEX_HEADROOM_MIN;
    int rc = REG_E_NOMEM, i, fd;
    struct stat fst;

    if (!ix)
        goto out;
    pthread_mutex_init(&ix->grow, NULL);
    ix->limit = max_size;
    rc = map_mdb(mdb_env_create(&ix->env), REG_E_INDEX);
    if (rc)
        goto out;
    mdb_env_set_maxdbs(ix->env, DB__COUNT);
    mdb_env_set_mapsize(ix->env, max_size + headroom);
    mdb_env_set_maxreaders(ix->env, 1024);
    /* NOTLS: a read txn is tied to the request, not the thread. */
    rc = map_mdb(mdb_env_open(ix->env, dir, MDB_NOTLS | (readonly ? MDB_RDONLY : 0), 0600),
                 REG_E_INDEX);
    if (rc)
        goto out;
    rc = map_mdb(mdb_txn_begin(ix->env, NULL, readonly ? MDB_RDONLY : 0, &txn), REG_E_INDEX);
    if (rc)
        goto out;
    for (i = 0; i < DB__COUNT; i++) {
        int mrc = mdb_dbi_open(txn, db_names[i], readonly ? 0 : MDB_CREATE, &ix->dbi[i]);

        /* An index an older version wrote, opened only to read: what it
         * lacks is added by the next serve; copying it (backup) works. */
        if (mrc == MDB_NOTFOUND && readonly &&
            (i == DB_REPO_REF || i == DB_META || i == DB_PENDING || i == DB_CACHED)) {
            ix->old_schema = 1;
            continue;
        }
        rc = map_mdb(mrc, REG_E_INDEX);
        if (!rc && i == DB_TAG)
            rc = map_mdb(mdb_set_compare(txn, ix->dbi[i], tag_cmp), REG_E_INDEX);
        if (rc)
            goto out;
    }
    t.ix = ix;
    t.txn = txn;
    if (readonly && !ix->old_schema && stored_version(&t) < INDEX_SCHEMA)
        ix->old_schema = 1; /* e.g. without the blob_bytes total: serve upgrades it */
    rc = readonly ? REG_OK : upgrade(&t);
    if (rc)
        goto out;
    rc = map_mdb(mdb_txn_commit(txn), REG_E_INDEX);
    txn = NULL;
    if (rc)
        goto out;
    rc = map_mdb(mdb_env_stat(ix->env, &st), REG_E_INDEX);
    ix->psize = st.ms_psize;
    if (!rc && mdb_env_get_fd(ix->env, &fd) == 0 && fstat(fd, &fst) == 0)
        ix->reserved = (uint64_t)fst.st_blocks * 512;
out:
    if (txn)
        mdb_txn_abort(txn);
    if (rc && ix) {
        if (ix->env)
            mdb_env_close(ix->env);
        pthread_mutex_destroy(&ix->grow);
        free(ix);
        ix = NULL;
    }
    *out = ix;
    return rc;
}

int index_open(const char *dir, size_t max_size, struct index **out)
{
    return open_env(dir, max_size, 0, out);
}

int index_open_readonly(const char *dir, struct index **out)
{
    return open_env(dir, (size_t)1 << 30, 1, out);
}

int index_current(const struct index *ix)
{
    return !ix->old_schema;
}

void index_close(struct index *ix)
{
    if (!ix)
        return;
    mdb_env_close(ix->env);
    pthread_mutex_destroy(&ix->grow);
    free(ix);
}

/* Bytes in pages the index has freed and will reuse. The free list's
 * records each begin with their page count (as mdb_stat -f reads them). */
static uint64_t free_bytes(struct index *ix)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint64_t pages = 0;
    size_t n;

    if (mdb_txn_begin(ix->env, NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    if (mdb_cursor_open(txn, 0, &cur) == 0) {
        while (mdb_cursor_get(cur, &k, &v, MDB_NEXT) == 0) {
            if (v.mv_size < sizeof(n))
                continue;
            memcpy(&n, v.mv_data, sizeof(n));
            pages += n;
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    return pages * ix->psize;
}

/* Room for a write that may grow the index: under index_max_size once
 * reusable pages are counted, and disk allocated ahead of the file. Writes
 * that only free (deletes, GC) skip this and use the headroom. */
static int room(struct index *ix)
{
    MDB_envinfo info;
    uint64_t used, want;
    int rc = REG_OK, fd, e;

    if (mdb_env_info(ix->env, &info) != 0)
        return REG_E_INDEX;
    used = ((uint64_t)info.me_last_pgno + 1) * ix->psize;
    if (used > ix->limit && used - free_bytes(ix) > ix->limit)
        return REG_E_INDEX_FULL;
    pthread_mutex_lock(&ix->grow);
    if (used + INDEX_SLACK > ix->reserved && mdb_env_get_fd(ix->env, &fd) == 0) {
        /* Blocks past the end, file size unchanged: LMDB's writes land in
         * them. Never the emulated posix_fallocate, which writes. */
        want = used + 2 * INDEX_SLACK;
        e = fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)want) == 0 ? 0 : errno;
        if (e == 0 || e == EOPNOTSUPP || e == ENOSYS)
            ix->reserved = want; /* without fallocate there is nothing to reserve with */
        else
            rc = reg_errno(e);
    }
    pthread_mutex_unlock(&ix->grow);
    return rc;
}

int index_begin(struct index *ix, int mode, struct index_txn **out)
{
    struct index_txn *t;
    int rc = mode == INDEX_WRITE ? room(ix) : REG_OK;

    *out = NULL;
    if (rc)
        return rc;
    t = malloc(sizeof(*t));
    if (!t)
        return REG_E_NOMEM;
    t->ix = ix;
    rc = map_mdb(mdb_txn_begin(ix->env, NULL, mode == INDEX_READ ? MDB_RDONLY : 0, &t->txn),
                 REG_E_INDEX);
    if (rc) {
        free(t);
        return rc;
    }
    *out = t;
    return REG_OK;
}

int index_end(struct index_txn *t, int rc)
{
    if (rc) {
        index_abort(t);
        return rc;
    }
    return index_commit(t);
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

/* meta "blob_bytes": the sizes of all blob records together, changed in
 * the write transaction that adds or removes a record, so that it is always
 * exactly their sum and reading it costs one lookup. */
static const MDB_val blob_bytes_key = {10, "blob_bytes"};

static int blob_bytes_get(struct index_txn *t, uint64_t *out)
{
    MDB_val k = blob_bytes_key, v;
    int rc = map_mdb(mdb_get(t->txn, t->ix->dbi[DB_META], &k, &v), REG_E_NOT_FOUND);

    *out = 0;
    if (rc == REG_E_NOT_FOUND)
        return REG_OK; /* an empty index, or one opened read-only before its upgrade */
    if (rc)
        return rc;
    if (v.mv_size != sizeof(*out))
        return REG_E_INDEX;
    memcpy(out, v.mv_data, sizeof(*out));
    return REG_OK;
}

/* References to digest from manifests while no blob record exists. */
static int pending_get(struct index_txn *t, const char *digest, uint64_t *out)
{
    MDB_val v;
    int rc = kv_get(t, DB_PENDING, digest, NULL, &v, REG_E_NOT_FOUND);

    *out = 0;
    if (rc == REG_E_NOT_FOUND)
        return REG_OK;
    if (rc)
        return rc;
    if (v.mv_size != sizeof(*out))
        return REG_E_INDEX;
    memcpy(out, v.mv_data, sizeof(*out));
    return REG_OK;
}

static int blob_bytes_put(struct index_txn *t, uint64_t bytes)
{
    MDB_val k = blob_bytes_key, v = {sizeof(bytes), &bytes};

    return map_mdb(mdb_put(t->txn, t->ix->dbi[DB_META], &k, &v, 0), REG_E_INDEX);
}

/* Add (grow) or take away size bytes. */
static int blob_bytes_change(struct index_txn *t, uint64_t size, int grow)
{
    uint64_t bytes;
    int rc = blob_bytes_get(t, &bytes);

    if (rc)
        return rc;
    bytes = grow ? bytes + size : bytes > size ? bytes - size : 0;
    return blob_bytes_put(t, bytes);
}

static int pending_set(struct index_txn *t, const char *digest, uint64_t n)
{
    int rc;

    if (n)
        return kv_put(t, DB_PENDING, digest, NULL, &n, sizeof(n));
    rc = kv_del(t, DB_PENDING, digest, NULL);
    return rc == REG_E_NOT_FOUND ? REG_OK : rc;
}

static int take_pending(struct index_txn *t, const char *digest, uint64_t *out)
{
    int rc = pending_get(t, digest, out);

    return rc || !*out ? rc : pending_set(t, digest, 0);
}

int index_add_blob(struct index_txn *t, const char *digest, uint64_t size)
{
    struct index_blob b;
    int rc = index_get_blob(t, digest, &b);

    if (rc == REG_E_BLOB_UNKNOWN) {
        memset(&b, 0, sizeof(b));
        b.size = size;
        rc = blob_bytes_change(t, size, 1);
        if (!rc)
            rc = take_pending(t, digest, &b.refcount);
        if (rc)
            return rc;
    } else if (rc) {
        return rc;
    }
    /* Pushed again: GC's grace starts over, so a 201 is never followed by
     * GC removing what the client will reference next. */
    b.touched = (int64_t)time(NULL);
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
    struct index_blob b;
    int rc = index_get_blob(t, digest, &b);

    if (rc == REG_OK) { /* a mount: the grace starts over, as for a push */
        b.touched = (int64_t)time(NULL);
        rc = kv_put(t, DB_BLOB, digest, NULL, &b, sizeof(b));
    } else if (rc == REG_E_BLOB_UNKNOWN) {
        rc = REG_OK;
    }
    if (!rc)
        rc = kv_put(t, DB_REPO_BLOB, repo, digest, "", 0);

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

static int parse_upload(const MDB_val *v, struct index_upload *out)
{
    struct upload_hdr h;
    size_t rlen;

    if (v->mv_size < sizeof(h))
        return REG_E_INDEX;
    memcpy(&h, v->mv_data, sizeof(h));
    if (h.state_len > INDEX_HASH_STATE_MAX || v->mv_size < sizeof(h) + h.state_len)
        return REG_E_INDEX;
    rlen = v->mv_size - sizeof(h) - h.state_len;
    if (rlen >= sizeof(out->repo))
        return REG_E_INDEX;
    memset(out, 0, sizeof(*out));
    out->offset = h.offset;
    out->updated = h.updated;
    out->algo = h.algo;
    out->state_len = h.state_len;
    memcpy(out->state, (char *)v->mv_data + sizeof(h), h.state_len);
    memcpy(out->repo, (char *)v->mv_data + sizeof(h) + h.state_len, rlen);
    return REG_OK;
}

int index_get_upload(struct index_txn *t, const char *uuid, struct index_upload *out)
{
    MDB_val v;
    int rc = kv_get(t, DB_UPLOAD, uuid, NULL, &v, REG_E_UPLOAD_UNKNOWN);

    return rc ? rc : parse_upload(&v, out);
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
    uint64_t n;
    int rc = index_get_blob(t, digest, &b);

    if (rc == REG_E_BLOB_UNKNOWN) {
        /* Not stored (yet): an index child, or a layer the cache has not
         * fetched. Counted aside, so that the blob, should it come, starts
         * with every reference it has (index_add_blob). */
        rc = pending_get(t, digest, &n);
        if (rc)
            return rc;
        return pending_set(t, digest, delta > 0 ? n + 1 : n ? n - 1 : 0);
    }
    if (rc)
        return rc;
    if (delta > 0)
        b.refcount++;
    else if (b.refcount > 0)
        b.refcount--;
    return kv_put(t, DB_BLOB, digest, NULL, &b, sizeof(b));
}

/* How many manifests of repo reference digest (a blob or an index child):
 * what blob and manifest DELETEs check, in their own write transaction. */
static int repo_ref(struct index_txn *t, const char *repo, const char *digest, int delta)
{
    uint64_t count = 0;
    MDB_val v;
    int rc = kv_get(t, DB_REPO_REF, repo, digest, &v, REG_E_NOT_FOUND);

    if (rc == REG_OK && v.mv_size == sizeof(count))
        memcpy(&count, v.mv_data, sizeof(count));
    else if (rc != REG_E_NOT_FOUND)
        return rc ? rc : REG_E_INDEX;
    if (delta < 0 && count <= 1)
        return kv_del(t, DB_REPO_REF, repo, digest);
    count = delta < 0 ? count - 1 : count + 1;
    return kv_put(t, DB_REPO_REF, repo, digest, &count, sizeof(count));
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

/* Pushed again: GC's grace for untagged manifests starts over. */
static int touch_manifest(struct index_txn *t, const char *repo, const char *digest)
{
    struct manifest_hdr h;
    MDB_val v;
    char *copy;
    int rc = kv_get(t, DB_MANIFEST, repo, digest, &v, REG_E_MANIFEST_UNKNOWN);

    if (rc)
        return rc;
    if (v.mv_size < sizeof(h))
        return REG_E_INDEX;
    copy = malloc(v.mv_size);
    if (!copy)
        return REG_E_NOMEM;
    memcpy(copy, v.mv_data, v.mv_size);
    memcpy(&h, copy, sizeof(h));
    h.created = (int64_t)time(NULL);
    memcpy(copy, &h, sizeof(h));
    rc = kv_put(t, DB_MANIFEST, repo, digest, copy, v.mv_size);
    free(copy);
    return rc ? rc : index_add_repo(t, repo);
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
    if (rc == REG_OK) /* same bytes, same digest: nothing new but the time */
        return touch_manifest(t, repo, digest);
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
    for (i = 0; !rc && i < nrefs; i++) {
        rc = blob_ref(t, refs[i], +1);
        if (!rc)
            rc = repo_ref(t, repo, refs[i], +1);
    }
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
        if (!rc)
            rc = repo_ref(t, repo, copy + off, -1);
        off += strlen(copy + off) + 1;
    }
    free(copy);
    if (!rc)
        rc = data_ref(t, digest, -1, NULL, 0);
    if (!rc && m.subject[0]) {
        rc = referrer_key(&k, repo, m.subject, digest);
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

/* repo \0 subject \0 digest; when that is longer than LMDB allows (a
 * long name with two sha512 digests), the last part is "#" and the sha256
 * of the digest: listings read the prefix, and the value holds the whole
 * descriptor. */
static int referrer_key(struct key *k, const char *repo, const char *subject, const char *digest)
{
    struct digest h;
    char part[DIGEST_STR_MAX + 2];

    if (strlen(repo) + strlen(subject) + strlen(digest) + 2 <= KEY_MAX)
        return key_make3(k, repo, subject, digest);
    digest_of(DIGEST_SHA256, digest, strlen(digest), &h);
    snprintf(part, sizeof(part), "#%s", digest_hex(&h));
    return key_make3(k, repo, subject, part);
}

int index_put_referrer(struct index_txn *t, const char *repo, const char *subject,
                       const char *digest, const char *desc, size_t len)
{
    struct key k;
    int rc = referrer_key(&k, repo, subject, digest);

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

/* The second parts of db's keys that start with a \0. */
static int list_second(struct index_txn *t, int db, const char *a, index_name_cb cb, void *arg)
{
    char prefix[KEY_MAX];
    size_t plen = strlen(a) + 1;
    int more;

    if (plen > KEY_MAX)
        return REG_E_INTERNAL;
    memcpy(prefix, a, plen);
    return list_names(t, db, prefix, plen, NULL, SIZE_MAX, cb, arg, &more);
}

int index_repo_manifests(struct index_txn *t, const char *repo, index_name_cb cb, void *arg)
{
    return list_second(t, DB_MANIFEST, repo, cb, arg);
}

int index_repo_blobs(struct index_txn *t, const char *repo, index_name_cb cb, void *arg)
{
    return list_second(t, DB_REPO_BLOB, repo, cb, arg);
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

/* ---- whole-index walks: GC, fsck, upgrades ------------------------------ */

/* Split a key a \0 b into two NUL-terminated strings. */
static int split_key(const MDB_val *k, char *a, size_t asize, char *b, size_t bsize)
{
    const char *p = k->mv_data, *sep = memchr(p, '\0', k->mv_size);
    size_t al = sep ? (size_t)(sep - p) : k->mv_size, bl = sep ? k->mv_size - al - 1 : 0;

    if (al >= asize || bl >= bsize)
        return -1;
    memcpy(a, p, al);
    a[al] = '\0';
    memcpy(b, sep ? sep + 1 : "", bl);
    b[bl] = '\0';
    return 0;
}

struct each_ctx {
    void *fn;
    void *arg;
    int rc;
};

static int each_manifest_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct each_ctx *c = arg;
    index_manifest_fn fn = (index_manifest_fn)c->fn;
    struct index_manifest m;
    char repo[KEY_MAX + 1], digest[KEY_MAX + 1];
    const char *refs;
    size_t refs_len;
    uint32_t nrefs;

    (void)cur;
    if (split_key(k, repo, sizeof(repo), digest, sizeof(digest)) ||
        parse_manifest(v, &m, &refs, &refs_len, &nrefs)) {
        c->rc = REG_E_INDEX;
        return 1;
    }
    c->rc = fn(c->arg, repo, digest, &m, refs, refs_len);
    return c->rc != REG_OK;
}

int index_each_manifest(struct index_txn *t, index_manifest_fn fn, void *arg)
{
    struct each_ctx c = {(void *)fn, arg, REG_OK};
    int rc = scan(t, DB_MANIFEST, "", 0, NULL, each_manifest_one, &c);

    return rc ? rc : c.rc;
}

static int each_blob_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct each_ctx *c = arg;
    index_blob_fn fn = (index_blob_fn)c->fn;
    struct index_blob b;
    char digest[KEY_MAX + 1];

    (void)cur;
    if (k->mv_size >= sizeof(digest) || v->mv_size != sizeof(b)) {
        c->rc = REG_E_INDEX;
        return 1;
    }
    memcpy(digest, k->mv_data, k->mv_size);
    digest[k->mv_size] = '\0';
    memcpy(&b, v->mv_data, sizeof(b));
    c->rc = fn(c->arg, digest, &b);
    return c->rc != REG_OK;
}

int index_each_blob(struct index_txn *t, index_blob_fn fn, void *arg)
{
    return index_each_blob_after(t, NULL, fn, arg);
}

int index_each_blob_after(struct index_txn *t, const char *after, index_blob_fn fn, void *arg)
{
    struct each_ctx c = {(void *)fn, arg, REG_OK};
    int rc = scan(t, DB_BLOB, "", 0, after, each_blob_one, &c);

    return rc ? rc : c.rc;
}

static int each_upload_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct each_ctx *c = arg;
    index_upload_fn fn = (index_upload_fn)c->fn;
    struct index_upload u;
    char uuid[KEY_MAX + 1];

    (void)cur;
    if (k->mv_size >= sizeof(uuid) || parse_upload(v, &u)) {
        c->rc = REG_E_INDEX;
        return 1;
    }
    memcpy(uuid, k->mv_data, k->mv_size);
    uuid[k->mv_size] = '\0';
    c->rc = fn(c->arg, uuid, &u);
    return c->rc != REG_OK;
}

int index_each_upload(struct index_txn *t, index_upload_fn fn, void *arg)
{
    struct each_ctx c = {(void *)fn, arg, REG_OK};
    int rc = scan(t, DB_UPLOAD, "", 0, NULL, each_upload_one, &c);

    return rc ? rc : c.rc;
}

/* Names of a db's keys (a \0 b split), for the listings below. */
static int each_pair_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct each_ctx *c = arg;
    index_pair_fn fn = (index_pair_fn)c->fn;
    char a[KEY_MAX + 1], b[KEY_MAX + 1];

    (void)cur;
    if (split_key(k, a, sizeof(a), b, sizeof(b))) {
        c->rc = REG_E_INDEX;
        return 1;
    }
    c->rc = fn(c->arg, a, b, v->mv_data, v->mv_size);
    return c->rc != REG_OK;
}

static int each_pair(struct index_txn *t, int db, index_pair_fn fn, void *arg)
{
    struct each_ctx c = {(void *)fn, arg, REG_OK};
    int rc = scan(t, db, "", 0, NULL, each_pair_one, &c);

    return rc ? rc : c.rc;
}

int index_each_tag(struct index_txn *t, index_pair_fn fn, void *arg)
{
    return each_pair(t, DB_TAG, fn, arg);
}

int index_each_repo(struct index_txn *t, index_pair_fn fn, void *arg)
{
    return each_pair(t, DB_REPO, fn, arg);
}

static int rebuild_one(void *arg, const char *repo, const char *digest,
                       const struct index_manifest *m, const char *refs, size_t refs_len)
{
    struct index_txn *t = arg;
    size_t off = 0;
    int rc = REG_OK;

    (void)digest;
    (void)m;
    while (!rc && off < refs_len) {
        rc = repo_ref(t, repo, refs + off, +1);
        off += strlen(refs + off) + 1;
    }
    return rc;
}

/* Writing while a cursor walks another db of the same txn is fine in LMDB;
 * the manifest records themselves are not written. */
static int rebuild_repo_refs(struct index_txn *t)
{
    int rc = map_mdb(mdb_drop(t->txn, t->ix->dbi[DB_REPO_REF], 0), REG_E_INDEX);

    return rc ? rc : index_each_manifest(t, rebuild_one, t);
}

struct user_ctx {
    const char *digest;
    char *out;
    size_t size;
};

static int find_user(void *arg, const char *repo, const char *digest,
                     const struct index_manifest *m, const char *refs, size_t refs_len)
{
    struct user_ctx *c = arg;
    size_t off = 0;

    (void)repo;
    (void)m;
    while (off < refs_len) {
        if (strcmp(refs + off, c->digest) == 0) {
            snprintf(c->out, c->size, "%s", digest);
            return 1;
        }
        off += strlen(refs + off) + 1;
    }
    return REG_OK;
}

int index_in_use(struct index_txn *t, const char *repo, const char *digest, char *out, size_t size)
{
    struct each_ctx c;
    struct user_ctx uc = {digest, out, size};
    char prefix[KEY_MAX];
    size_t plen = strlen(repo) + 1;
    MDB_val v;
    int rc = kv_get(t, DB_REPO_REF, repo, digest, &v, REG_E_NOT_FOUND);

    if (rc)
        return rc == REG_E_NOT_FOUND ? REG_OK : rc;
    snprintf(out, size, "a manifest");
    if (plen > KEY_MAX)
        return REG_E_IN_USE;
    /* Rare (a refused delete): walk the repository's manifests for a name. */
    memcpy(prefix, repo, plen);
    c.fn = (void *)find_user;
    c.arg = &uc;
    c.rc = REG_OK;
    rc = scan(t, DB_MANIFEST, prefix, plen, NULL, each_manifest_one, &c);
    return rc == REG_OK || rc == REG_E_INDEX ? REG_E_IN_USE : rc;
}

struct tagged_ctx {
    const char *digest;
    size_t dlen;
    int found;
};

static int tagged_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct tagged_ctx *c = arg;

    (void)cur;
    (void)k;
    c->found = v->mv_size == c->dlen && memcmp(v->mv_data, c->digest, c->dlen) == 0;
    return c->found;
}

int index_manifest_tagged(struct index_txn *t, const char *repo, const char *digest)
{
    struct tagged_ctx c = {digest, strlen(digest), 0};
    char prefix[KEY_MAX];
    size_t plen = strlen(repo) + 1;
    int rc;

    if (plen > KEY_MAX)
        return REG_E_INTERNAL;
    memcpy(prefix, repo, plen);
    rc = scan(t, DB_TAG, prefix, plen, NULL, tagged_one, &c);
    return rc ? rc : c.found ? REG_OK : REG_E_MANIFEST_UNKNOWN;
}

static int unlink_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct index_txn *t = arg;
    char digest[KEY_MAX + 1], repo[KEY_MAX + 1];

    (void)v;
    if (split_key(k, digest, sizeof(digest), repo, sizeof(repo)) ||
        kv_del(t, DB_REPO_BLOB, repo, digest) != REG_OK)
        return -1;
    return mdb_cursor_del(cur, 0) ? -1 : 0;
}

int index_remove_blob(struct index_txn *t, const char *digest)
{
    char prefix[KEY_MAX];
    size_t plen = strlen(digest) + 1;
    struct index_blob b;
    int rc;

    if (plen > KEY_MAX)
        return REG_E_INTERNAL;
    memcpy(prefix, digest, plen);
    rc = scan(t, DB_BLOB_REPO, prefix, plen, NULL, unlink_one, t);
    if (rc)
        return rc;
    rc = index_get_blob(t, digest, &b);
    if (rc == REG_E_BLOB_UNKNOWN)
        return REG_OK;
    if (!rc) {
        rc = blob_bytes_change(t, b.size, 0);
    } else if (rc == REG_E_INDEX) {
        rc = REG_OK; /* a malformed record (fsck --repair): its recount sets the total */
        b.refcount = 0;
    }
    /* A record dropped while manifests still use it (fsck --repair of a
     * lost file): their references wait for the blob to come back. */
    if (!rc && b.refcount)
        rc = pending_set(t, digest, b.refcount);
    return rc ? rc : kv_del(t, DB_BLOB, digest, NULL);
}

/* ---- the pull-through cache's tags --------------------------------------------- */

int index_set_cached(struct index_txn *t, const char *repo, const char *tag, int64_t when)
{
    return kv_put(t, DB_CACHED, repo, tag ? tag : "", &when, sizeof(when));
}

int index_get_cached(struct index_txn *t, const char *repo, const char *tag, int64_t *when)
{
    MDB_val v;
    int rc = kv_get(t, DB_CACHED, repo, tag ? tag : "", &v, REG_E_NOT_FOUND);

    if (rc)
        return rc;
    if (v.mv_size != sizeof(*when))
        return REG_E_INDEX;
    memcpy(when, v.mv_data, sizeof(*when));
    return REG_OK;
}

int index_del_cached(struct index_txn *t, const char *repo, const char *tag)
{
    int rc = kv_del(t, DB_CACHED, repo, tag ? tag : "");

    return rc == REG_E_NOT_FOUND ? REG_OK : rc;
}

/* No tag can be named so (a tag starts with a letter, digit or '_'). */
#define PUSHED_MARK "#pushed"

int index_set_pushed(struct index_txn *t, const char *repo)
{
    int64_t now = (int64_t)time(NULL);

    return kv_put(t, DB_CACHED, repo, PUSHED_MARK, &now, sizeof(now));
}

int index_get_pushed(struct index_txn *t, const char *repo)
{
    MDB_val v;

    return kv_get(t, DB_CACHED, repo, PUSHED_MARK, &v, REG_E_NOT_FOUND);
}

static int del_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    (void)arg;
    (void)k;
    (void)v;
    return mdb_cursor_del(cur, 0) ? -1 : 0;
}

static int any_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    (void)cur;
    (void)k;
    (void)v;
    *(int *)arg = 1;
    return 1;
}

int index_repo_empty(struct index_txn *t, const char *repo)
{
    static const int dbs[] = {DB_MANIFEST, DB_TAG, DB_REPO_BLOB};
    char prefix[KEY_MAX];
    size_t plen = strlen(repo) + 1, i;
    int rc = REG_OK, any = 0;

    if (plen > KEY_MAX)
        return REG_E_INTERNAL;
    memcpy(prefix, repo, plen);
    for (i = 0; !rc && !any && i < sizeof(dbs) / sizeof(dbs[0]); i++)
        rc = scan(t, dbs[i], prefix, plen, NULL, any_one, &any);
    return rc ? rc : any ? REG_E_NOT_FOUND : REG_OK;
}

int index_drop_repo(struct index_txn *t, const char *repo)
{
    char prefix[KEY_MAX];
    size_t plen = strlen(repo) + 1;
    int rc = kv_del(t, DB_REPO, repo, NULL);

    if (rc || plen > KEY_MAX)
        return rc;
    memcpy(prefix, repo, plen);
    return scan(t, DB_CACHED, prefix, plen, NULL, del_one, NULL);
}

int index_drop_uploads(struct index_txn *t)
{
    return map_mdb(mdb_drop(t->txn, t->ix->dbi[DB_UPLOAD], 0), REG_E_INDEX);
}

int index_copy(struct index *ix, const char *dir)
{
    return map_mdb(mdb_env_copy2(ix->env, dir, MDB_CP_COMPACT), REG_E_INDEX);
}

/* ---- reference counts from scratch (fsck) ----------------------------- */

struct ref_pair {
    char *repo;   /* NULL for the whole-registry count */
    char *digest; /* points into the same allocation */
};

struct ref_list {
    struct ref_pair *v;
    size_t n, cap;
};

static int ref_add(struct ref_list *l, const char *repo, const char *digest)
{
    size_t rl = strlen(repo) + 1, dl = strlen(digest) + 1;
    char *p;

    if (array_reserve(&l->v, &l->cap, l->n, sizeof(*l->v)))
        return REG_E_NOMEM;
    p = malloc(rl + dl);
    if (!p)
        return REG_E_NOMEM;
    memcpy(p, repo, rl);
    memcpy(p + rl, digest, dl);
    l->v[l->n].repo = p;
    l->v[l->n].digest = p + rl;
    l->n++;
    return REG_OK;
}

static int ref_cmp(const void *a, const void *b)
{
    const struct ref_pair *x = a, *y = b;
    int c = strcmp(x->repo, y->repo);

    return c ? c : strcmp(x->digest, y->digest);
}

static int collect_refs(void *arg, const char *repo, const char *digest,
                        const struct index_manifest *m, const char *refs, size_t refs_len)
{
    struct ref_list *l = arg;
    size_t off = 0;
    int rc = REG_OK;

    (void)digest;
    (void)m;
    while (!rc && off < refs_len) {
        rc = ref_add(&l[0], repo, refs + off);
        if (!rc)
            rc = ref_add(&l[1], "", refs + off);
        off += strlen(refs + off) + 1;
    }
    return rc;
}

/* How many times (repo, digest) occurs in a sorted list. */
static uint64_t ref_count(const struct ref_list *l, const char *repo, const char *digest)
{
    struct ref_pair key = {(char *)repo, (char *)digest};
    size_t lo = 0, hi = l->n, n = 0;

    while (lo < hi) { /* first position not below key */
        size_t mid = lo + (hi - lo) / 2;

        if (ref_cmp(&l->v[mid], &key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    while (lo + n < l->n && ref_cmp(&l->v[lo + n], &key) == 0)
        n++;
    return n;
}

struct count_ctx {
    struct ref_list *lists;
    index_problem_fn fn;
    void *arg;
    size_t bad;
};

static int check_blob_count(void *arg, const char *digest, const struct index_blob *b)
{
    struct count_ctx *c = arg;
    uint64_t want = ref_count(&c->lists[1], "", digest);
    char msg[300];

    if (want == b->refcount)
        return REG_OK;
    snprintf(msg, sizeof(msg), "blob %s: reference count %llu, but %llu manifest references",
             digest, (unsigned long long)b->refcount, (unsigned long long)want);
    c->fn(c->arg, msg);
    c->bad++;
    return REG_OK;
}

static int check_repo_count(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct count_ctx *c = arg;
    char repo[KEY_MAX + 1], digest[KEY_MAX + 1], msg[1200];
    uint64_t have = 0, want;

    (void)cur;
    if (split_key(k, repo, sizeof(repo), digest, sizeof(digest)) || v->mv_size != sizeof(have))
        return -1;
    memcpy(&have, v->mv_data, sizeof(have));
    want = ref_count(&c->lists[0], repo, digest);
    if (want != have) {
        snprintf(msg, sizeof(msg), "%s: %s counted as used %llu times, but used %llu times", repo,
                 digest, (unsigned long long)have, (unsigned long long)want);
        c->fn(c->arg, msg);
        c->bad++;
    }
    return 0;
}

static int check_pending_count(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct count_ctx *c = arg;
    char digest[KEY_MAX + 1], msg[700];
    uint64_t have = 0, want;

    (void)cur;
    if (k->mv_size > KEY_MAX || v->mv_size != sizeof(have))
        return -1;
    memcpy(digest, k->mv_data, k->mv_size);
    digest[k->mv_size] = '\0';
    memcpy(&have, v->mv_data, sizeof(have));
    want = ref_count(&c->lists[1], "", digest);
    if (want != have) {
        snprintf(msg, sizeof(msg),
                 "%s (not stored): %llu pending references, but %llu manifest "
                 "references",
                 digest, (unsigned long long)have, (unsigned long long)want);
        c->fn(c->arg, msg);
        c->bad++;
    }
    return 0;
}

/* Every digest the manifests use is either a stored blob (its count was
 * checked with it) or counted as pending; and nothing is both. A reference
 * counted nowhere would start a later-cached blob below its true count. */
static int check_pending_present(struct index_txn *t, struct count_ctx *c)
{
    struct ref_list *l = &c->lists[1];
    char msg[700];
    MDB_val v;
    size_t i;
    int rc, stored, pending;

    for (i = 0; i < l->n; i++) {
        if (i > 0 && ref_cmp(&l->v[i - 1], &l->v[i]) == 0)
            continue;
        rc = kv_get(t, DB_BLOB, l->v[i].digest, NULL, &v, REG_E_NOT_FOUND);
        stored = rc == REG_OK;
        if (rc && rc != REG_E_NOT_FOUND)
            return rc;
        rc = kv_get(t, DB_PENDING, l->v[i].digest, NULL, &v, REG_E_NOT_FOUND);
        pending = rc == REG_OK;
        if (rc && rc != REG_E_NOT_FOUND)
            return rc;
        if (stored == pending) {
            snprintf(msg, sizeof(msg),
                     stored ? "%s is stored and also counted as pending"
                            : "%s is used by manifests but neither stored nor counted as pending",
                     l->v[i].digest);
            if (c->fn)
                c->fn(c->arg, msg);
            c->bad++;
        }
    }
    return REG_OK;
}

/* Every (repo, digest) the manifests use must have its count, too. */
static int check_repo_present(struct index_txn *t, struct count_ctx *c)
{
    struct ref_list *l = &c->lists[0];
    char msg[1200];
    size_t i;
    MDB_val v;
    int rc;

    for (i = 0; i < l->n; i++) {
        if (i > 0 && ref_cmp(&l->v[i - 1], &l->v[i]) == 0)
            continue;
        rc = kv_get(t, DB_REPO_REF, l->v[i].repo, l->v[i].digest, &v, REG_E_NOT_FOUND);
        if (rc == REG_E_NOT_FOUND) {
            snprintf(msg, sizeof(msg), "%s: %s is used by manifests but not counted", l->v[i].repo,
                     l->v[i].digest);
            c->fn(c->arg, msg);
            c->bad++;
        } else if (rc) {
            return rc;
        }
    }
    return REG_OK;
}

static int add_size(void *arg, const char *digest, const struct index_blob *b)
{
    (void)digest;
    *(uint64_t *)arg += b->size;
    return REG_OK;
}

static int rebuild_blob_bytes(struct index_txn *t)
{
    uint64_t bytes = 0;
    int rc = index_each_blob(t, add_size, &bytes);

    return rc ? rc : blob_bytes_put(t, bytes);
}

/* The running total against the sum of the records. */
static int check_blob_bytes(struct index_txn *t, struct count_ctx *c)
{
    uint64_t have, want = 0;
    char msg[200];
    int rc = blob_bytes_get(t, &have);

    if (!rc)
        rc = index_each_blob(t, add_size, &want);
    if (rc || have == want)
        return rc;
    snprintf(msg, sizeof(msg), "stored blob bytes counted as %llu, but the blobs hold %llu",
             (unsigned long long)have, (unsigned long long)want);
    if (c->fn)
        c->fn(c->arg, msg);
    c->bad++;
    return REG_OK;
}

int index_check_counts(struct index_txn *t, index_problem_fn fn, void *arg, size_t *bad)
{
    struct ref_list lists[2];
    struct count_ctx c = {lists, fn, arg, 0};
    size_t i, k;
    int rc;

    memset(lists, 0, sizeof(lists));
    rc = index_each_manifest(t, collect_refs, lists);
    for (k = 0; k < 2; k++)
        if (lists[k].n)
            qsort(lists[k].v, lists[k].n, sizeof(*lists[k].v), ref_cmp);
    if (!rc)
        rc = index_each_blob(t, check_blob_count, &c);
    if (!rc)
        rc = scan(t, DB_REPO_REF, "", 0, NULL, check_repo_count, &c);
    if (!rc)
        rc = scan(t, DB_PENDING, "", 0, NULL, check_pending_count, &c);
    if (!rc)
        rc = check_repo_present(t, &c);
    if (!rc)
        rc = check_pending_present(t, &c);
    if (!rc)
        rc = check_blob_bytes(t, &c);
    for (k = 0; k < 2; k++) {
        for (i = 0; i < lists[k].n; i++)
            free(lists[k].v[i].repo);
        free(lists[k].v);
    }
    *bad = c.bad;
    return rc;
}

static int zero_one(void *arg, MDB_cursor *cur, const MDB_val *k, const MDB_val *v)
{
    struct index_blob b;
    MDB_val nv = {sizeof(b), &b};

    (void)arg;
    if (v->mv_size != sizeof(b))
        return -1;
    memcpy(&b, v->mv_data, sizeof(b));
    b.refcount = 0;
    return mdb_cursor_put(cur, (MDB_val *)k, &nv, MDB_CURRENT) ? -1 : 0;
}

static int count_one(void *arg, const char *repo, const char *digest,
                     const struct index_manifest *m, const char *refs, size_t refs_len)
{
    struct index_txn *t = arg;
    size_t off = 0;
    int rc = REG_OK;

    (void)repo;
    (void)digest;
    (void)m;
    while (!rc && off < refs_len) {
        rc = blob_ref(t, refs + off, +1);
        off += strlen(refs + off) + 1;
    }
    return rc;
}

int index_recount(struct index_txn *t)
{
    int rc = scan(t, DB_BLOB, "", 0, NULL, zero_one, NULL);

    if (!rc)
        rc = map_mdb(mdb_drop(t->txn, t->ix->dbi[DB_PENDING], 0), REG_E_INDEX);
    if (!rc)
        rc = index_each_manifest(t, count_one, t);
    if (!rc)
        rc = rebuild_blob_bytes(t);
    return rc ? rc : rebuild_repo_refs(t);
}

/* Entries of db, from its B-tree header: no walk. */
static int entries(struct index_txn *t, int db, uint64_t *out)
{
    MDB_stat st;
    int rc = map_mdb(mdb_stat(t->txn, t->ix->dbi[db], &st), REG_E_INDEX);

    *out = rc ? 0 : (uint64_t)st.ms_entries;
    return rc;
}

int index_stats(struct index *ix, struct index_stats *out)
{
    struct index_txn *t = NULL;
    MDB_envinfo info;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = index_begin(ix, INDEX_READ, &t);
    if (!rc)
        rc = entries(t, DB_BLOB, &out->blobs);
    if (!rc)
        rc = blob_bytes_get(t, &out->blob_bytes);
    if (!rc)
        rc = entries(t, DB_REPO, &out->repos);
    if (!rc)
        rc = entries(t, DB_UPLOAD, &out->uploads);
    index_abort(t);
    if (!rc && mdb_env_info(ix->env, &info) != 0)
        rc = REG_E_INDEX;
    if (!rc) {
        out->used_bytes = ((uint64_t)info.me_last_pgno + 1) * ix->psize;
        out->map_bytes = (uint64_t)info.me_mapsize;
        out->limit_bytes = ix->limit;
    }
    return rc;
}

/* Pending counts from scratch: every reference to a digest with no blob
 * record (blob_ref counts it there). */
static int pending_one(void *arg, const char *repo, const char *digest,
                       const struct index_manifest *m, const char *refs, size_t refs_len)
{
    struct index_txn *t = arg;
    struct index_blob b;
    uint64_t n;
    size_t off = 0;
    int rc = REG_OK;

    (void)repo;
    (void)digest;
    (void)m;
    while (!rc && off < refs_len) {
        rc = index_get_blob(t, refs + off, &b);
        if (rc == REG_E_BLOB_UNKNOWN) {
            rc = pending_get(t, refs + off, &n);
            if (!rc)
                rc = pending_set(t, refs + off, n + 1);
        }
        off += strlen(refs + off) + 1;
    }
    return rc;
}

static int rebuild_pending(struct index_txn *t)
{
    int rc = map_mdb(mdb_drop(t->txn, t->ix->dbi[DB_PENDING], 0), REG_E_INDEX);

    return rc ? rc : index_each_manifest(t, pending_one, t);
}
