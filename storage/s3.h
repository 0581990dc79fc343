/* A small S3 client on libcurl: the requests the S3 blob-store backend
 * needs, signed with AWS Signature V4 by libcurl itself (CURLOPT_AWS_SIGV4,
 * payload UNSIGNED-PAYLOAD). Bodies stream: uploads read from a file
 * descriptor (so a retry can send them again), downloads go to a callback;
 * nothing is buffered whole except S3's own XML replies (capped).
 *
 * Keys given to and handed back by these functions are relative to the
 * configured prefix. Errors: REG_E_NOT_FOUND for a missing key, bucket or
 * multipart upload; REG_E_CONFIG when S3 refuses our credentials or the
 * bucket; REG_E_IO for anything else once retries (timeouts, 5xx,
 * 503 SlowDown) are spent. Every function is safe to call from several
 * threads at once: each request borrows a curl handle from a small pool,
 * whose connections stay open between requests. */
#ifndef REG_S3_H
#define REG_S3_H

#include <stddef.h>
#include <stdint.h>

#define S3_ETAG_MAX 80       /* an ETag with its quotes, and a NUL */
#define S3_UPLOAD_ID_MAX 256 /* a multipart upload id and a NUL */

struct s3_config {
    char endpoint[512];   /* scheme://host[:port], no trailing slash */
    char region[64];      /* signing region ("us-east-1", RGW: its zonegroup) */
    char bucket[64];      /* bucket name */
    char prefix[256];     /* key prefix (ends with '/' or is empty) */
    char access_key[128]; /* credentials */
    char secret_key[128];
    int path_style; /* endpoint/bucket/key rather than bucket.host/key */
};

struct s3;

/* A client for cfg (copied). REG_E_CONFIG for an unusable endpoint. */
int s3_new(const struct s3_config *cfg, struct s3 **out);
void s3_free(struct s3 *s);

/* Receives a GET's body in pieces; anything but REG_OK stops the transfer
 * and is returned by s3_get. */
typedef int (*s3_sink_fn)(void *arg, const void *data, size_t len);

/* HEAD the bucket: REG_OK when it is there and our credentials reach it. */
int s3_bucket_check(struct s3 *s);
/* Create the bucket (for tests and set-up); already ours is fine. */
int s3_bucket_create(struct s3 *s);

/* PUT key from len bytes of fd at off (read with pread). */
int s3_put(struct s3 *s, const char *key, int fd, uint64_t off, uint64_t len);
/* GET len bytes of key from off (len 0: to the end) into sink. */
int s3_get(struct s3 *s, const char *key, uint64_t off, uint64_t len, s3_sink_fn sink, void *arg);
/* A GET kept open across reads, for a reader that pulls (a blob sent as
 * the client takes it): open starts the request for len bytes of key from
 * off (len 0: to the end) and waits for its status (REG_E_NOT_FOUND,
 * REG_E_RANGE); each read hands out what has arrived, at least one byte,
 * waiting for it when nothing has (*n 0: the end). A connection that fails
 * mid-way is asked again for the rest, as a ranged GET. One thread at a
 * time per stream. */
struct s3_stream;
int s3_stream_open(struct s3 *s, const char *key, uint64_t off, uint64_t len,
                   struct s3_stream **out);
int s3_stream_read(struct s3_stream *st, void *buf, size_t max, size_t *n);
void s3_stream_close(struct s3_stream *st);
/* A presigned URL that GETs key without credentials for expires seconds
 * (SigV4 query signing); malloc'd, the caller frees. */
int s3_presign_get(struct s3 *s, const char *key, unsigned expires, char **url);
/* The size of key. */
int s3_head(struct s3 *s, const char *key, uint64_t *size);
/* DELETE key; absent is not an error. */
int s3_delete(struct s3 *s, const char *key);
/* Server-side copy of src to dst (objects up to 5 GiB). */
int s3_copy(struct s3 *s, const char *src, const char *dst);
/* Every key under prefix (ListObjectsV2, page after page). */
typedef int (*s3_key_fn)(void *arg, const char *key, uint64_t size);
int s3_list(struct s3 *s, const char *prefix, s3_key_fn fn, void *arg);

/* ---- multipart uploads ------------------------------------------------------ */

struct s3_part {
    int number;             /* 1..10000 */
    uint64_t size;          /* bytes */
    char etag[S3_ETAG_MAX]; /* as S3 returned it, quotes included */
};

/* Start a multipart upload of key; id gets its upload id. */
int s3_mpu_create(struct s3 *s, const char *key, char id[S3_UPLOAD_ID_MAX]);
/* Upload part number from len bytes of fd at off; etag gets its ETag. */
int s3_mpu_part(struct s3 *s, const char *key, const char *id, int number, int fd, uint64_t off,
                uint64_t len, char etag[S3_ETAG_MAX]);
/* Part number as a server-side copy of bytes [off, off+len) of object src. */
int s3_mpu_part_copy(struct s3 *s, const char *key, const char *id, int number, const char *src,
                     uint64_t off, uint64_t len, char etag[S3_ETAG_MAX]);
/* Complete the upload from parts[0..n) (ascending numbers). */
int s3_mpu_complete(struct s3 *s, const char *key, const char *id, const struct s3_part *parts,
                    size_t n);
/* Abort the upload; an unknown one is not an error. */
int s3_mpu_abort(struct s3 *s, const char *key, const char *id);
/* The parts stored so far, ascending (*parts malloc'd, caller frees). */
int s3_mpu_parts(struct s3 *s, const char *key, const char *id, struct s3_part **parts, size_t *n);
/* Every multipart upload in progress under prefix. */
typedef int (*s3_upload_fn)(void *arg, const char *key, const char *id);
int s3_mpu_list(struct s3 *s, const char *prefix, s3_upload_fn fn, void *arg);

/* Requests sent since s3_new (all kinds, retries included): for tests and
 * benchmarks. */
uint64_t s3_requests(const struct s3 *s);

#endif
