/* GET/HEAD/DELETE /v2/NAME/blobs/DIGEST */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/err.h"
#include "../service/service.h"
#include "api.h"
#include "range.h"

/* Blob bodies the service hands out as a reader (the S3 backend): one
 * request to the store per GET, pulled as libmicrohttpd sends. A read
 * hands out what has arrived (S3 delivers at most 128 KiB at a time), so a
 * larger buffer only holds more of the send_buffers budget: 256 KiB and
 * 1 MiB measured the same on RGW, and 256 KiB lets four times as many
 * pulls run before the budget says 429. */
#define STREAM_BLOCK ((size_t)256 << 10)

struct blob_stream {
    struct svc_blob_reader *rd;
    uint64_t pos;      /* offset in the body of the next byte */
    struct svc_wait w; /* for bytes the cache is still fetching */
};

static long blob_stream_read(void *arg, uint64_t pos, char *buf, size_t max)
{
    struct blob_stream *bs = arg;
    size_t n = 0;
    int rc;

    /* libmicrohttpd asks in order; anything else would need a new read. */
    if (pos != bs->pos)
        return REQ_STREAM_ERROR;
    rc = svc_blob_reader_read(bs->rd, buf, max, &n, &bs->w);
    if (rc == REG_E_PENDING)
        return REQ_STREAM_WAIT;
    if (rc)
        return REQ_STREAM_ERROR;
    if (n == 0)
        return REQ_STREAM_END;
    bs->pos += n;
    return (long)n;
}

static void blob_stream_done(void *arg)
{
    struct blob_stream *bs = arg;

    svc_blob_reader_close(bs->rd);
    free(bs);
}

static int blob_stream_reply(struct req *r, struct svc_blob *b, const struct digest *d,
                             unsigned status, uint64_t off, uint64_t len)
{
    struct blob_stream *bs = NULL;
    int rc = REG_OK;

    if (req_is_head(r)) /* from the index alone */
        req_reply_head(r, status, "application/octet-stream", len);
    else if (len == 0) /* the empty blob: nothing to ask the store for */
        req_reply_buf(r, status, "application/octet-stream", "", 0);
    else if (!(bs = calloc(1, sizeof(*bs))))
        rc = REG_E_NOMEM;
    if (bs) {
        api_wait_init(&bs->w, r);
        rc = svc_blob_reader_open(req_registry(r)->svc, b, d, off, len, &bs->rd);
    }
    svc_blob_close(b); /* what the reader did not take */
    if (!bs)
        return rc;
    if (!rc)
        rc = req_reply_stream(r, status, "application/octet-stream", len,
                              len < STREAM_BLOCK ? (size_t)len : STREAM_BLOCK, blob_stream_read, bs,
                              blob_stream_done);
    if (rc) {
        blob_stream_done(bs);
        return rc;
    }
    return REG_OK;
}

static int blob_get_begin(struct req *r, const struct route *rt)
{
    struct service *svc = req_registry(r)->svc;
    struct svc_wait *w = api_begin_wait(r);
    struct svc_blob b;
    struct digest d;
    uint64_t off = 0, len;
    char buf[96];
    int rc, partial;

    rc = digest_parse(rt->ref, strlen(rt->ref), &d);
    if (rc)
        return rc;
    if (!w)
        return REG_E_NOMEM;
    /* A HEAD is answered here, from the index: never a redirect. */
    rc = svc_blob_open(svc, rt->name, &d, !req_is_head(r), w, &b);
    if (rc == REG_E_PENDING)
        return REG_OK; /* begin runs again once the upstream has answered */
    if (rc == REG_E_UPSTREAM || rc == REG_E_TOOMANY) { /* the detail says what, or how many */
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    if (rc)
        return rc;
    req_set_header(r, "Docker-Content-Digest", d.str);
    if (b.url) { /* a backend that serves the bytes itself */
        rc = req_set_header(r, "Location", b.url);
        svc_blob_close(&b);
        if (!rc)
            req_reply(r, 307);
        return rc;
    }
    len = b.size;
    req_set_header(r, "ETag", req_printf(r, "\"%s\"", d.str));
    req_set_header(r, "Accept-Ranges", "bytes");
    rc = range_parse(req_header(r, "Range"), b.size, &off, &len, &partial);
    if (rc == REG_E_RANGE) {
        svc_blob_close(&b);
        snprintf(buf, sizeof(buf), "bytes */%" PRIu64, b.size);
        req_set_header(r, "Content-Range", buf);
        return REG_E_RANGE;
    }
    if (partial) {
        snprintf(buf, sizeof(buf), "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, off, off + len - 1,
                 b.size);
        req_set_header(r, "Content-Range", buf);
    }
    if (b.stream)
        return blob_stream_reply(r, &b, &d, partial ? 206 : 200, off, len);
    req_reply_fd(r, partial ? 206 : 200, "application/octet-stream", b.fd, off, len);
    return REG_OK;
}

static int blob_delete_begin(struct req *r, const struct route *rt)
{
    struct service *svc = req_registry(r)->svc;
    struct digest d;
    int rc;

    if (!svc_delete_enabled(svc))
        return REG_E_UNSUPPORTED;
    rc = svc_writable(svc, rt->name);
    if (rc) {
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    rc = digest_parse(rt->ref, strlen(rt->ref), &d);
    if (rc)
        return rc;
    rc = svc_blob_delete(svc, rt->name, &d);
    if (rc == REG_E_IN_USE) {
        api_error(r, rc, reg_detail());
        return REG_OK;
    }
    if (rc)
        return rc;
    /* Garbage collection removes the file once no manifest needs it. */
    req_set_header(r, "Docker-Content-Digest", d.str);
    req_reply(r, 202);
    return REG_OK;
}

const struct handler api_blob_get = {blob_get_begin, NULL, NULL};
const struct handler api_blob_delete = {blob_delete_begin, NULL, NULL};
