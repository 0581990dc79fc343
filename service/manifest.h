/* Manifest validation: what a manifest must be to be stored (image-spec
 * manifest.md and image-index.md, Docker schema 2), and what the registry
 * learns from it: its type, artifactType, subject and the digests it
 * references. No storage here: service.c checks the references and stores. */
#ifndef REG_MANIFEST_H
#define REG_MANIFEST_H

#include <stddef.h>

#include <jansson.h>

#define MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define MT_DOCKER_V1 "application/vnd.docker.distribution.manifest.v1"

/* Descriptors a manifest may list. */
#define MANIFEST_REFS_MAX 4096

struct manifest_info {
    const char *media_type;
    const char *artifact_type; /* explicit artifactType or config mediaType, or NULL */
    const char *subject;       /* subject digest or NULL */
    json_t *annotations;       /* borrowed, or NULL */
    int is_index;
    size_t nblobs, nchildren;
    const char *blobs[MANIFEST_REFS_MAX];    /* config and layers */
    const char *children[MANIFEST_REFS_MAX]; /* manifests of an index */
    int skip[MANIFEST_REFS_MAX];             /* non-distributable layer: need not be here */
};

/* Validate root, the manifest's JSON; content_type is the client's
 * Content-Type without parameters (NULL: none). The strings in out borrow
 * from root. REG_E_MANIFEST_INVALID with reg_detail() saying why. */
int manifest_parse(json_t *root, const char *content_type, struct manifest_info *out);

/* The descriptor the referrers API lists for a manifest of size bytes:
 * JSON text, malloc'd (the caller frees it); NULL when out of memory. */
char *manifest_descriptor(const struct manifest_info *m, const char *digest, size_t size);

#endif
