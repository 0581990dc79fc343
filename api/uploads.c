/* Blob uploads: POST /v2/NAME/blobs/uploads/ (session, monolithic or
 * mount), PATCH/PUT/GET/DELETE /v2/NAME/blobs/uploads/UUID. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../auth/acl.h"
#include "../common/err.h"
#include "../service/service.h"
#include "../service/uploads.h"
#include "api.h"
#include "range.h"

struct upstate {
    struct upload *u;
    const char *name;
    struct digest want; /* PUT and monolithic POST */
    int session;        /* POST that opens a session (no body expected) */
};

static void upstate_done(void *p, int aborted)
{
    struct upstate *st = p;

    (void)aborted;
    if (!st->u)
        return;
    /* Whatever arrived before the client went away stays resumable. */
    upload_checkpoint(st->u);
    upload_release(st->u);
    st->u = NULL;
}

static struct upstate *upstate_new(struct req *r, const struct route *rt)
{
    struct upstate *st = req_alloc(r, sizeof(*st));

    if (!st)
        return NULL;
    memset(st, 0, sizeof(*st));
    st->name = rt->name;
    req_set_state(r, st, upstate_done);
    return st;
}

static int set_session_headers(struct req *r, const char *name, const char *uuid, uint64_t offset)
{
    char range[48];

    snprintf(range, sizeof(range), "0-%" PRIu64, offset ? offset - 1 : 0);
    if (req_set_header(r, "Location", req_printf(r, "/v2/%s/blobs/uploads/%s", name, uuid)) ||
        req_set_header(r, "Range", range) || req_set_header(r, "Docker-Upload-UUID", uuid))
        return REG_E_NOMEM;
    return REG_OK;
}

static void reply_blob_created(struct req *r, const char *name, const char *digest)
{
    req_set_header(r, "Location", req_printf(r, "/v2/%s/blobs/%s", name, digest));
    req_set_header(r, "Docker-Content-Digest", digest);
    req_reply(r, 201);
}

static int parse_u64(const char *s, uint64_t *out)
{
    unsigned long long v;
    char *end;

    if (!s || *s < '0' || *s > '9')
        return REG_E_UPLOAD_INVALID;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || *end != '\0')
        return REG_E_UPLOAD_INVALID;
    *out = v;
    return REG_OK;
}

/* A chunk must continue the upload exactly where it stands. */
static int check_chunk(struct req *r, struct upstate *st)
{
    const char *cr = req_header(r, "Content-Range");
    const char *cl = req_header(r, "Content-Length");
    uint64_t start, len, clen;
    int rc;

    if (!cr)
        return REG_OK;
    rc = content_range_parse(cr, &start, &len);
    if (!rc && start != upload_offset(st->u))
        rc = REG_E_UPLOAD_RANGE;
    if (!rc && cl && (parse_u64(cl, &clen) || clen != len))
        rc = REG_E_UPLOAD_RANGE;
    if (rc == REG_E_UPLOAD_RANGE)
        set_session_headers(r, st->name, upload_uuid(st->u), upload_offset(st->u));
    return rc;
}

static int upload_body(struct req *r, const char *data, size_t len)
{
    struct upstate *st = req_state(r);

    return upload_write(st->u, data, len);
}

static int may_pull(void *arg, const char *repo)
{
    return req_may(arg, repo, ACL_PULL);
}

/* POST ?mount=<digest>[&from=<repo>]: link the blob when from holds it, or,
 * without from, when any repository the caller may read holds it. */
static int try_mount(struct req *r, const struct route *rt, const char *mount, int *mounted)
{
    const char *from = req_query(r, "from");
    struct digest d;
    int rc;

    *mounted = 0;
    rc = digest_parse(mount, strlen(mount), &d);
    if (rc)
        return rc;
    /* Without read access to from, fall back to a plain upload session. */
    if (from && (!api_name_valid(from, strlen(from)) || !req_may(r, from, ACL_PULL)))
        return REG_OK;
    rc = svc_blob_mount(req_registry(r)->svc, rt->name, &d, from, may_pull, r, mounted);
    if (!rc && *mounted)
        reply_blob_created(r, rt->name, d.str);
    return rc;
}

static int start_begin(struct req *r, const struct route *rt)
{
    struct registry *reg = req_registry(r);
    const char *mount = req_query(r, "mount");
    const char *digest = req_query(r, "digest");
    struct upstate *st;
    int rc, mounted;

    rc = svc_writable(reg->svc, rt->name);
    if (rc) {
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    if (mount) {
        rc = try_mount(r, rt, mount, &mounted);
        if (rc || mounted)
            return rc;
    }
    st = upstate_new(r, rt);
    if (!st)
        return REG_E_NOMEM;
    if (digest) {
        rc = digest_parse(digest, strlen(digest), &st->want);
        if (rc)
            return rc;
        return upload_create(svc_uploads(reg->svc), rt->name, 0, &st->u);
    }
    st->session = 1;
    return upload_create(svc_uploads(reg->svc), rt->name, 1, &st->u);
}

static int start_body(struct req *r, const char *data, size_t len)
{
    struct upstate *st = req_state(r);

    if (st->session)
        return REG_OK; /* a body without ?digest= carries nothing to keep */
    return upload_body(r, data, len);
}

static void start_end(struct req *r)
{
    struct upstate *st = req_state(r);
    uint64_t size;
    int rc;

    if (st->session) {
        rc = set_session_headers(r, st->name, upload_uuid(st->u), 0);
        if (rc)
            api_error(r, rc, NULL);
        else
            req_reply(r, 202);
        return;
    }
    rc = upload_finish(st->u, &st->want, &size);
    if (rc) {
        api_error(r, rc, NULL);
        return;
    }
    reply_blob_created(r, st->name, st->want.str);
}

static int resume(struct req *r, const struct route *rt, struct upstate **out)
{
    struct registry *reg = req_registry(r);
    struct upstate *st;

    if (!upload_uuid_valid(rt->ref, strlen(rt->ref)))
        return REG_E_UPLOAD_UNKNOWN;
    st = upstate_new(r, rt);
    if (!st)
        return REG_E_NOMEM;
    *out = st;
    return upload_resume(svc_uploads(reg->svc), rt->name, rt->ref, &st->u);
}

static int patch_begin(struct req *r, const struct route *rt)
{
    struct upstate *st;
    int rc = resume(r, rt, &st);

    return rc ? rc : check_chunk(r, st);
}

static void patch_end(struct req *r)
{
    struct upstate *st = req_state(r);
    int rc = upload_checkpoint(st->u);

    if (!rc)
        rc = set_session_headers(r, st->name, upload_uuid(st->u), upload_offset(st->u));
    if (rc) {
        api_error(r, rc, NULL);
        return;
    }
    req_reply(r, 202);
}

static int put_begin(struct req *r, const struct route *rt)
{
    const char *digest = req_query(r, "digest");
    struct upstate *st;
    struct digest want;
    int rc;

    if (!digest) {
        api_error(r, REG_E_DIGEST_INVALID, "the digest query parameter is required");
        return REG_OK;
    }
    rc = digest_parse(digest, strlen(digest), &want);
    if (rc)
        return rc;
    rc = resume(r, rt, &st);
    if (rc)
        return rc;
    st->want = want;
    return check_chunk(r, st);
}

static void put_end(struct req *r)
{
    struct upstate *st = req_state(r);
    uint64_t size;
    int rc = upload_finish(st->u, &st->want, &size);

    if (rc) {
        api_error(r, rc, NULL);
        return;
    }
    reply_blob_created(r, st->name, st->want.str);
}

static int get_begin(struct req *r, const struct route *rt)
{
    uint64_t offset;
    int rc;

    if (!upload_uuid_valid(rt->ref, strlen(rt->ref)))
        return REG_E_UPLOAD_UNKNOWN;
    rc = upload_status(svc_uploads(req_registry(r)->svc), rt->name, rt->ref, &offset);
    if (rc)
        return rc;
    rc = set_session_headers(r, rt->name, rt->ref, offset);
    if (rc)
        return rc;
    req_reply(r, 204);
    return REG_OK;
}

static int delete_begin(struct req *r, const struct route *rt)
{
    struct upstate *st;
    int rc = resume(r, rt, &st);

    if (!rc)
        rc = upload_cancel(st->u);
    if (rc)
        return rc;
    req_reply(r, 204);
    return REG_OK;
}

const struct handler api_upload_start = {start_begin, start_body, start_end};
const struct handler api_upload_patch = {patch_begin, upload_body, patch_end};
const struct handler api_upload_put = {put_begin, upload_body, put_end};
const struct handler api_upload_get = {get_begin, NULL, NULL};
const struct handler api_upload_delete = {delete_begin, NULL, NULL};
