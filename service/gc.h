/* Garbage collection: online and exact, from the reference counts the
 * index keeps, so it never walks manifests to decide what a blob is worth.
 *
 * A run removes, in this order: cached repositories nobody pulls (with
 * evict_after, evict.h), untagged manifests nothing needs (only with
 * untagged_delete), blobs no manifest references, repositories left empty,
 * idle upload sessions, and files that no index entry names (crash
 * leftovers). Whatever a client pushed or mounted within the grace period
 * stays, so that a layer pushed just before its manifest is safe. Every
 * removal re-checks its condition in the write transaction that makes it,
 * under the blob store's exclusive lock (blobstore.h): a push racing GC
 * either keeps its blob or gets a clean error it can retry. */
#ifndef REG_GC_H
#define REG_GC_H

#include <stddef.h>
#include <stdint.h>

#include "../storage/blobstore.h"
#include "../storage/index.h"
#include "uploads.h"

struct evict;

struct gc_opts {
    int64_t grace;       /* seconds since the last push or mount before removal */
    int64_t upload_ttl;  /* seconds an upload session may stay idle */
    int untagged_delete; /* remove manifests no tag, index or referrer needs */
    int dry_run;         /* count what would go, remove nothing */
    struct evict *evict; /* first evict idle cached repositories (evict.h); NULL: none */
};

struct gc_stats {
    uint64_t manifests;    /* manifests removed */
    uint64_t blobs;        /* blobs removed */
    uint64_t blob_bytes;   /* their bytes */
    uint64_t repos;        /* empty repositories dropped from the catalog */
    uint64_t orphans;      /* blob files no index entry named */
    uint64_t orphan_bytes; /* their bytes */
    struct uploads_swept uploads;
    uint64_t evicted;           /* cached repositories evicted (evict.h) */
    uint64_t evicted_manifests; /* their manifests */
    double seconds;             /* how long the run took */
    int skipped;                /* a backup holds the root: nothing was done */
};

/* One run over the whole store. Safe beside a serving registry in the same
 * process; another process must not write the root meanwhile (the root
 * lock). root is the data directory (for the lock a backup holds). */
int gc_run(const char *root, struct blobstore *bs, struct index *ix, struct uploads *us,
           const struct gc_opts *o, struct gc_stats *out);

/* Keep GC from removing files while a backup copies them: returns a
 * descriptor that holds it off until gc_resume (-1 on failure). Waits for a
 * run in progress to finish. Works across processes. */
int gc_pause(const char *root);
void gc_resume(int fd);

/* One line of what a run freed (or, dry, would free). */
void gc_format(const struct gc_stats *s, int dry, char *buf, size_t size);

#endif
