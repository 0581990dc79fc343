/* Manifest validation (manifest.h). */
#include "manifest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/err.h"
#include "../storage/digest.h"

static int known_type(const char *t)
{
    return t && (!strcmp(t, MT_OCI_MANIFEST) || !strcmp(t, MT_OCI_INDEX) ||
                 !strcmp(t, MT_DOCKER_MANIFEST) || !strcmp(t, MT_DOCKER_LIST));
}

static int fail(const char *msg, const char *what)
{
    reg_detail_set("%s%s%s", msg, what ? ": " : "", what ? what : "");
    return REG_E_MANIFEST_INVALID;
}

/* annotations, where present, map strings to strings (image-spec
 * annotations.md): the referrers API serves them to clients that expect
 * exactly that. */
static int check_annotations(json_t *a, const char *where)
{
    const char *key;
    json_t *v;

    if (!a)
        return REG_OK;
    if (!json_is_object(a))
        return fail("annotations must be an object", where);
    json_object_foreach(a, key, v)
    {
        if (!json_is_string(v))
            return fail("annotation values must be strings", key);
    }
    return REG_OK;
}

/* A descriptor: mediaType, a digest we support, a non-negative size,
 * string annotations. */
static int check_descriptor(json_t *d, const char *where, const char **digest,
                            const char **media_type)
{
    json_t *mt = json_object_get(d, "mediaType"), *dg = json_object_get(d, "digest"),
           *sz = json_object_get(d, "size");
    struct digest tmp;

    if (!json_is_object(d))
        return fail("descriptor is not an object", where);
    if (!json_is_string(mt))
        return fail("descriptor has no mediaType", where);
    if (!json_is_string(dg) ||
        digest_parse(json_string_value(dg), json_string_length(dg), &tmp) != REG_OK)
        return fail("descriptor digest is missing or invalid", where);
    if (!json_is_integer(sz) || json_integer_value(sz) < 0)
        return fail("descriptor size is missing or negative", where);
    if (check_annotations(json_object_get(d, "annotations"), where))
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

int manifest_parse(json_t *root, const char *content_type, struct manifest_info *p)
{
    json_t *sv = json_object_get(root, "schemaVersion"), *mt = json_object_get(root, "mediaType");
    json_t *at = json_object_get(root, "artifactType"), *subj = json_object_get(root, "subject");
    const char *type = NULL, *dg, *dmt;
    size_t i;
    int rc;

    memset(p, 0, sizeof(*p));
    if (!json_is_object(root))
        return fail("manifest is not a JSON object", NULL);
    if ((json_is_integer(sv) && json_integer_value(sv) == 1) ||
        (content_type && !strncmp(content_type, MT_DOCKER_V1, strlen(MT_DOCKER_V1))) ||
        (json_is_string(mt) && !strncmp(json_string_value(mt), MT_DOCKER_V1, strlen(MT_DOCKER_V1))))
        return fail("schema 1 manifests are not supported; push a schema 2 or OCI manifest", NULL);
    if (!json_is_integer(sv) || json_integer_value(sv) != 2)
        return fail("schemaVersion must be 2", NULL);
    if (mt && !json_is_string(mt))
        return fail("mediaType must be a string", NULL);
    if (mt)
        type = json_string_value(mt);
    if (type && known_type(content_type) && strcmp(type, content_type) != 0)
        return fail("Content-Type does not match the manifest's mediaType", type);
    if (!type)
        type = content_type;
    if (!known_type(type))
        return fail("unknown or missing manifest mediaType", type);
    p->media_type = type;
    p->is_index = !strcmp(type, MT_OCI_INDEX) || !strcmp(type, MT_DOCKER_LIST);
    if (at && !json_is_string(at))
        return fail("artifactType must be a string", NULL);
    /* An empty artifactType counts as missing (the config's type applies). */
    p->artifact_type = at && json_string_length(at) ? json_string_value(at) : NULL;
    p->annotations = json_object_get(root, "annotations");
    rc = check_annotations(p->annotations, NULL);
    if (rc)
        return rc;
    if (subj) {
        rc = check_descriptor(subj, "subject", &p->subject, &dmt);
        if (rc)
            return rc;
    }
    if (p->is_index) {
        json_t *ms = json_object_get(root, "manifests"), *m;

        if (!json_is_array(ms))
            return fail("an index needs a manifests array", NULL);
        if (json_array_size(ms) > MANIFEST_REFS_MAX)
            return fail("too many manifests", NULL);
        json_array_foreach(ms, i, m)
        {
            rc = check_descriptor(m, "manifests", &dg, &dmt);
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
            return fail("an image manifest needs a config descriptor", NULL);
        rc = check_descriptor(cfg, "config", &dg, &dmt);
        if (rc)
            return rc;
        p->blobs[p->nblobs++] = dg;
        if (!p->artifact_type)
            p->artifact_type = dmt;
        if (!json_is_array(layers))
            return fail("an image manifest needs a layers array", NULL);
        if (json_array_size(layers) >= MANIFEST_REFS_MAX)
            return fail("too many layers", NULL);
        json_array_foreach(layers, i, l)
        {
            rc = check_descriptor(l, "layers", &dg, &dmt);
            if (rc)
                return rc;
            p->skip[p->nblobs] = non_distributable(dmt);
            p->blobs[p->nblobs++] = dg;
        }
    }
    return REG_OK;
}

/* The descriptor the referrers API lists for this manifest. */
char *manifest_descriptor(const struct manifest_info *p, const char *digest, size_t size)
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
