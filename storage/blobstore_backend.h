/* What a blob-store backend implements: one table of functions, in the
 * spirit of libgit2's git_odb_backend. The front end (blobstore.c) adds
 * what every backend shares (the commit/removal lock); tests/test_blobstore.c
 * is the suite every backend must pass. Only blobstore.c and the backends
 * include this. */
#ifndef REG_BLOBSTORE_BACKEND_H
#define REG_BLOBSTORE_BACKEND_H

#include "blobstore.h"

struct blobstore_backend;

/* Every backend's writer begins with this, so the front end can dispatch. */
struct blob_writer {
    const struct blobstore_backend *ops;
};

/* Every backend's reader begins with this; ops NULL: the front end's reader
 * over a descriptor from open_read (backends without reader_open). */
struct blob_reader {
    const struct blobstore_backend *ops;
};

/* be is the backend's own state, given back to every call. Semantics and
 * errors are those of the blobstore_* function of the same name. */
struct blobstore_backend {
    const char *name;
    void (*close)(void *be);
    const char *(*index_dir)(void *be);
    int (*open_read)(void *be, const struct digest *d, int *fd, char **url, uint64_t *size);
    int (*read)(void *be, const struct digest *d, uint64_t off, uint64_t len, blobstore_sink_fn fn,
                void *arg);
    /* Optional (NULL: the front end reads open_read's descriptor). */
    int (*reader_open)(void *be, const struct digest *d, uint64_t off, uint64_t len,
                       struct blob_reader **out);
    int (*reader_read)(struct blob_reader *r, void *buf, size_t max, size_t *n);
    void (*reader_close)(struct blob_reader *r);
    int (*size)(void *be, const struct digest *d, uint64_t *size);
    int (*remove)(void *be, const struct digest *d);
    int (*each)(void *be, blobstore_each_fn fn, void *arg);
    int (*writer_create)(void *be, const char *id, struct blob_writer **out);
    int (*writer_reopen)(void *be, const char *id, uint64_t keep, struct blob_writer **out);
    int (*append)(struct blob_writer *w, const void *data, size_t len);
    int (*truncate)(struct blob_writer *w, uint64_t size);
    int (*checkpoint)(struct blob_writer *w);
    int (*pread)(struct blob_writer *w, uint64_t off, void *buf, size_t len, size_t *n);
    int (*commit)(void *be, struct blob_writer *w, const struct digest *d);
    void (*writer_close)(struct blob_writer *w, int discard);
    int (*writer_remove)(void *be, const char *id, uint64_t *bytes);
    int (*writer_size)(void *be, const char *id, uint64_t *size);
    int (*each_writer)(void *be, blobstore_writer_fn fn, void *arg);
    int (*export)(void *be, void *dst, const struct digest *d, int *copied);
    int (*sync)(void *be);
};

/* The file backend: files under root. */
int blobstore_file_open(const char *root, const struct blobstore_backend **ops, void **be);

struct blobstore_s3_config;
/* The S3 backend: blobs in a bucket, session state and the index under root.
 * REG_E_CONFIG (logged) when the settings are unusable or the bucket cannot
 * be reached. */
int blobstore_s3_open(const char *root, const struct blobstore_s3_config *cfg,
                      const struct blobstore_backend **ops, void **be);
/* S3 requests the backend sent so far (tests, benchmarks). */
uint64_t blobstore_s3_requests(void *be);

#endif
