/* One error type for every module. 0 is success; api/errors.c maps each
 * value to an HTTP status and an OCI error code. Nothing below api/ knows
 * about HTTP. */
#ifndef REG_ERR_H
#define REG_ERR_H

enum reg_err {
    REG_OK = 0,
    REG_E_NOMEM,                 /* allocation failed */
    REG_E_IO,                    /* filesystem error */
    REG_E_INDEX,                 /* LMDB error */
    REG_E_INTERNAL,              /* a bug or an impossible state */
    REG_E_CONFIG,                /* bad configuration */
    REG_E_NOT_FOUND,             /* no such endpoint */
    REG_E_METHOD,                /* method not allowed on this endpoint */
    REG_E_NAME_INVALID,          /* repository name fails the grammar */
    REG_E_NAME_UNKNOWN,          /* repository does not exist */
    REG_E_DIGEST_INVALID,        /* malformed, unsupported or mismatching digest */
    REG_E_BLOB_UNKNOWN,          /* blob not in this repository */
    REG_E_UPLOAD_UNKNOWN,        /* no such upload session */
    REG_E_UPLOAD_INVALID,        /* malformed upload request */
    REG_E_UPLOAD_RANGE,          /* chunk does not start at the current offset */
    REG_E_UPLOAD_BUSY,           /* another request is writing this upload */
    REG_E_RANGE,                 /* requested range not satisfiable */
    REG_E_SIZE_INVALID,          /* body length disagrees with what was declared */
    REG_E_TOO_LARGE,             /* body over a configured cap */
    REG_E_TAG_INVALID,           /* tag fails the grammar */
    REG_E_MANIFEST_INVALID,      /* manifest fails validation */
    REG_E_MANIFEST_UNKNOWN,      /* no such manifest */
    REG_E_MANIFEST_BLOB_UNKNOWN, /* manifest references an absent blob */
    REG_E_UNSUPPORTED,           /* operation disabled or not implemented */
    REG_E_UNAUTHORIZED,          /* authentication required */
    REG_E_DENIED,                /* authenticated but not allowed */
    REG_E_TOOMANY,               /* rate limited */
    REG_E_PAGINATION,            /* n is not a non-negative integer */
    REG_E_NOSPC,                 /* the disk holding the data root is full */
    REG_E_INDEX_FULL,            /* the index reached index_max_size */
    REG_E_IN_USE,                /* deleting it would break a manifest that uses it */
    REG_E_BAD_REQUEST,           /* malformed HTTP request (framing, target, Host) */
    REG_E_NOT_IMPLEMENTED,       /* an HTTP feature we do not implement (Transfer-Encoding) */
    REG_E_READ_ONLY,             /* a write while [storage] read_only is on */
    REG_E_UPSTREAM,              /* a proxied registry is unreachable or answered badly */
    REG_E_MIRRORED,              /* a write into a namespace mirrored from an upstream */
    REG_E_PENDING,               /* not yet: the caller is suspended until woken (svc_wait) */
    REG_E__COUNT
};

/* A short, static description for logs. Never NULL. */
const char *reg_strerror(int err);

/* The error for a failed system call's errno: REG_E_NOSPC for a full disk
 * or quota, REG_E_IO otherwise. */
int reg_errno(int e);

/* What went wrong, in words, beside the code an operation returns (in the
 * spirit of libgit2's git_error_set): the service layer says which blob a
 * manifest lacks, why it is invalid, which manifest uses a blob. One per
 * thread; reg_detail() is NULL when the last operation set none. An
 * operation that sets it clears it first (reg_detail_clear). */
void reg_detail_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void reg_detail_clear(void);
const char *reg_detail(void);

#endif
