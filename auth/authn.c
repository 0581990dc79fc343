#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "../common/err.h"
#include "../common/log.h"
#include "auth.h"
#include "htpasswd.h"
#include "token.h"

/* Failed logins: after FAIL_MAX failures within FAIL_WINDOW seconds a
 * client is refused (429) for FAIL_BLOCK seconds. */
#define FAIL_SLOTS 256
#define FAIL_MAX 10
#define FAIL_WINDOW 60
#define FAIL_BLOCK 30

/* Verified bearer tokens, so that a client's next requests with the same
 * token skip the signature check: sha256(token) -> what it said. */
#define TOKEN_SLOTS 128

struct token_slot {
    unsigned char hash[32];
    long exp; /* 0: empty */
    char subject[256];
    char *access; /* the access claim as JSON text */
};

struct fail_slot {
    char client[64];
    unsigned fails;
    time_t window_start, blocked_until;
};

struct auth {
    enum auth_mode mode;
    char realm[512], service[256], issuer[256];
    long ttl, leeway;
    struct htpasswd *users;
    struct acl *acl;
    struct token_signer *signer;
    struct token_verifier *verifier;
    pthread_mutex_t lock;
    struct fail_slot fails[FAIL_SLOTS];
    struct token_slot tokens[TOKEN_SLOTS];
};

#define BAD(...) (snprintf(err, errsize, __VA_ARGS__), REG_E_CONFIG)

int auth_new(const struct auth_settings *s, struct auth **out, char *err, size_t errsize)
{
    struct auth *a = calloc(1, sizeof(*a));
    size_t i;
    int rc = REG_OK;

    *out = NULL;
    if (!a)
        return REG_E_NOMEM;
    pthread_mutex_init(&a->lock, NULL);
    a->mode = s->mode;
    snprintf(a->realm, sizeof(a->realm), "%s", s->realm ? s->realm : "");
    snprintf(a->service, sizeof(a->service), "%s", s->service);
    snprintf(a->issuer, sizeof(a->issuer), "%s", s->issuer);
    a->ttl = s->token_ttl;
    a->leeway = s->leeway;
    rc = acl_new(&a->acl);
    for (i = 0; !rc && i < s->nrules; i++)
        rc = acl_add_rule(a->acl, s->rules[i], err, errsize);
    for (i = 0; !rc && i < s->ngroups; i++) {
        const char *eq = strchr(s->groups[i], '=');
        char name[256];

        snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - s->groups[i]) : 0, s->groups[i]);
        rc = eq ? acl_add_group(a->acl, name, eq + 1, err, errsize) : REG_E_CONFIG;
    }
    if (rc || s->mode == AUTH_NONE)
        goto out;
    if (s->htpasswd && *s->htpasswd)
        rc = htpasswd_load(s->htpasswd, &a->users, err, errsize);
    else if (s->mode == AUTH_BASIC || !s->trust || !*s->trust)
        rc = BAD("[auth] htpasswd is required for mode %s",
                 s->mode == AUTH_BASIC ? "basic" : "token with the built-in token service");
    if (rc || s->mode != AUTH_TOKEN)
        goto out;
    rc = token_verifier_new(&a->verifier);
    if (!rc && s->key && *s->key) {
        rc = token_signer_load(s->key, &a->signer, err, errsize);
        if (!rc)
            rc = token_verifier_add_signer(a->verifier, a->signer);
    }
    if (!rc && s->trust && *s->trust)
        rc = token_verifier_add_pem(a->verifier, s->trust, err, errsize);
    if (!rc && !a->signer && !(s->trust && *s->trust))
        rc = BAD("[auth] mode token needs key (built-in token service) or trust (external "
                 "issuer)");
    if (!rc && !a->signer && !a->realm[0])
        rc = BAD("[auth] realm is required with an external token issuer");
out:
    if (rc) {
        auth_free(a);
        a = NULL;
    }
    *out = a;
    return rc;
}

void auth_free(struct auth *a)
{
    size_t i;

    if (!a)
        return;
    for (i = 0; i < TOKEN_SLOTS; i++)
        free(a->tokens[i].access);
    htpasswd_free(a->users);
    acl_free(a->acl);
    token_signer_free(a->signer);
    token_verifier_free(a->verifier);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

enum auth_mode auth_mode(const struct auth *a)
{
    return a->mode;
}

static struct fail_slot *slot_of(struct auth *a, const char *client)
{
    unsigned h = 5381;
    const char *p;

    for (p = client; *p; p++)
        h = h * 33 + (unsigned char)*p;
    return &a->fails[h % FAIL_SLOTS];
}

static int throttled(struct auth *a, const char *client)
{
    struct fail_slot *s;
    time_t now = time(NULL);
    int blocked;

    pthread_mutex_lock(&a->lock);
    s = slot_of(a, client);
    blocked = !strcmp(s->client, client) && s->blocked_until > now;
    pthread_mutex_unlock(&a->lock);
    return blocked;
}

static void note_failure(struct auth *a, const char *client)
{
    struct fail_slot *s;
    time_t now = time(NULL);

    pthread_mutex_lock(&a->lock);
    s = slot_of(a, client);
    if (strcmp(s->client, client) != 0 || now - s->window_start > FAIL_WINDOW) {
        snprintf(s->client, sizeof(s->client), "%s", client);
        s->fails = 0;
        s->window_start = now;
        s->blocked_until = 0;
    }
    if (++s->fails >= FAIL_MAX) {
        s->blocked_until = now + FAIL_BLOCK;
        log_warn("auth: %u failed logins from %s, refusing it for %d s", s->fails, client,
                 FAIL_BLOCK);
    }
    pthread_mutex_unlock(&a->lock);
}

int auth_login(struct auth *a, const char *user, const char *pass, const char *client)
{
    int rc;

    if (throttled(a, client))
        return REG_E_TOOMANY;
    rc = a->users ? htpasswd_verify(a->users, user, pass) : REG_E_UNAUTHORIZED;
    if (rc == REG_E_UNAUTHORIZED) {
        log_info("auth: failed login for user '%.64s' from %s", user, client);
        note_failure(a, client);
    }
    return rc;
}

/* "Basic base64(user:pass)" -> user, pass. */
static int parse_basic(const char *v, char *user, size_t usize, char *pass, size_t psize)
{
    unsigned char dec[1024];
    size_t len = strlen(v), pad = 0;
    const char *eq = strchr(v, '=');
    int n, rc = REG_E_UNAUTHORIZED;
    char *colon;

    if (len == 0 || len > 1300 || len % 4)
        return rc;
    /* Padding: at most two '=', and only at the very end. */
    if (eq) {
        pad = len - (size_t)(eq - v);
        if (pad > 2 || strspn(eq, "=") != pad)
            return rc;
    }
    n = EVP_DecodeBlock(dec, (const unsigned char *)v, (int)len);
    if (n < (int)pad + 1)
        goto out;
    n -= (int)pad; /* EVP_DecodeBlock counts padding as zero bytes */
    dec[n] = '\0';
    colon = memchr(dec, ':', (size_t)n);
    if (!colon || memchr(dec, '\0', (size_t)n) || (size_t)(colon - (char *)dec) >= usize ||
        strlen(colon + 1) >= psize)
        goto out;
    memcpy(user, dec, (size_t)(colon - (char *)dec));
    user[colon - (char *)dec] = '\0';
    memcpy(pass, colon + 1, strlen(colon + 1) + 1);
    rc = REG_OK;
out:
    OPENSSL_cleanse(dec, sizeof(dec));
    return rc;
}

static struct token_slot *token_slot(struct auth *a, const char *token, unsigned char *hash)
{
    unsigned idx;

    EVP_Digest(token, strlen(token), hash, NULL, EVP_sha256(), NULL);
    idx = ((unsigned)hash[0] << 8 | hash[1]) % TOKEN_SLOTS;
    return &a->tokens[idx];
}

/* A token verified before and not yet expired: fill id from the cache. */
static int cached_token(struct auth *a, const char *token, struct auth_identity *id)
{
    unsigned char hash[32];
    struct token_slot *s = token_slot(a, token, hash);
    int hit = 0;

    pthread_mutex_lock(&a->lock);
    if (s->exp && CRYPTO_memcmp(s->hash, hash, sizeof(hash)) == 0 &&
        time(NULL) - a->leeway <= s->exp) {
        hit = 1;
        id->has_token = 1;
        id->authenticated = s->subject[0] != '\0';
        snprintf(id->user, sizeof(id->user), "%s", s->subject);
        id->access = s->access ? json_loads(s->access, 0, NULL) : NULL;
    }
    pthread_mutex_unlock(&a->lock);
    return hit;
}

static void remember_token(struct auth *a, const char *token, const struct token_claims *c)
{
    unsigned char hash[32];
    struct token_slot *s = token_slot(a, token, hash);
    char *access = c->access ? json_dumps(c->access, JSON_COMPACT) : NULL;

    pthread_mutex_lock(&a->lock);
    free(s->access);
    memcpy(s->hash, hash, sizeof(hash));
    s->exp = c->exp;
    snprintf(s->subject, sizeof(s->subject), "%s", c->subject);
    s->access = access;
    pthread_mutex_unlock(&a->lock);
}

int auth_basic_login(struct auth *a, const char *authorization, const char *client,
                     struct auth_identity *id)
{
    char user[256], pass[512];
    int rc;

    memset(id, 0, sizeof(*id));
    if (throttled(a, client))
        return REG_E_TOOMANY;
    if (strncasecmp(authorization, "Basic ", 6) != 0) {
        note_failure(a, client);
        return REG_E_UNAUTHORIZED;
    }
    rc = parse_basic(authorization + 6, user, sizeof(user), pass, sizeof(pass));
    if (rc)
        note_failure(a, client);
    else
        rc = auth_login(a, user, pass, client);
    OPENSSL_cleanse(pass, sizeof(pass));
    if (rc)
        return rc;
    id->authenticated = 1;
    snprintf(id->user, sizeof(id->user), "%s", user);
    return REG_OK;
}

int auth_identify(struct auth *a, const char *authorization, const char *client,
                  struct auth_identity *id)
{
    struct token_claims claims;
    int rc;

    memset(id, 0, sizeof(*id));
    if (!authorization)
        return REG_OK; /* anonymous */
    if (!strncasecmp(authorization, "Bearer ", 7) && a->mode == AUTH_TOKEN) {
        /* A valid token cannot be guessed, so it passes even while its
         * address is throttled: an attacker sending junk from behind the
         * same NAT locks nobody out. Only failures are throttled. */
        if (cached_token(a, authorization + 7, id))
            return REG_OK;
        rc = token_verify(a->verifier, authorization + 7, a->issuer, a->service, a->leeway,
                          time(NULL), &claims);
        if (rc) {
            if (throttled(a, client))
                return REG_E_TOOMANY;
            note_failure(a, client);
            return rc;
        }
        remember_token(a, authorization + 7, &claims);
        id->has_token = 1;
        id->authenticated = claims.subject[0] != '\0';
        snprintf(id->user, sizeof(id->user), "%s", claims.subject);
        id->access = claims.access;
        return REG_OK;
    }
    if (throttled(a, client))
        return REG_E_TOOMANY;
    if (!strncasecmp(authorization, "Basic ", 6)) {
        /* Token mode wants tokens: a 401 sends the client to the token
         * service, where its Basic credentials are checked. */
        if (a->mode != AUTH_BASIC)
            return REG_E_UNAUTHORIZED;
        return auth_basic_login(a, authorization, client, id);
    }
    note_failure(a, client);
    return REG_E_UNAUTHORIZED;
}

void auth_identity_clear(struct auth_identity *id)
{
    json_decref(id->access);
    memset(id, 0, sizeof(*id));
}

/* Rights granted by a token's access claim. */
static unsigned token_rights(const json_t *access, const char *repo)
{
    unsigned mask = 0;
    size_t i, j;
    json_t *e, *act;

    json_array_foreach(access, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));
        const char *name = json_string_value(json_object_get(e, "name"));
        json_t *actions = json_object_get(e, "actions");

        if (!type || !name || !json_is_array(actions))
            continue;
        if (repo ? (strcmp(type, "repository") != 0 || strcmp(name, repo) != 0)
                 : (strcmp(type, "registry") != 0 || strcmp(name, "catalog") != 0))
            continue;
        json_array_foreach(actions, j, act)
        {
            const char *s = json_string_value(act);

            if (!s)
                continue;
            if (!repo)
                mask |= ACL_CATALOG;
            else
                mask |= acl_parse_actions(s, strlen(s)) & (ACL_PULL | ACL_PUSH | ACL_DELETE);
        }
    }
    return mask;
}

unsigned auth_rights(struct auth *a, const struct auth_identity *id, const char *repo)
{
    if (a->mode == AUTH_NONE)
        return ACL_ALL;
    if (id->has_token)
        return token_rights(id->access, repo);
    return acl_allowed(a->acl, id->authenticated ? id->user : NULL, repo);
}

static const char *action_words(unsigned actions)
{
    if (actions & ACL_DELETE)
        return "delete";
    if (actions & ACL_PUSH)
        return "pull,push";
    return "pull";
}

int auth_challenge(struct auth *a, const char *host, const char *scheme, const char *repo,
                   unsigned actions, int insufficient, char *buf, size_t size)
{
    char realm[600];
    int n;

    if (a->mode == AUTH_BASIC) {
        n = snprintf(buf, size, "Basic realm=\"%s\"", a->realm[0] ? a->realm : "registry");
        return n < 0 || (size_t)n >= size ? REG_E_INTERNAL : REG_OK;
    }
    if (a->realm[0])
        snprintf(realm, sizeof(realm), "%s", a->realm);
    else
        snprintf(realm, sizeof(realm), "%s://%s/token", scheme, host ? host : "localhost");
    n = snprintf(buf, size, "Bearer realm=\"%s\",service=\"%s\"", realm, a->service);
    if (n > 0 && (size_t)n < size && actions) {
        if (repo)
            n += snprintf(buf + n, size - (size_t)n, ",scope=\"repository:%s:%s\"", repo,
                          action_words(actions));
        else
            n += snprintf(buf + n, size - (size_t)n, ",scope=\"registry:catalog:*\"");
    }
    if (n > 0 && (size_t)n < size && insufficient)
        n += snprintf(buf + n, size - (size_t)n, ",error=\"insufficient_scope\"");
    return n < 0 || (size_t)n >= size ? REG_E_INTERNAL : REG_OK;
}

/* One scope "type:name:actions" (name may hold ':'), intersected with the
 * identity's rights, appended to access. */
static int grant_scope(struct auth *a, const struct auth_identity *id, const char *scope,
                       json_t *access)
{
    const char *c1 = strchr(scope, ':'), *c2 = strrchr(scope, ':');
    char type[32], name[512];
    unsigned want, have, bits[] = {ACL_PULL, ACL_PUSH, ACL_DELETE};
    const char *words[] = {"pull", "push", "delete"};
    json_t *actions;
    size_t i;

    if (!c1 || c1 == c2 || (size_t)(c1 - scope) >= sizeof(type) ||
        (size_t)(c2 - c1 - 1) >= sizeof(name))
        return REG_OK; /* not a scope we know: grant nothing for it */
    snprintf(type, sizeof(type), "%.*s", (int)(c1 - scope), scope);
    snprintf(name, sizeof(name), "%.*s", (int)(c2 - c1 - 1), c1 + 1);
    actions = json_array();
    if (!actions)
        return REG_E_NOMEM;
    if (!strcmp(type, "registry") && !strcmp(name, "catalog")) {
        if (acl_allowed(a->acl, id->authenticated ? id->user : NULL, NULL) & ACL_CATALOG)
            json_array_append_new(actions, json_string("*"));
    } else if (!strcmp(type, "repository")) {
        want = !strcmp(c2 + 1, "*") ? ACL_PULL | ACL_PUSH | ACL_DELETE
                                    : acl_parse_actions(c2 + 1, strlen(c2 + 1));
        have = acl_allowed(a->acl, id->authenticated ? id->user : NULL, name);
        for (i = 0; i < 3; i++)
            if (want & have & bits[i])
                json_array_append_new(actions, json_string(words[i]));
    }
    if (json_array_size(actions) == 0) {
        json_decref(actions);
        return REG_OK;
    }
    return json_array_append_new(
               access, json_pack("{s:s, s:s, s:o}", "type", type, "name", name, "actions", actions))
               ? REG_E_NOMEM
               : REG_OK;
}

int auth_token_response(struct auth *a, const struct auth_identity *id, const char *service,
                        const char *const *scopes, size_t nscopes, int refresh, int oauth,
                        char **out)
{
    json_t *access = json_array(), *resp = NULL;
    char *token = NULL, *rtoken = NULL, issued[32];
    time_t now = time(NULL);
    struct tm tm;
    size_t i;
    int rc = REG_OK;

    *out = NULL;
    if (!a->signer) {
        json_decref(access);
        return REG_E_UNSUPPORTED;
    }
    if (!access)
        return REG_E_NOMEM;
    (void)service;
    for (i = 0; !rc && i < nscopes; i++) {
        /* One parameter may carry several scopes separated by spaces. */
        char *copy = strdup(scopes[i]), *save = NULL, *s;

        if (!copy) {
            rc = REG_E_NOMEM;
            break;
        }
        for (s = strtok_r(copy, " ", &save); s && !rc; s = strtok_r(NULL, " ", &save))
            rc = grant_scope(a, id, s, access);
        free(copy);
    }
    if (!rc)
        rc = token_issue(a->signer, a->issuer, id->user, a->service, a->ttl, access, now, &token);
    if (!rc && refresh && id->authenticated) {
        /* A refresh token: long-lived, no access, only good at /token. */
        json_t *none =
            json_pack("[{s:s, s:s, s:[]}]", "type", "refresh", "name", id->user, "actions");

        rc = none ? token_issue(a->signer, a->issuer, id->user, a->service, 30L * 86400, none, now,
                                &rtoken)
                  : REG_E_NOMEM;
        json_decref(none);
    }
    gmtime_r(&now, &tm);
    strftime(issued, sizeof(issued), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (!rc) {
        resp = oauth ? json_pack("{s:s, s:I, s:s}", "access_token", token, "expires_in",
                                 (json_int_t)a->ttl, "issued_at", issued)
                     : json_pack("{s:s, s:s, s:I, s:s}", "token", token, "access_token", token,
                                 "expires_in", (json_int_t)a->ttl, "issued_at", issued);
        if (resp && rtoken)
            json_object_set_new(resp, "refresh_token", json_string(rtoken));
        *out = resp ? json_dumps(resp, JSON_COMPACT) : NULL;
        rc = *out ? REG_OK : REG_E_NOMEM;
    }
    json_decref(resp);
    json_decref(access);
    free(token);
    free(rtoken);
    return rc;
}

int auth_refresh_identity(struct auth *a, const char *refresh_token, const char *client,
                          struct auth_identity *id)
{
    struct token_claims claims;
    json_t *first;
    const char *type;
    int rc;

    memset(id, 0, sizeof(*id));
    if (throttled(a, client))
        return REG_E_TOOMANY;
    if (!a->signer)
        return REG_E_UNAUTHORIZED;
    rc = token_verify(a->verifier, refresh_token, a->issuer, a->service, a->leeway, time(NULL),
                      &claims);
    if (rc) {
        note_failure(a, client);
        return rc;
    }
    first = json_array_get(claims.access, 0);
    type = json_string_value(json_object_get(first, "type"));
    /* The user must still exist: removing a line from htpasswd revokes
     * its refresh tokens. */
    if (!type || strcmp(type, "refresh") != 0 || !claims.subject[0] ||
        !htpasswd_has_user(a->users, claims.subject)) {
        json_decref(claims.access);
        note_failure(a, client);
        return REG_E_UNAUTHORIZED;
    }
    json_decref(claims.access);
    id->authenticated = 1;
    snprintf(id->user, sizeof(id->user), "%s", claims.subject);
    return REG_OK;
}
