#include "index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lmdb.h>

#include "../common/err.h"
#include "../common/log.h"

enum { DB_BLOB, DB_REPO_BLOB, DB_REPO, DB_UPLOAD, DB_MANIFEST, DB_MANIFEST_DATA,
       DB_TAG, DB_REFERRER, DB__COUNT };

static const char *const db_names[DB__COUNT] = {
    "blob", "repo_blob", "repo", "upload", "manifest", "manifest_data", "tag", "referrer",
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

static int kv_get(struct index_txn *t, int db, const struct key *k, MDB_val *v, int notfound)
{
    MDB_val mk = {k->len, (void *)k->buf};

    return map_mdb(mdb_get(t->txn, t->ix->dbi[db], &mk, v), notfound);
}

static int kv_put(struct index_txn *t, int db, const struct key *k, const void *v, size_t vlen)
{
    MDB_val mk = {k->len, (void *)k->buf};
    MDB_val mv = {vlen, (void *)v};

    return map_mdb(mdb_put(t->txn, t->ix->dbi[db], &mk, &mv, 0), REG_E_INDEX);
}

/* Deleting what is absent is not an error. */
static int kv_del(struct index_txn *t, int db, const struct key *k)
{
    MDB_val mk = {k->len, (void *)k->buf};

    return map_mdb(mdb_del(t->txn, t->ix->dbi[db], &mk, NULL), REG_OK);
}

int index_get_blob(struct index_txn *t, const char *digest, struct index_blob *out)
{
    struct key k;
    MDB_val v;
    int rc = key_make(&k, digest, NULL);

    if (rc)
        return rc;
    rc = kv_get(t, DB_BLOB, &k, &v, REG_E_BLOB_UNKNOWN);
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
    struct key k;
    int rc = index_get_blob(t, digest, &b);

    if (rc != REG_E_BLOB_UNKNOWN)
        return rc;
    rc = key_make(&k, digest, NULL);
    if (rc)
        return rc;
    memset(&b, 0, sizeof(b));
    b.size = size;
    b.created = (int64_t)time(NULL);
    return kv_put(t, DB_BLOB, &k, &b, sizeof(b));
}

int index_add_repo(struct index_txn *t, const char *repo)
{
    struct key k;
    MDB_val v;
    int64_t now = (int64_t)time(NULL);
    int rc = key_make(&k, repo, NULL);

    if (rc)
        return rc;
    rc = kv_get(t, DB_REPO, &k, &v, REG_E_NAME_UNKNOWN);
    if (rc != REG_E_NAME_UNKNOWN)
        return rc;
    return kv_put(t, DB_REPO, &k, &now, sizeof(now));
}

int index_repo_exists(struct index_txn *t, const char *repo)
{
    struct key k;
    MDB_val v;
    int rc = key_make(&k, repo, NULL);

    return rc ? rc : kv_get(t, DB_REPO, &k, &v, REG_E_NAME_UNKNOWN);
}

int index_link_blob(struct index_txn *t, const char *repo, const char *digest)
{
    struct key k;
    int rc = key_make(&k, repo, digest);

    if (rc)
        return rc;
    rc = kv_put(t, DB_REPO_BLOB, &k, "", 0);
    return rc ? rc : index_add_repo(t, repo);
}

int index_unlink_blob(struct index_txn *t, const char *repo, const char *digest)
{
    struct key k;
    int rc = key_make(&k, repo, digest);

    return rc ? rc : kv_del(t, DB_REPO_BLOB, &k);
}

int index_repo_has_blob(struct index_txn *t, const char *repo, const char *digest)
{
    struct key k;
    MDB_val v;
    int rc = key_make(&k, repo, digest);

    return rc ? rc : kv_get(t, DB_REPO_BLOB, &k, &v, REG_E_BLOB_UNKNOWN);
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
    struct key k;
    int rc = key_make(&k, uuid, NULL);

    if (rc)
        return rc;
    if (u->state_len > INDEX_HASH_STATE_MAX || rlen == sizeof(u->repo))
        return REG_E_INTERNAL;
    memcpy(buf, &h, sizeof(h));
    n += sizeof(h);
    memcpy(buf + n, u->state, u->state_len);
    n += u->state_len;
    memcpy(buf + n, u->repo, rlen);
    n += rlen;
    return kv_put(t, DB_UPLOAD, &k, buf, n);
}

int index_get_upload(struct index_txn *t, const char *uuid, struct index_upload *out)
{
    struct upload_hdr h;
    struct key k;
    MDB_val v;
    size_t rlen;
    int rc = key_make(&k, uuid, NULL);

    if (rc)
        return rc;
    rc = kv_get(t, DB_UPLOAD, &k, &v, REG_E_UPLOAD_UNKNOWN);
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
    struct key k;
    int rc = key_make(&k, uuid, NULL);

    return rc ? rc : kv_del(t, DB_UPLOAD, &k);
}
