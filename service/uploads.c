#include "uploads.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "../common/array.h"
#include "../common/err.h"
#include "../common/log.h"
#include "../storage/blobstore.h"
#include "../storage/index.h"

/* Sessions held by a request right now. Few at a time: a list is enough. */
struct held {
    struct held *next;
    char uuid[UPLOAD_UUID_LEN + 1];
};

struct uploads {
    struct blobstore *bs;
    struct index *ix;
    pthread_mutex_t lock;
    struct held *held;
};

struct upload {
    struct uploads *us;
    char uuid[UPLOAD_UUID_LEN + 1];
    char repo[INDEX_NAME_MAX + 1];
    struct blob_writer *w; /* the session's bytes in the blob store */
    int persist;           /* has an index record */
    int ended;             /* finished or cancelled: nothing left to checkpoint */
    int failed;            /* a write failed: bytes past the checkpoint are dropped */
    uint64_t offset;       /* bytes written and hashed */
    uint64_t saved;        /* offset of the last checkpoint */
    struct hasher h;
};

int uploads_new(struct blobstore *bs, struct index *ix, struct uploads **out)
{
    struct uploads *us = calloc(1, sizeof(*us));

    *out = NULL;
    if (!us)
        return REG_E_NOMEM;
    us->bs = bs;
    us->ix = ix;
    pthread_mutex_init(&us->lock, NULL);
    *out = us;
    return REG_OK;
}

void uploads_free(struct uploads *us)
{
    if (!us)
        return;
    while (us->held) {
        struct held *n = us->held->next;

        free(us->held);
        us->held = n;
    }
    pthread_mutex_destroy(&us->lock);
    free(us);
}

int upload_uuid_valid(const char *s, size_t len)
{
    size_t i;

    if (len != UPLOAD_UUID_LEN)
        return 0;
    for (i = 0; i < len; i++) {
        char c = s[i];

        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

static int acquire(struct uploads *us, const char *uuid)
{
    struct held *h, *n;
    int rc = REG_OK;

    pthread_mutex_lock(&us->lock);
    for (h = us->held; h; h = h->next)
        if (strcmp(h->uuid, uuid) == 0) {
            rc = REG_E_UPLOAD_BUSY;
            goto out;
        }
    n = calloc(1, sizeof(*n));
    if (!n) {
        rc = REG_E_NOMEM;
        goto out;
    }
    memcpy(n->uuid, uuid, UPLOAD_UUID_LEN);
    n->next = us->held;
    us->held = n;
out:
    pthread_mutex_unlock(&us->lock);
    return rc;
}

static void release(struct uploads *us, const char *uuid)
{
    struct held **p, *h;

    pthread_mutex_lock(&us->lock);
    for (p = &us->held; *p; p = &(*p)->next)
        if (strcmp((*p)->uuid, uuid) == 0) {
            h = *p;
            *p = h->next;
            free(h);
            break;
        }
    pthread_mutex_unlock(&us->lock);
}

static int new_uuid(char *out)
{
    unsigned char b[16];

    if (RAND_bytes(b, sizeof(b)) != 1)
        return REG_E_INTERNAL;
    b[6] = (b[6] & 0x0f) | 0x40; /* version 4 */
    b[8] = (b[8] & 0x3f) | 0x80; /* RFC 4122 variant */
    snprintf(out, UPLOAD_UUID_LEN + 1,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return REG_OK;
}

static struct upload *upload_alloc(struct uploads *us, const char *repo)
{
    struct upload *u = calloc(1, sizeof(*u));

    if (!u)
        return NULL;
    u->us = us;
    snprintf(u->repo, sizeof(u->repo), "%s", repo);
    return u;
}

static int save_record(struct upload *u)
{
    struct index_upload rec;
    struct index_txn *t = NULL;
    int rc;

    memset(&rec, 0, sizeof(rec));
    snprintf(rec.repo, sizeof(rec.repo), "%s", u->repo);
    rec.offset = u->offset;
    rec.updated = (int64_t)time(NULL);
    rec.algo = (uint32_t)u->h.algo;
    rec.state_len = sizeof(u->h);
    memcpy(rec.state, &u->h, sizeof(u->h));
    rc = index_begin(u->us->ix, INDEX_WRITE, &t);
    if (rc)
        return rc;
    rc = index_end(t, index_put_upload(t, u->uuid, &rec));
    if (!rc)
        u->saved = u->offset;
    return rc;
}

int upload_create(struct uploads *us, const char *repo, int persist, struct upload **out)
{
    struct upload *u = upload_alloc(us, repo);
    int rc = REG_E_NOMEM;

    *out = NULL;
    if (!u)
        goto out;
    rc = new_uuid(u->uuid);
    if (rc)
        goto out;
    rc = acquire(us, u->uuid);
    if (rc)
        goto out;
    hasher_init(&u->h, DIGEST_SHA256);
    u->persist = persist;
    rc = blobstore_writer_create(us->bs, u->uuid, &u->w);
    if (!rc && persist)
        rc = save_record(u);
out:
    if (rc && u) {
        blob_writer_close(u->w, 1);
        u->w = NULL;
        u->ended = 1;
        upload_release(u);
        u = NULL;
    }
    *out = u;
    return rc;
}

static int read_record(struct uploads *us, const char *repo, const char *uuid,
                       struct index_upload *rec)
{
    struct index_txn *t = NULL;
    int rc = index_begin(us->ix, 0, &t);

    if (rc)
        return rc;
    rc = index_get_upload(t, uuid, rec);
    index_abort(t);
    if (rc == REG_OK && strcmp(rec->repo, repo) != 0)
        rc = REG_E_UPLOAD_UNKNOWN;
    return rc;
}

int upload_status(struct uploads *us, const char *repo, const char *uuid, uint64_t *offset)
{
    struct index_upload rec;
    int rc = read_record(us, repo, uuid, &rec);

    if (rc == REG_OK)
        *offset = rec.offset;
    return rc;
}

/* Hash the first len bytes of the file from scratch. */
static int rehash(struct upload *u, enum digest_algo algo, uint64_t len)
{
    static const size_t bufsize = 1 << 20;
    char *buf = malloc(bufsize);
    uint64_t done = 0;
    int rc = REG_OK;

    if (!buf)
        return REG_E_NOMEM;
    hasher_init(&u->h, algo);
    while (done < len) {
        size_t want = len - done < bufsize ? (size_t)(len - done) : bufsize, n = 0;

        rc = blob_writer_pread(u->w, done, buf, want, &n);
        if (!rc && n == 0)
            rc = REG_E_IO; /* shorter than its checkpoint */
        if (rc)
            break;
        hasher_update(&u->h, buf, n);
        done += n;
    }
    free(buf);
    return rc;
}

int upload_resume(struct uploads *us, const char *repo, const char *uuid, struct upload **out)
{
    struct upload *u = upload_alloc(us, repo);
    struct index_upload rec;
    int rc = REG_E_NOMEM, held = 0;

    *out = NULL;
    if (!u)
        goto out;
    memcpy(u->uuid, uuid, UPLOAD_UUID_LEN);
    rc = acquire(us, u->uuid);
    if (rc)
        goto out;
    held = 1;
    /* Read the record only once we hold the session: it cannot move now. */
    rc = read_record(us, repo, uuid, &rec);
    if (rc)
        goto out;
    u->persist = 1;
    /* Bytes past the checkpoint were never acknowledged: the store drops
     * them. */
    rc = blobstore_writer_reopen(us->bs, u->uuid, rec.offset, &u->w);
    if (rc)
        goto out;
    if (rec.state_len == sizeof(u->h)) {
        memcpy(&u->h, rec.state, sizeof(u->h));
    } else {
        log_warn("upload %s: no usable hash state, rehashing %llu bytes", uuid,
                 (unsigned long long)rec.offset);
        rc = rehash(u, rec.algo == DIGEST_SHA512 ? DIGEST_SHA512 : DIGEST_SHA256, rec.offset);
        if (rc)
            goto out;
    }
    u->offset = rec.offset;
    u->saved = rec.offset;
out:
    if (rc && u) {
        u->ended = 1;
        if (!held)
            u->uuid[0] = '\0';
        upload_release(u);
        u = NULL;
    }
    *out = u;
    return rc;
}

const char *upload_uuid(const struct upload *u)
{
    return u->uuid;
}

uint64_t upload_offset(const struct upload *u)
{
    return u->offset;
}

/* A write failed: what this request brought is not acknowledged, so give
 * its space back now (a full disk) and keep what earlier requests saved. */
static void drop_unsaved(struct upload *u)
{
    u->failed = 1;
    blob_writer_truncate(u->w, u->saved);
}

int upload_write(struct upload *u, const void *data, size_t len)
{
    int rc;

    if (u->ended || u->failed)
        return REG_E_UPLOAD_UNKNOWN;
    rc = blob_writer_append(u->w, data, len);
    if (rc) {
        drop_unsaved(u);
        return rc;
    }
    /* Hash exactly what reached the store, so offset and hash agree. */
    hasher_update(&u->h, data, len);
    u->offset += len;
    return REG_OK;
}

int upload_checkpoint(struct upload *u)
{
    int rc;

    if (u->ended || u->failed || !u->persist || u->offset == u->saved)
        return REG_OK;
    rc = blob_writer_checkpoint(u->w);
    if (!rc)
        rc = save_record(u);
    if (rc)
        drop_unsaved(u);
    return rc;
}

/* Whether the index has blob d already (the commit then drops the session's
 * bytes): asked of the index, not the store, which on S3 would be a HEAD
 * the commit sends anyway. */
static int blob_known(struct index *ix, const struct digest *d)
{
    struct index_txn *t = NULL;
    struct index_blob b;
    int rc;

    if (index_begin(ix, INDEX_READ, &t) != REG_OK)
        return 0;
    rc = index_get_blob(t, d->str, &b);
    index_abort(t);
    return rc == REG_OK;
}

int upload_finish(struct upload *u, const struct digest *expect, uint64_t *size)
{
    struct index_txn *t = NULL;
    struct digest got;
    int rc;

    if (u->failed)
        return REG_E_UPLOAD_INVALID;
    if (expect->algo != u->h.algo) {
        rc = rehash(u, expect->algo, u->offset);
        if (rc)
            return rc;
    }
    hasher_peek(&u->h, &got);
    if (strcmp(got.str, expect->str) != 0) {
        log_info("upload %s: digest mismatch: computed %s, client said %s", u->uuid, got.str,
                 expect->str);
        upload_cancel(u);
        return REG_E_DIGEST_INVALID;
    }
    /* The slow part, flushing the data, before the lock: GC then never
     * waits for a disk flush, and the commit's own fsync finds it done. */
    if (!blob_known(u->us->ix, expect)) {
        rc = blob_writer_checkpoint(u->w);
        if (rc)
            return rc;
    }
    /* Held shared from the file's commit to its record's: GC removes
     * nothing in between (blobstore.h). */
    blobstore_lock_shared(u->us->bs);
    rc = blobstore_commit(u->us->bs, u->w, expect);
    if (rc)
        goto out;
    /* The file has left uploads/: nothing of this session is left to save. */
    u->ended = 1;
    rc = index_begin(u->us->ix, INDEX_WRITE, &t);
    if (rc)
        goto out;
    rc = index_add_blob(t, expect->str, u->offset);
    if (!rc)
        rc = index_link_blob(t, u->repo, expect->str);
    if (!rc && u->persist)
        rc = index_del_upload(t, u->uuid);
    rc = index_end(t, rc);
    if (!rc)
        *size = u->offset;
out:
    blobstore_unlock(u->us->bs);
    return rc;
}

int upload_cancel(struct upload *u)
{
    struct index_txn *t = NULL;
    int rc = REG_OK;

    if (u->ended)
        return REG_OK;
    u->ended = 1;
    if (u->persist) {
        rc = index_begin(u->us->ix, INDEX_WRITE_FREEING, &t);
        if (!rc)
            rc = index_end(t, index_del_upload(t, u->uuid));
    }
    /* The record goes first: bytes without a record are only litter. */
    blob_writer_close(u->w, 1);
    u->w = NULL;
    return rc;
}

void upload_release(struct upload *u)
{
    if (!u)
        return;
    /* A monolithic upload that never finished leaves nothing behind. */
    blob_writer_close(u->w, !u->persist && !u->ended);
    if (u->uuid[0])
        release(u->us, u->uuid);
    free(u);
}

/* ---- garbage collection of sessions ------------------------------------ */

struct stale {
    char (*uuids)[UPLOAD_UUID_LEN + 1];
    size_t n, cap;
    int64_t cutoff;
};

static int collect_stale(void *arg, const char *uuid, const struct index_upload *u)
{
    struct stale *st = arg;

    if (u->updated > st->cutoff || strlen(uuid) != UPLOAD_UUID_LEN)
        return REG_OK;
    if (array_reserve(&st->uuids, &st->cap, st->n, sizeof(*st->uuids)))
        return REG_E_NOMEM;
    memcpy(st->uuids[st->n++], uuid, UPLOAD_UUID_LEN + 1);
    return REG_OK;
}

/* A session's record, if it has one (*has). */
static int look(struct uploads *us, const char *uuid, struct index_upload *rec, int *has)
{
    struct index_txn *t = NULL;
    int rc = index_begin(us->ix, INDEX_READ, &t);

    *has = 0;
    if (rc)
        return rc;
    rc = index_get_upload(t, uuid, rec);
    index_abort(t);
    *has = rc == REG_OK;
    return rc == REG_E_UPLOAD_UNKNOWN ? REG_OK : rc;
}

/* Remove one session nobody holds: its record (when it has one) and its
 * file. expired: only if its record is still older than cutoff. */
static int sweep_one(struct uploads *us, const char *uuid, int expired, int64_t cutoff, int dry,
                     struct uploads_swept *out)
{
    struct index_upload rec;
    struct index_txn *t = NULL;
    uint64_t bytes = 0;
    int rc, has;

    /* A live session is never taken, not even for a moment: a client's
     * PATCH would find it busy. Look first, take only a candidate. */
    rc = look(us, uuid, &rec, &has);
    if (rc || (expired ? (!has || rec.updated > cutoff) : has))
        return rc;
    if (acquire(us, uuid) != REG_OK)
        return REG_OK; /* in use: not stale */
    /* Again, now that nobody else can move it. */
    rc = look(us, uuid, &rec, &has);
    if (rc || (expired ? (!has || rec.updated > cutoff) : has))
        goto out; /* moved on meanwhile, or a live session's file */
    blobstore_writer_size(us->bs, uuid, &bytes);
    out->bytes += bytes;
    if (expired)
        out->sessions++;
    else
        out->files++;
    if (dry)
        goto out;
    if (has) {
        rc = index_begin(us->ix, INDEX_WRITE_FREEING, &t);
        if (!rc)
            rc = index_end(t, index_del_upload(t, uuid));
    }
    if (!rc)
        rc = blobstore_writer_remove(us->bs, uuid, &bytes);
out:
    release(us, uuid);
    return rc;
}

struct stray_ctx {
    struct uploads *us;
    int64_t cutoff;
    int dry;
    struct uploads_swept *out;
};

static int sweep_stray(void *arg, const char *id)
{
    struct stray_ctx *c = arg;

    if (!upload_uuid_valid(id, strlen(id)))
        return REG_OK; /* not ours */
    return sweep_one(c->us, id, 0, c->cutoff, c->dry, c->out);
}

int uploads_gc(struct uploads *us, int64_t cutoff, int dry, struct uploads_swept *out)
{
    struct stale st = {NULL, 0, 0, cutoff};
    struct stray_ctx sc;
    struct index_txn *t = NULL;
    size_t i;
    int rc;

    memset(out, 0, sizeof(*out));
    rc = index_begin(us->ix, INDEX_READ, &t);
    if (rc)
        return rc;
    rc = index_each_upload(t, collect_stale, &st);
    index_abort(t);
    for (i = 0; !rc && i < st.n; i++)
        rc = sweep_one(us, st.uuids[i], 1, cutoff, dry, out);
    free(st.uuids);
    if (rc)
        return rc;
    /* Bytes no session names: a crash between the bytes and the record,
     * or a monolithic upload cut short by a crash. */
    sc.us = us;
    sc.cutoff = cutoff;
    sc.dry = dry;
    sc.out = out;
    return blobstore_each_writer(us->bs, sweep_stray, &sc);
}
