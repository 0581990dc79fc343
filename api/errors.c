/* The one table from enum reg_err to HTTP status and OCI error code. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../common/err.h"
#include "../common/log.h"
#include "api.h"

struct err_map {
    unsigned status;
    const char *code;
};

static const struct err_map err_table[REG_E__COUNT] = {
    [REG_OK] = {200, "UNKNOWN"},
    [REG_E_NOMEM] = {500, "UNKNOWN"},
    [REG_E_IO] = {500, "UNKNOWN"},
    [REG_E_INDEX] = {500, "UNKNOWN"},
    [REG_E_INTERNAL] = {500, "UNKNOWN"},
    [REG_E_CONFIG] = {500, "UNKNOWN"},
    [REG_E_NOT_FOUND] = {404, "UNSUPPORTED"},
    [REG_E_METHOD] = {405, "UNSUPPORTED"},
    [REG_E_NAME_INVALID] = {400, "NAME_INVALID"},
    [REG_E_NAME_UNKNOWN] = {404, "NAME_UNKNOWN"},
    [REG_E_DIGEST_INVALID] = {400, "DIGEST_INVALID"},
    [REG_E_BLOB_UNKNOWN] = {404, "BLOB_UNKNOWN"},
    [REG_E_UPLOAD_UNKNOWN] = {404, "BLOB_UPLOAD_UNKNOWN"},
    [REG_E_UPLOAD_INVALID] = {400, "BLOB_UPLOAD_INVALID"},
    [REG_E_UPLOAD_RANGE] = {416, "BLOB_UPLOAD_INVALID"},
    [REG_E_UPLOAD_BUSY] = {416, "BLOB_UPLOAD_INVALID"},
    [REG_E_RANGE] = {416, "SIZE_INVALID"},
    [REG_E_SIZE_INVALID] = {400, "SIZE_INVALID"},
    [REG_E_TOO_LARGE] = {413, "SIZE_INVALID"},
    [REG_E_TAG_INVALID] = {400, "MANIFEST_INVALID"},
    [REG_E_MANIFEST_INVALID] = {400, "MANIFEST_INVALID"},
    [REG_E_MANIFEST_UNKNOWN] = {404, "MANIFEST_UNKNOWN"},
    [REG_E_MANIFEST_BLOB_UNKNOWN] = {400, "MANIFEST_BLOB_UNKNOWN"},
    [REG_E_UNSUPPORTED] = {405, "UNSUPPORTED"},
    [REG_E_UNAUTHORIZED] = {401, "UNAUTHORIZED"},
    [REG_E_DENIED] = {403, "DENIED"},
    [REG_E_TOOMANY] = {429, "TOOMANYREQUESTS"},
    [REG_E_PAGINATION] = {400, "UNSUPPORTED"},
    /* 5xx codes are free in the spec; the message says which store is full. */
    [REG_E_NOSPC] = {507, "UNKNOWN"},
    [REG_E_INDEX_FULL] = {507, "UNKNOWN"},
    [REG_E_IN_USE] = {405, "UNSUPPORTED"},
    [REG_E_BAD_REQUEST] = {400, "UNSUPPORTED"},
    [REG_E_NOT_IMPLEMENTED] = {501, "UNSUPPORTED"},
    [REG_E_READ_ONLY] = {405, "UNSUPPORTED"},
    [REG_E_UPSTREAM] = {502, "UNKNOWN"},
    [REG_E_MIRRORED] = {405, "UNSUPPORTED"},
    [REG_E_PENDING] = {500, "UNKNOWN"}, /* never answered: the request waits instead */
};

void api_error(struct req *r, int err, const char *detail)
{
    struct err_map m = {500, "UNKNOWN"};
    json_t *body;
    char *s = NULL;

    if (err > 0 && err < REG_E__COUNT && err_table[err].code)
        m = err_table[err];
    /* A 501 is the client's doing (an encoding we do not speak), not ours. */
    if (m.status >= 500 && m.status != 501)
        log_error("%s %s: %s%s%s", req_method(r), m.code, reg_strerror(err), detail ? ": " : "",
                  detail ? detail : "");
    body = json_pack("{s:[{s:s, s:s, s:s?}]}", "errors", "code", m.code, "message",
                     reg_strerror(err), "detail", detail);
    if (body)
        s = json_dumps(body, JSON_COMPACT);
    if (s)
        req_reply_buf(r, m.status, "application/json", s, strlen(s));
    else
        req_reply(r, m.status);
    free(s);
    json_decref(body);
}

static int is_alnum_lower(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* path-component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static int component_valid(const char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        if (!is_alnum_lower(s[i]))
            return 0;
        while (i < len && is_alnum_lower(s[i]))
            i++;
        if (i == len)
            return 1;
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < len && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < len && s[i] == '-')
                i++;
        } else {
            return 0;
        }
        if (i == len)
            return 0; /* a separator must be followed by alphanumerics */
    }
    return len > 0;
}

int api_name_valid(const char *s, size_t len)
{
    size_t start = 0, i;

    if (len == 0 || len > ROUTE_NAME_MAX)
        return 0;
    for (i = 0; i <= len; i++) {
        if (i == len || s[i] == '/') {
            if (!component_valid(s + start, i - start))
                return 0;
            start = i + 1;
        }
    }
    return 1;
}

int api_tag_valid(const char *s, size_t len)
{
    size_t i;

    if (len == 0 || len > 128)
        return 0;
    for (i = 0; i < len; i++) {
        char c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || (i > 0 && (c == '.' || c == '-'));

        if (!ok)
            return 0;
    }
    return 1;
}
