#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

static const char *const messages[REG_E__COUNT] = {
    [REG_OK] = "ok",
    [REG_E_NOMEM] = "out of memory",
    [REG_E_IO] = "i/o error",
    [REG_E_INDEX] = "index error",
    [REG_E_INTERNAL] = "internal error",
    [REG_E_CONFIG] = "invalid configuration",
    [REG_E_NOT_FOUND] = "no such endpoint",
    [REG_E_METHOD] = "method not allowed",
    [REG_E_NAME_INVALID] = "invalid repository name",
    [REG_E_NAME_UNKNOWN] = "repository name not known to registry",
    [REG_E_DIGEST_INVALID] = "provided digest did not match uploaded content",
    [REG_E_BLOB_UNKNOWN] = "blob unknown to registry",
    [REG_E_UPLOAD_UNKNOWN] = "blob upload unknown to registry",
    [REG_E_UPLOAD_INVALID] = "blob upload invalid",
    [REG_E_UPLOAD_RANGE] = "chunk does not continue the upload",
    [REG_E_UPLOAD_BUSY] = "upload is being written by another request",
    [REG_E_RANGE] = "requested range not satisfiable",
    [REG_E_SIZE_INVALID] = "provided length did not match content length",
    [REG_E_TOO_LARGE] = "request body too large",
    [REG_E_TAG_INVALID] = "invalid tag",
    [REG_E_MANIFEST_INVALID] = "manifest invalid",
    [REG_E_MANIFEST_UNKNOWN] = "manifest unknown",
    [REG_E_MANIFEST_BLOB_UNKNOWN] = "manifest references a blob unknown to the repository",
    [REG_E_UNSUPPORTED] = "the operation is unsupported",
    [REG_E_UNAUTHORIZED] = "authentication required",
    [REG_E_DENIED] = "requested access to the resource is denied",
    [REG_E_TOOMANY] = "too many requests",
    [REG_E_PAGINATION] = "the n parameter must be a non-negative integer",
    [REG_E_NOSPC] = "storage full: no space left on the disk that holds the registry's data",
    [REG_E_INDEX_FULL] = "storage full: the metadata index reached its index_max_size",
    [REG_E_IN_USE] = "the operation is unsupported: content is in use",
    [REG_E_BAD_REQUEST] = "malformed HTTP request",
    [REG_E_NOT_IMPLEMENTED] = "not implemented",
    [REG_E_READ_ONLY] = "registry is in read-only mode",
    [REG_E_UPSTREAM] = "the upstream registry is unavailable",
    [REG_E_MIRRORED] = "repository is a read-only mirror of an upstream registry",
    [REG_E_PENDING] = "waiting for data on its way",
};

const char *reg_strerror(int err)
{
    if (err < 0 || err >= REG_E__COUNT || !messages[err])
        return "unknown error";
    return messages[err];
}

int reg_errno(int e)
{
    return (e == ENOSPC || e == EDQUOT) ? REG_E_NOSPC : REG_E_IO;
}

/* Long enough for two digests and a repository name. */
#define DETAIL_MAX 512

static _Thread_local char detail[DETAIL_MAX];

void reg_detail_set(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
}

void reg_detail_clear(void)
{
    detail[0] = '\0';
}

const char *reg_detail(void)
{
    return detail[0] ? detail : NULL;
}
