/* The S3 blob-store backend (blobstore_s3.c): its settings. Opened through
 * blobstore_open_s3 (blobstore.h). */
#ifndef REG_BLOBSTORE_S3_H
#define REG_BLOBSTORE_S3_H

#include <stdint.h>

#include "s3.h"

/* Default multipart part size (docs/architecture.md has the measurement). */
#define BLOBSTORE_S3_PART_SIZE (16u << 20)

/* How long a presigned blob URL (redirect mode) stays valid: long enough for
 * the client to follow the redirect, short enough that a URL that leaks is
 * soon worthless. */
#define BLOBSTORE_S3_PRESIGN_SECONDS 300

struct blobstore_s3_config {
    struct s3_config s3;
    uint64_t part_size;    /* bytes per part before growth; 0: the default */
    unsigned growth_every; /* parts per part size; the size doubles after; 0: 1000 */
    int redirect;          /* answer blob GETs with a presigned URL */
};

#endif
