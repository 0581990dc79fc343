#include "httpc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

size_t httpc_on_data(char *ptr, size_t size, size_t n, void *user)
{
    struct httpc_buf *b = user;
    size_t add = size * n;
    char *p = realloc(b->p, b->len + add + 1);

    if (!p)
        return 0;
    memcpy(p + b->len, ptr, add);
    b->p = p;
    b->len += add;
    p[b->len] = '\0';
    return add;
}

size_t httpc_on_header(char *ptr, size_t size, size_t n, void *user)
{
    struct httpc_buf *b = user;

    if (size * n >= 5 && strncmp(ptr, "HTTP/", 5) == 0)
        b->len = 0;
    return httpc_on_data(ptr, size, n, user);
}

const char *httpc_header(const char *headers, const char *name, char *buf, size_t size)
{
    size_t nl = strlen(name);
    const char *p = headers;

    while (p && *p) {
        const char *eol = strstr(p, "\r\n");
        size_t ll = eol ? (size_t)(eol - p) : strlen(p);

        if (ll > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            size_t vl;

            while (*v == ' ' || *v == '\t')
                v++;
            vl = ll - (size_t)(v - p);
            if (vl >= size)
                vl = size - 1;
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            return buf;
        }
        p = eol ? eol + 2 : NULL;
    }
    return NULL;
}

const char *httpc_error_code(const char *body, size_t len, char *buf, size_t size)
{
    json_t *j = json_loadb(body, len, 0, NULL);
    const char *code = NULL;

    buf[0] = '\0';
    if (j && json_unpack(j, "{s:[{s:s}]}", "errors", "code", &code) == 0)
        snprintf(buf, size, "%s", code);
    json_decref(j);
    return buf;
}
