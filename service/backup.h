/* Backup: a consistent copy of a live data root. LMDB's own copy of the
 * index (one read transaction: a snapshot), then every blob that copy
 * names, hard-linked when the destination is on the same file system.
 * GC is held off meanwhile (gc_pause), so no blob the snapshot needs is
 * removed before it is linked. Upload sessions are not part of a backup. */
#ifndef REG_BACKUP_H
#define REG_BACKUP_H

#include <stdint.h>

struct backup_result {
    uint64_t blobs;  /* blob files in the backup */
    uint64_t bytes;  /* their bytes */
    uint64_t copied; /* of those, copied rather than hard-linked */
    double seconds;
};

/* Copy the data root root (served or not) into dest, which must not exist
 * or be empty. */
int backup_run(const char *root, const char *dest, struct backup_result *res);

#endif
