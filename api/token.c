/* The built-in token service: GET /token (the Docker token flow, with
 * Basic credentials or anonymous) and POST /token (the OAuth2 password and
 * refresh_token grants). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../auth/auth.h"
#include "../common/err.h"
#include "api.h"

#define MAX_SCOPES 16
#define FORM_MAX 16384

static void answer(struct req *r, int rc, const struct auth_identity *id, const char *service,
                   const char *const *scopes, size_t n, int refresh, int oauth)
{
    struct auth *a = req_registry(r)->auth;
    char *json = NULL;

    if (!rc)
        rc = auth_token_response(a, id, service, scopes, n, refresh, oauth, &json);
    if (rc == REG_E_UNSUPPORTED)
        rc = REG_E_NOT_FOUND; /* no built-in token service here */
    if (rc == REG_E_UNAUTHORIZED)
        req_set_header(r, "WWW-Authenticate", "Basic realm=\"registry token service\"");
    if (rc == REG_E_TOOMANY)
        req_set_header(r, "Retry-After", AUTH_RETRY_AFTER);
    if (rc) {
        api_error(r, rc, NULL);
        return;
    }
    req_set_header(r, "Cache-Control", "no-store");
    req_reply_buf(r, 200, "application/json", json, strlen(json));
    free(json);
}

static int get_begin(struct req *r, const struct route *rt)
{
    struct auth *a = req_registry(r)->auth;
    const char *scopes[MAX_SCOPES], *h = req_header(r, "Authorization");
    const char *offline = req_query(r, "offline_token");
    struct auth_identity id;
    size_t n = req_query_all(r, "scope", scopes, MAX_SCOPES);
    int rc = REG_OK;

    (void)rt;
    memset(&id, 0, sizeof(id));
    if (auth_mode(a) != AUTH_TOKEN)
        return REG_E_NOT_FOUND;
    if (h)
        rc = auth_basic_login(a, h, req_client(r), &id);
    answer(r, rc, &id, req_query(r, "service"), scopes, n, offline && !strcmp(offline, "true"), 0);
    auth_identity_clear(&id);
    return REG_OK;
}

struct form {
    char *buf;
    size_t len;
};

static int post_begin(struct req *r, const struct route *rt)
{
    struct form *f = req_alloc(r, sizeof(*f));

    (void)rt;
    if (auth_mode(req_registry(r)->auth) != AUTH_TOKEN)
        return REG_E_NOT_FOUND;
    if (!f)
        return REG_E_NOMEM;
    f->buf = req_alloc(r, FORM_MAX + 1);
    f->len = 0;
    if (!f->buf)
        return REG_E_NOMEM;
    req_set_state(r, f, NULL);
    return REG_OK;
}

static int post_body(struct req *r, const char *data, size_t len)
{
    struct form *f = req_state(r);

    if (len > FORM_MAX - f->len)
        return REG_E_TOO_LARGE;
    memcpy(f->buf + f->len, data, len);
    f->len += len;
    return REG_OK;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decode application/x-www-form-urlencoded in place: "k=v&k=v". */
static size_t form_parse(char *s, const char **keys, const char **vals, size_t max)
{
    size_t n = 0;
    char *save = NULL, *pair;

    for (pair = strtok_r(s, "&", &save); pair && n < max; pair = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(pair, '='), *p, *o;

        if (!eq)
            continue;
        *eq = '\0';
        for (p = o = eq + 1; *p; p++) {
            if (*p == '+') {
                *o++ = ' ';
            } else if (*p == '%' && hexval(p[1]) >= 0 && hexval(p[2]) >= 0) {
                *o++ = (char)(hexval(p[1]) * 16 + hexval(p[2]));
                p += 2;
            } else {
                *o++ = *p;
            }
        }
        *o = '\0';
        keys[n] = pair;
        vals[n] = eq + 1;
        n++;
    }
    return n;
}

static const char *form_get(const char **keys, const char **vals, size_t n, const char *k)
{
    size_t i;

    for (i = 0; i < n; i++)
        if (!strcmp(keys[i], k))
            return vals[i];
    return NULL;
}

static void post_end(struct req *r)
{
    struct auth *a = req_registry(r)->auth;
    struct form *f = req_state(r);
    const char *keys[32], *vals[32], *grant, *scope;
    struct auth_identity id;
    size_t n;
    int rc = REG_E_UNAUTHORIZED;

    memset(&id, 0, sizeof(id));
    f->buf[f->len] = '\0';
    n = form_parse(f->buf, keys, vals, 32);
    grant = form_get(keys, vals, n, "grant_type");
    scope = form_get(keys, vals, n, "scope");
    if (grant && !strcmp(grant, "password")) {
        const char *user = form_get(keys, vals, n, "username");
        const char *pass = form_get(keys, vals, n, "password");

        if (user && pass) {
            rc = auth_login(a, user, pass, req_client(r));
            if (!rc) {
                id.authenticated = 1;
                snprintf(id.user, sizeof(id.user), "%s", user);
            }
        }
    } else if (grant && !strcmp(grant, "refresh_token")) {
        const char *tok = form_get(keys, vals, n, "refresh_token");

        if (tok)
            rc = auth_refresh_identity(a, tok, req_client(r), &id);
    } else {
        api_error(r, REG_E_UNSUPPORTED, "grant_type must be password or refresh_token");
        return;
    }
    {
        const char *access_type = form_get(keys, vals, n, "access_type");

        answer(r, rc, &id, form_get(keys, vals, n, "service"), scope ? &scope : NULL, scope ? 1 : 0,
               access_type && !strcmp(access_type, "offline"), 1);
    }
    auth_identity_clear(&id);
}

const struct handler api_token_get = {get_begin, NULL, NULL};
const struct handler api_token_post = {post_begin, post_body, post_end};
