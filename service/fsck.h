/* fsck: check blobs, the index and the reference counts both ways.
 *
 * Every blob is rehashed against its name and size; every blob file must
 * have a record and every record a file; the reference counts are
 * recomputed from the manifest records; manifest bytes must hash to their
 * digest; tags must point at manifests of their repository; every upload
 * record must have its file. Each problem is printed with what to do.
 *
 * Without repair it only reads (a read transaction), so it may run beside a
 * live server. With repair the caller holds the data root (no server), and
 * what is safe is fixed: counts rewritten, orphan files removed, records of
 * missing or corrupt blobs dropped (naming the images this breaks), dangling
 * tags and broken upload records dropped. */
#ifndef REG_FSCK_H
#define REG_FSCK_H

#include <stdint.h>
#include <stdio.h>

#include "../storage/blobstore.h"
#include "../storage/index.h"

struct fsck_result {
    uint64_t problems;  /* found */
    uint64_t leftovers; /* what crashes leave by design (noted, GC removes it) */
    uint64_t repaired;  /* of those, fixed */
    uint64_t broken;    /* images left needing a blob or manifest that is gone */
    uint64_t blobs;     /* blobs rehashed */
    uint64_t bytes;     /* bytes rehashed */
    double seconds;     /* whole run */
    double hash_seconds;
};

/* Problems go to out, one block each; progress (when progress is set) to
 * stderr. */
int fsck_run(struct blobstore *bs, struct index *ix, int repair, int progress, FILE *out,
             struct fsck_result *res);

#endif
