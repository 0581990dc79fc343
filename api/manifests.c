/* PUT/GET/HEAD/DELETE /v2/NAME/manifests/REFERENCE */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "../common/err.h"
#include "../storage/digest.h"
#include "../storage/index.h"
#include "api.h"

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_V1 "application/vnd.docker.distribution.manifest.v1"

/* Descriptors a manifest may list: at most this many are checked. */
#define MAX_REFS 4096

struct mbody {
    struct registry *reg;
    char *buf; /* the manifest bytes, at most max_manifest_size */
    size_t len, cap;
    size_t reserved; /* bytes of the registry's manifest budget held */
};

/* Hold n more bytes of the budget every manifest body in flight shares;
 * REG_E_TOOMANY when it is spent (the client retries later). */
static int reserve(struct mbody *b, size_t n)
{
    size_t was = atomic_fetch_add(&b->reg->manifest_buffered, n);

    if (was + n > b->reg->manifest_budget) {
        atomic_fetch_sub(&b->reg->manifest_buffered, n);
        return REG_E_TOOMANY;
    }

    b->reserved += n;
    return REG_OK;
}

static void mbody_done(void *p, int aborted)
{
    struct mbody *b = p;

    (void)aborted;
    free(b->buf);
    b->buf = NULL;
    atomic_fetch_sub(&b->reg->manifest_buffered, b->reserved);
    b->reserved = 0;
}

/* A reference is a digest when it has a colon, else a tag. */
static int parse_reference(const char *ref, struct digest *d, int *is_digest)
{
    *is_digest = strchr(ref, ':') != NULL;
    if (*is_digest)
        return digest_parse(ref, strlen(ref), d);
    return api_tag_valid(ref, strlen(ref)) ? REG_OK : REG_E_TAG_INVALID;
}

static int put_begin(struct req *r, const struct route *rt)
{
    struct registry *reg = req_registry(r);
    const char *cl = req_header(r, "Content-Length");
    struct mbody *b;
    struct digest d;
    int is_digest, rc = parse_reference(rt->ref, &d, &is_digest);

    if (rc)
        return rc;
    if (cl && strtoull(cl, NULL, 10) > reg->max_manifest_size)
        return REG_E_TOO_LARGE;
    b = req_alloc(r, sizeof(*b));
    if (!b)
        return REG_E_NOMEM;
    memset(b, 0, sizeof(*b));
    b->reg = reg;
    req_set_state(r, b, mbody_done);
    /* A declared length is held at once, so a refusal comes before the body. */
    rc = cl ? reserve(b, (size_t)strtoull(cl, NULL, 10)) : REG_OK;
    if (rc == REG_E_TOOMANY)
        req_set_header(r, "Retry-After", "1");
    return rc;
}

static int put_body(struct req *r, const char *data, size_t len)
{
    struct registry *reg = req_registry(r);
    struct mbody *b = req_state(r);

    if (len > reg->max_manifest_size - b->len)
        return REG_E_TOO_LARGE;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 16384;
        char *p;

        while (cap < b->len + len)
            cap *= 2;
        if (cap > reg->max_manifest_size)
            cap = reg->max_manifest_size;
        if (cap > b->reserved && reserve(b, cap - b->reserved) != REG_OK) {
            req_set_header(r, "Retry-After", "1");
            return REG_E_TOOMANY;
        }
        p = realloc(b->buf, cap);
        if (!p)
            return REG_E_NOMEM;
        b->buf = p;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, data, len);
    b->len += len;
    return REG_OK;
}

/* What validation learns about a manifest. */
struct parsed {
    const char *media_type;
    const char *artifact_type; /* explicit artifactType or config mediaType, or NULL */
    const char *subject;       /* subject digest or NULL */
    json_t *annotations;       /* borrowed, or NULL */
    int is_index;
    size_t nblobs, nchildren;
    const char *blobs[MAX_REFS];    /* config and layers */
    const char *children[MAX_REFS]; /* manifests of an index */
    int skip[MAX_REFS];             /* non-distributable layer: not required */
};

static int known_type(const char *t)
{
    return t && (!strcmp(t, MT_OCI_MANIFEST) || !strcmp(t, MT_OCI_INDEX) ||
                 !strcmp(t, MT_DOCKER_MANIFEST) || !strcmp(t, MT_DOCKER_LIST));
}

static int fail(char *detail, size_t size, const char *msg, const char *what)
{
    snprintf(detail, size, "%s%s%s", msg, what ? ": " : "", what ? what : "");
    return REG_E_MANIFEST_INVALID;
}

/* annotations, where present, map strings to strings (image-spec
 * annotations.md): the referrers API serves them to clients that expect
 * exactly that. */
static int check_annotations(json_t *a, const char *where, char *detail, size_t dsize)
{
    const char *key;
    json_t *v;

    if (!a)
        return REG_OK;
    if (!json_is_object(a))
        return fail(detail, dsize, "annotations must be an object", where);
    json_object_foreach(a, key, v)
    {
        if (!json_is_string(v))
            return fail(detail, dsize, "annotation values must be strings", key);
    }
    return REG_OK;
}

/* A descriptor: mediaType, a digest we support, a non-negative size,
 * string annotations. */
static int check_descriptor(json_t *d, const char *where, const char **digest,
                            const char **media_type, char *detail, size_t dsize)
{
    json_t *mt = json_object_get(d, "mediaType"), *dg = json_object_get(d, "digest"),
           *sz = json_object_get(d, "size");
    struct digest tmp;

    if (!json_is_object(d))
        return fail(detail, dsize, "descriptor is not an object", where);
    if (!json_is_string(mt))
        return fail(detail, dsize, "descriptor has no mediaType", where);
    if (!json_is_string(dg) ||
        digest_parse(json_string_value(dg), json_string_length(dg), &tmp) != REG_OK)
        return fail(detail, dsize, "descriptor digest is missing or invalid", where);
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return fail(detail, dsize, "descriptor size is missing or negative", where);
    if (check_annotations(json_object_get(d, "annotations"), where, detail, dsize))
        return REG_E_MANIFEST_INVALID;
    *digest = json_string_value(dg);
    *media_type = json_string_value(mt);
    return REG_OK;
}

/* Layers a registry may not hold (image-spec layer.md, Docker's foreign
 * layers): the only ones a manifest may reference without pushing them.
 * Exact types only: any other layer must be in the repository. */
static int non_distributable(const char *mt)
{
    static const char *const types[] = {
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    };
    size_t i;

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (!strcmp(mt, types[i]))
            return 1;
    return 0;
}

static int parse_manifest(json_t *root, const char *content_type, struct parsed *p, char *detail,
                          size_t dsize)
{
    json_t *sv = json_object_get(root, "schemaVersion"), *mt = json_object_get(root, "mediaType");
    json_t *at = json_object_get(root, "artifactType"), *subj = json_object_get(root, "subject");
    const char *type = NULL, *dg, *dmt;
    size_t i;
    int rc;

    memset(p, 0, sizeof(*p));
    if (!json_is_object(root))
        return fail(detail, dsize, "manifest is not a JSON object", NULL);
    if ((json_is_integer(sv) && json_integer_value(sv) == 1) ||
        (content_type && !strncmp(content_type, MT_DOCKER_V1, strlen(MT_DOCKER_V1))) ||
        (json_is_string(mt) && !strncmp(json_string_value(mt), MT_DOCKER_V1, strlen(MT_DOCKER_V1))))
        return fail(detail, dsize,
                    "schema 1 manifests are not supported; push a schema 2 or OCI manifest", NULL);
    if (!json_is_integer(sv) || json_integer_value(sv) != 2)
        return fail(detail, dsize, "schemaVersion must be 2", NULL);
    if (mt && !json_is_string(mt))
        return fail(detail, dsize, "mediaType must be a string", NULL);
    if (mt)
        type = json_string_value(mt);
    if (type && known_type(content_type) && strcmp(type, content_type) != 0)
        return fail(detail, dsize, "Content-Type does not match the manifest's mediaType", type);
    if (!type)
        type = content_type;
    if (!known_type(type))
        return fail(detail, dsize, "unknown or missing manifest mediaType", type);
    p->media_type = type;
    p->is_index = !strcmp(type, MT_OCI_INDEX) || !strcmp(type, MT_DOCKER_LIST);
    if (at && !json_is_string(at))
        return fail(detail, dsize, "artifactType must be a string", NULL);
    /* An empty artifactType counts as missing (the config's type applies). */
    p->artifact_type = at && json_string_length(at) ? json_string_value(at) : NULL;
    p->annotations = json_object_get(root, "annotations");
    rc = check_annotations(p->annotations, NULL, detail, dsize);
    if (rc)
        return rc;
    if (subj) {
        rc = check_descriptor(subj, "subject", &p->subject, &dmt, detail, dsize);
        if (rc)
            return rc;
    }
    if (p->is_index) {
        json_t *ms = json_object_get(root, "manifests"), *m;

        if (!json_is_array(ms))
            return fail(detail, dsize, "an index needs a manifests array", NULL);
        if (json_array_size(ms) > MAX_REFS)
            return fail(detail, dsize, "too many manifests", NULL);
        json_array_foreach(ms, i, m)
        {
            rc = check_descriptor(m, "manifests", &dg, &dmt, detail, dsize);
            if (rc)
                return rc;
            p->children[p->nchildren++] = dg;
        }
        return REG_OK;
    }
    {
        json_t *cfg = json_object_get(root, "config"), *layers = json_object_get(root, "layers"),
               *l;

        if (!cfg)
            return fail(detail, dsize, "an image manifest needs a config descriptor", NULL);
        rc = check_descriptor(cfg, "config", &dg, &dmt, detail, dsize);
        if (rc)
            return rc;
        p->blobs[p->nblobs++] = dg;
        if (!p->artifact_type)
            p->artifact_type = dmt;
        if (!json_is_array(layers))
            return fail(detail, dsize, "an image manifest needs a layers array", NULL);
        if (json_array_size(layers) >= MAX_REFS)
            return fail(detail, dsize, "too many layers", NULL);
        json_array_foreach(layers, i, l)
        {
            rc = check_descriptor(l, "layers", &dg, &dmt, detail, dsize);
            if (rc)
                return rc;
            p->skip[p->nblobs] = non_distributable(dmt);
            p->blobs[p->nblobs++] = dg;
        }
    }
    return REG_OK;
}

/* The descriptor the referrers API lists for this manifest. */
static char *referrer_descriptor(const struct parsed *p, const char *digest, size_t size)
{
    json_t *d = json_pack("{s:s, s:s, s:I}", "mediaType", p->media_type, "digest", digest, "size",
                          (json_int_t)size);
    char *s;

    if (!d)
        return NULL;
    if (p->artifact_type)
        json_object_set_new(d, "artifactType", json_string(p->artifact_type));
    if (p->annotations)
        json_object_set(d, "annotations", p->annotations);
    s = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    return s;
}

/* In one write transaction: check every reference, then store. */
static int store(struct req *r, const struct route *rt, const struct parsed *p,
                 const struct digest *d, const char *tag, const char *body, size_t len,
                 char *detail, size_t dsize)
{
    struct registry *reg = req_registry(r);
    struct index_txn *t = NULL;
    struct index_manifest m, child;
    const char *refs[2 * MAX_REFS];
    char *desc = NULL;
    size_t i, nrefs = 0;
    int rc, created;

    rc = index_begin(reg->ix, 1, &t);
    if (rc)
        return rc;
    for (i = 0; i < p->nblobs; i++) {
        if (p->skip[i])
            continue;
        rc = index_repo_has_blob(t, rt->name, p->blobs[i]);
        if (rc == REG_E_BLOB_UNKNOWN) {
            snprintf(detail, dsize, "blob %s is not in repository %s", p->blobs[i], rt->name);
            rc = REG_E_MANIFEST_BLOB_UNKNOWN;
        }
        if (rc)
            goto out;
        refs[nrefs++] = p->blobs[i];
    }
    for (i = 0; i < p->nchildren; i++) {
        rc = index_get_manifest(t, rt->name, p->children[i], &child);
        if (rc == REG_E_MANIFEST_UNKNOWN) {
            snprintf(detail, dsize, "manifest %s is not in repository %s", p->children[i],
                     rt->name);
            rc = REG_E_MANIFEST_BLOB_UNKNOWN;
        }
        if (rc)
            goto out;
        refs[nrefs++] = p->children[i];
    }
    memset(&m, 0, sizeof(m));
    snprintf(m.media_type, sizeof(m.media_type), "%s", p->media_type);
    if (p->artifact_type)
        snprintf(m.artifact_type, sizeof(m.artifact_type), "%s", p->artifact_type);
    if (p->subject)
        snprintf(m.subject, sizeof(m.subject), "%s", p->subject);
    m.size = len;
    m.created = (int64_t)time(NULL);
    rc = index_put_manifest(t, rt->name, d->str, &m, refs, nrefs, body, len, &created);
    if (!rc && tag)
        rc = index_put_tag(t, rt->name, tag, d->str);
    if (!rc && p->subject) {
        desc = referrer_descriptor(p, d->str, len);
        rc = desc ? index_put_referrer(t, rt->name, p->subject, d->str, desc, strlen(desc))
                  : REG_E_NOMEM;
        free(desc);
    }
out:
    if (rc) {
        index_abort(t);
        return rc;
    }
    return index_commit(t);
}

/* The media type in a Content-Type header, without parameters. */
static const char *bare_content_type(struct req *r)
{
    const char *ct = req_header(r, "Content-Type");
    char *s;

    if (!ct)
        return NULL;
    s = req_printf(r, "%s", ct);
    if (s)
        s[strcspn(s, "; \t")] = '\0';
    return s;
}

static void put_end(struct req *r)
{
    struct mbody *b = req_state(r);
    struct route rt_copy;
    const struct route *rt = &rt_copy;
    struct parsed *p = NULL;
    struct digest ref, d;
    json_error_t jerr;
    json_t *root = NULL;
    char detail[512] = "";
    int is_digest, rc;

    memcpy(&rt_copy, req_route(r), sizeof(rt_copy));
    parse_reference(rt->ref, &ref, &is_digest);
    root = json_loadb(b->buf ? b->buf : "", b->len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(detail, sizeof(detail), "invalid JSON at line %d: %s", jerr.line, jerr.text);
        rc = REG_E_MANIFEST_INVALID;
        goto out;
    }
    p = malloc(sizeof(*p));
    rc = p ? parse_manifest(root, bare_content_type(r), p, detail, sizeof(detail)) : REG_E_NOMEM;
    if (rc)
        goto out;
    digest_of(is_digest ? ref.algo : DIGEST_SHA256, b->buf, b->len, &d);
    if (is_digest && strcmp(d.str, ref.str) != 0) {
        snprintf(detail, sizeof(detail), "the body's digest is %s", d.str);
        rc = REG_E_DIGEST_INVALID;
        goto out;
    }
    rc = store(r, rt, p, &d, is_digest ? NULL : rt->ref, b->buf, b->len, detail, sizeof(detail));
    if (rc)
        goto out;
    req_set_header(r, "Location", req_printf(r, "/v2/%s/manifests/%s", rt->name, d.str));
    req_set_header(r, "Docker-Content-Digest", d.str);
    if (p->subject)
        req_set_header(r, "OCI-Subject", p->subject);
    req_reply(r, 201);
out:
    if (rc)
        api_error(r, rc, detail[0] ? detail : NULL);
    free(p);
    json_decref(root);
}

/* Resolve a tag or digest to the manifest's digest, in t. */
static int resolve(struct index_txn *t, const struct route *rt, char *digest, size_t size,
                   struct index_manifest *m)
{
    struct digest d;
    int is_digest, rc = parse_reference(rt->ref, &d, &is_digest);

    if (rc)
        return rc;
    if (is_digest)
        snprintf(digest, size, "%s", d.str);
    else if ((rc = index_get_tag(t, rt->name, rt->ref, digest, size)) != REG_OK)
        return rc;
    return index_get_manifest(t, rt->name, digest, m);
}

static int get_begin(struct req *r, const struct route *rt)
{
    struct registry *reg = req_registry(r);
    struct index_txn *t = NULL;
    struct index_manifest m;
    char digest[DIGEST_STR_MAX];
    const void *data;
    size_t len;
    int rc = index_begin(reg->ix, 0, &t);

    if (rc)
        return rc;
    rc = resolve(t, rt, digest, sizeof(digest), &m);
    /* A reference that is neither a tag nor a digest names no manifest
     * (what the conformance suite and Distribution answer). */
    if (rc == REG_E_TAG_INVALID || rc == REG_E_DIGEST_INVALID)
        rc = REG_E_MANIFEST_UNKNOWN;
    if (!rc)
        rc = index_get_manifest_data(t, digest, &data, &len);
    if (!rc) {
        req_set_header(r, "Docker-Content-Digest", digest);
        req_set_header(r, "ETag", req_printf(r, "\"%s\"", digest));
        /* The bytes are LMDB's until the txn ends: the reply copies them. */
        req_reply_buf(r, 200, m.media_type, data, len);
    }
    index_abort(t);
    return rc;
}

static int delete_begin(struct req *r, const struct route *rt)
{
    struct registry *reg = req_registry(r);
    struct index_txn *t = NULL;
    char user[DIGEST_STR_MAX + 16] = "";
    struct digest d;
    int is_digest, rc;

    if (!reg->delete_enabled)
        return REG_E_UNSUPPORTED;
    rc = parse_reference(rt->ref, &d, &is_digest);
    if (rc)
        return REG_E_MANIFEST_UNKNOWN; /* an invalid reference names nothing */
    rc = index_begin(reg->ix, INDEX_WRITE_FREEING, &t);
    if (rc)
        return rc;
    if (is_digest) {
        /* A child of an index in this repository stays while the index does. */
        rc = index_in_use(t, rt->name, d.str, user, sizeof(user));
        if (!rc)
            rc = index_delete_manifest(t, rt->name, d.str);
    } else {
        rc = index_del_tag(t, rt->name, rt->ref);
    }
    rc = index_end(t, rc);
    if (rc == REG_E_IN_USE) {
        api_error(r, rc,
                  req_printf(r, "manifest %s is used by index %s in %s; delete that first", d.str,
                             user, rt->name));
        return REG_OK;
    }
    if (rc)
        return rc;
    req_reply(r, 202);
    return REG_OK;
}

const struct handler api_manifest_put = {put_begin, put_body, put_end};
const struct handler api_manifest_get = {get_begin, NULL, NULL};
const struct handler api_manifest_delete = {delete_begin, NULL, NULL};
