#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "../common/err.h"
#include "../common/log.h"
#include "auth.h"
#include "htpasswd.h"
#include "token.h"

/* Failed logins, counted per (client address, user name): after FAIL_MAX
 * failures within FAIL_WINDOW seconds, that pair's further failures are
 * answered 429 for FAIL_BLOCK seconds. A correct password always passes,
 * and one user's failures never touch another's logins. Failures that
 * name no user (junk headers, bad tokens) count under the empty name.
 * FAIL_SETS sets of FAIL_WAYS slots: a flood of new pairs evicts the
 * quietest pair of one set, never the whole table. */
#define FAIL_SETS 128
#define FAIL_WAYS 4
#define FAIL_MAX 10
#define FAIL_WINDOW 60
#define FAIL_BLOCK 30

/* Verified bearer tokens, so that a client's next requests with the same
 * token skip the signature check: sha256(token) -> what it said. */
#define TOKEN_SLOTS 128

/* Verified Basic credentials, so that bcrypt (tens of milliseconds of CPU
 * by design) runs once per credential per CRED_TTL seconds instead of on
 * every request: sha256(salt, user, NUL, password) -> verified until. Only
 * successes are kept; the table is emptied when the htpasswd file
 * changes. CRED_SETS sets of CRED_WAYS slots. */
#define CRED_SETS 64
#define CRED_WAYS 4
#define CRED_TTL 60

/* How often, at most, the htpasswd file is looked at for changes. */
#define USERS_CHECK_INTERVAL 1

struct token_slot {
    unsigned char hash[32];
    long exp; /* 0: empty */
    char subject[256];
    char *access; /* the access claim as JSON text */
};

struct fail_slot {
    unsigned char key[32]; /* sha256(salt, client, user) */
    unsigned fails;
    time_t window_start; /* 0: empty */
    time_t blocked_until;
};

struct cred_slot {
    unsigned char hash[32]; /* sha256(salt, user, NUL, password) */
    time_t until;           /* monotonic seconds; 0: empty */
};

/* One loaded htpasswd file. Logins hold a reference while they check a
 * password, so that a reload can swap the file under them. */
struct users {
    struct htpasswd *h;
    unsigned refs; /* under auth.lock */
};

/* The rules and groups in force. A request holds a reference while it
 * asks them, so that a reload (SIGHUP) can swap them under it; the last
 * reference frees them. */
struct policy {
    struct acl *acl;
    unsigned refs; /* under auth.lock */
};

struct auth {
    enum auth_mode mode;
    char realm[512], service[256], issuer[256];
    long ttl, leeway;
    struct users *users; /* NULL without an htpasswd file */
    char users_path[4096];
    struct stat users_st;  /* the file as loaded: a change reloads it */
    time_t users_checked;  /* monotonic seconds of the last look */
    struct policy *policy; /* never NULL once made */
    struct token_signer *signer;
    struct token_verifier *verifier;
    pthread_mutex_t lock;
    unsigned char salt[32]; /* per process: cache keys cannot be precomputed */
    struct fail_slot fails[FAIL_SETS][FAIL_WAYS];
    struct token_slot tokens[TOKEN_SLOTS];
    struct cred_slot creds[CRED_SETS][CRED_WAYS];
};

static time_t mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

static void users_unref(struct auth *a, struct users *u)
{
    int last;

    if (!u)
        return;
    pthread_mutex_lock(&a->lock);
    last = --u->refs == 0;
    pthread_mutex_unlock(&a->lock);
    if (last) {
        htpasswd_free(u->h);
        free(u);
    }
}

/* The current users with a reference taken (NULL when there are none). */
static struct users *users_ref(struct auth *a)
{
    struct users *u;

    pthread_mutex_lock(&a->lock);
    u = a->users;
    if (u)
        u->refs++;
    pthread_mutex_unlock(&a->lock);
    return u;
}

static void policy_unref(struct auth *a, struct policy *p)
{
    int last;

    if (!p)
        return;
    pthread_mutex_lock(&a->lock);
    last = --p->refs == 0;
    pthread_mutex_unlock(&a->lock);
    if (last) {
        acl_free(p->acl);
        free(p);
    }
}

/* The rules in force, with a reference taken. */
static struct policy *policy_ref(struct auth *a)
{
    struct policy *p;

    pthread_mutex_lock(&a->lock);
    p = a->policy;
    p->refs++;
    pthread_mutex_unlock(&a->lock);
    return p;
}

/* Rules and groups from s, into a new policy with one reference. */
static int policy_new(const struct auth_settings *s, struct policy **out, char *err, size_t errsize)
{
    struct policy *p = calloc(1, sizeof(*p));
    size_t i;
    int rc;

    *out = NULL;
    if (!p)
        return REG_E_NOMEM;
    rc = acl_new(&p->acl);
    for (i = 0; !rc && i < s->nrules; i++)
        rc = acl_add_rule(p->acl, s->rules[i], err, errsize);
    for (i = 0; !rc && i < s->ngroups; i++) {
        const char *eq = strchr(s->groups[i], '=');
        char name[256];

        snprintf(name, sizeof(name), "%.*s", eq ? (int)(eq - s->groups[i]) : 0, s->groups[i]);
        rc = eq ? acl_add_group(p->acl, name, eq + 1, err, errsize) : REG_E_CONFIG;
    }
    if (rc) {
        acl_free(p->acl);
        free(p);
        return rc;
    }
    p->refs = 1;
    *out = p;
    return REG_OK;
}

static int users_load(struct auth *a, char *err, size_t errsize)
{
    struct users *u = calloc(1, sizeof(*u));
    int rc;

    if (!u)
        return REG_E_NOMEM;
    if (stat(a->users_path, &a->users_st) != 0)
        memset(&a->users_st, 0, sizeof(a->users_st));
    rc = htpasswd_load(a->users_path, &u->h, err, errsize);
    if (rc) {
        free(u);
        return rc;
    }
    u->refs = 1;
    a->users = u;
    a->users_checked = mono_now();
    return REG_OK;
}

static int same_file(const struct stat *x, const struct stat *y)
{
    return x->st_dev == y->st_dev && x->st_ino == y->st_ino && x->st_size == y->st_size &&
           x->st_mtim.tv_sec == y->st_mtim.tv_sec && x->st_mtim.tv_nsec == y->st_mtim.tv_nsec &&
           x->st_ctim.tv_sec == y->st_ctim.tv_sec && x->st_ctim.tv_nsec == y->st_ctim.tv_nsec;
}

/* Reload the htpasswd file when it changed (looked at once a second at
 * most), and forget every cached credential then: a changed password or a
 * removed user takes effect without a restart. A file that no longer
 * loads keeps the users already loaded. */
static void users_refresh(struct auth *a)
{
    struct users *u = NULL, *old = NULL;
    struct stat st;
    time_t now = mono_now();
    char err[512];
    int due;

    pthread_mutex_lock(&a->lock);
    due = a->users && now - a->users_checked >= USERS_CHECK_INTERVAL;
    if (due)
        a->users_checked = now;
    pthread_mutex_unlock(&a->lock);
    if (!due || stat(a->users_path, &st) != 0)
        return;
    pthread_mutex_lock(&a->lock);
    due = !same_file(&st, &a->users_st);
    a->users_st = st; /* a broken file is reported once, not every second */
    pthread_mutex_unlock(&a->lock);
    if (!due)
        return;
    u = calloc(1, sizeof(*u));
    if (!u || htpasswd_load(a->users_path, &u->h, err, sizeof(err)) != REG_OK) {
        if (u)
            log_warn("auth: %s changed but does not load, keeping the users loaded before: %s",
                     a->users_path, err);
        free(u);
        return;
    }
    u->refs = 1;
    pthread_mutex_lock(&a->lock);
    old = a->users;
    a->users = u;
    memset(a->creds, 0, sizeof(a->creds));
    pthread_mutex_unlock(&a->lock);
    log_info("auth: %s changed, users reloaded", a->users_path);
    users_unref(a, old);
}

#define BAD(...) (snprintf(err, errsize, __VA_ARGS__), REG_E_CONFIG)

int auth_new(const struct auth_settings *s, struct auth **out, char *err, size_t errsize)
{
    struct auth *a = calloc(1, sizeof(*a));
    int rc = REG_OK;

    *out = NULL;
    if (!a)
        return REG_E_NOMEM;
    pthread_mutex_init(&a->lock, NULL);
    if (RAND_bytes(a->salt, sizeof(a->salt)) != 1) {
        auth_free(a);
        return REG_E_INTERNAL;
    }
    a->mode = s->mode;
    snprintf(a->realm, sizeof(a->realm), "%s", s->realm ? s->realm : "");
    snprintf(a->service, sizeof(a->service), "%s", s->service);
    snprintf(a->issuer, sizeof(a->issuer), "%s", s->issuer);
    a->ttl = s->token_ttl;
    a->leeway = s->leeway;
    rc = policy_new(s, &a->policy, err, errsize);
    if (rc || s->mode == AUTH_NONE)
        goto out;
    if (s->htpasswd && *s->htpasswd && strlen(s->htpasswd) >= sizeof(a->users_path))
        rc = BAD("[auth] htpasswd: path too long");
    else if (s->htpasswd && *s->htpasswd) {
        snprintf(a->users_path, sizeof(a->users_path), "%s", s->htpasswd);
        rc = users_load(a, err, errsize);
    } else if (s->mode == AUTH_BASIC || !s->trust || !*s->trust)
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
    users_unref(a, a->users);
    policy_unref(a, a->policy);
    token_signer_free(a->signer);
    token_verifier_free(a->verifier);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

int auth_reload(struct auth *a, const struct auth_settings *s, char *err, size_t errsize)
{
    struct policy *p = NULL, *old;
    struct users *u = NULL, *old_users = NULL;
    int rc = policy_new(s, &p, err, errsize);

    /* Both are made before either is swapped in: a bad rule or a users
     * file that does not load keeps everything as it was. */
    if (!rc && a->users) {
        u = calloc(1, sizeof(*u));
        rc = u ? htpasswd_load(a->users_path, &u->h, err, errsize) : REG_E_NOMEM;
        if (rc) {
            free(u);
            u = NULL;
        }
    }
    if (rc) {
        policy_unref(a, p);
        return rc;
    }
    pthread_mutex_lock(&a->lock);
    old = a->policy;
    a->policy = p;
    if (u) {
        u->refs = 1;
        old_users = a->users;
        a->users = u;
        if (stat(a->users_path, &a->users_st) != 0)
            memset(&a->users_st, 0, sizeof(a->users_st));
        a->users_checked = mono_now();
        memset(a->creds, 0, sizeof(a->creds));
    }
    pthread_mutex_unlock(&a->lock);
    policy_unref(a, old);
    users_unref(a, old_users);
    return REG_OK;
}

enum auth_mode auth_mode(const struct auth *a)
{
    return a->mode;
}

/* sha256(salt, parts...): keys of the caches and of the failure table,
 * which a client cannot aim at a slot of its choosing. */
static void salted_hash(const struct auth *a, const char *x, size_t xlen, const char *y,
                        size_t ylen, unsigned char out[32])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();

    memset(out, 0, 32);
    if (!c || EVP_DigestInit_ex(c, EVP_sha256(), NULL) != 1 ||
        EVP_DigestUpdate(c, a->salt, sizeof(a->salt)) != 1 || EVP_DigestUpdate(c, x, xlen) != 1 ||
        EVP_DigestUpdate(c, y, ylen) != 1 || EVP_DigestFinal_ex(c, out, NULL) != 1)
        RAND_bytes(out, 32); /* a key that matches nothing */
    EVP_MD_CTX_free(c);
}

static void fail_key(const struct auth *a, const char *client, const char *user,
                     unsigned char key[32])
{
    /* The NUL ends the address: ("1.2.3.4", "5x") and ("1.2.3.45", "x") differ. */
    salted_hash(a, client, strlen(client) + 1, user, strlen(user), key);
}

/* How willingly a slot is given to a new pair: an empty or finished one
 * first, then the one with the fewest failures, a blocked one last. */
static long evict_score(const struct fail_slot *s, time_t now)
{
    if (!s->window_start || (s->blocked_until <= now && now - s->window_start > FAIL_WINDOW))
        return -1;
    if (s->blocked_until > now)
        return FAIL_MAX + (long)(s->blocked_until - now);
    return (long)s->fails;
}

/* The slot of key, given to it when it has none. Under a->lock. */
static struct fail_slot *fail_slot(struct auth *a, const unsigned char key[32], time_t now)
{
    struct fail_slot *set = a->fails[(key[0] | key[1] << 8) % FAIL_SETS], *pick = &set[0];
    size_t i;

    for (i = 0; i < FAIL_WAYS; i++)
        if (set[i].window_start && CRYPTO_memcmp(set[i].key, key, 32) == 0)
            return &set[i];
    for (i = 1; i < FAIL_WAYS; i++)
        if (evict_score(&set[i], now) < evict_score(pick, now))
            pick = &set[i];
    memset(pick, 0, sizeof(*pick));
    memcpy(pick->key, key, 32);
    pick->window_start = now;
    return pick;
}

/* Count one failed login of user ("" when none was named) from client.
 * Returns REG_E_TOOMANY when that pair is blocked, else
 * REG_E_UNAUTHORIZED. */
static int note_failure(struct auth *a, const char *client, const char *user)
{
    unsigned char key[32];
    struct fail_slot *s;
    time_t now = time(NULL);
    unsigned fails;
    int blocked, newly = 0;

    fail_key(a, client, user, key);
    pthread_mutex_lock(&a->lock);
    s = fail_slot(a, key, now);
    if (s->blocked_until <= now && now - s->window_start > FAIL_WINDOW) {
        s->fails = 0;
        s->window_start = now;
        s->blocked_until = 0;
    }
    if (++s->fails >= FAIL_MAX && s->blocked_until <= now) {
        s->blocked_until = now + FAIL_BLOCK;
        newly = 1;
    }
    blocked = s->blocked_until > now;
    fails = s->fails;
    pthread_mutex_unlock(&a->lock);
    if (newly)
        log_warn("auth: %u failed logins for user '%.64s' from %s, answering its failures 429 "
                 "for %d s",
                 fails, user, client, FAIL_BLOCK);
    return blocked ? REG_E_TOOMANY : REG_E_UNAUTHORIZED;
}

static struct cred_slot *cred_set(struct auth *a, const unsigned char hash[32])
{
    return a->creds[(hash[0] | hash[1] << 8) % CRED_SETS];
}

/* Whether "user:pass" was verified within CRED_TTL seconds. */
static int cred_cached(struct auth *a, const unsigned char hash[32])
{
    struct cred_slot *set;
    time_t now = mono_now();
    size_t i;
    int hit = 0;

    pthread_mutex_lock(&a->lock);
    set = cred_set(a, hash);
    for (i = 0; i < CRED_WAYS; i++)
        if (set[i].until > now && CRYPTO_memcmp(set[i].hash, hash, 32) == 0)
            hit = 1;
    pthread_mutex_unlock(&a->lock);
    return hit;
}

/* Remember a verified credential, unless the users it was checked
 * against have been replaced since (its verdict may be stale). */
static void cred_remember(struct auth *a, const unsigned char hash[32], const struct users *u)
{
    struct cred_slot *set, *pick;
    time_t now = mono_now();
    size_t i;

    pthread_mutex_lock(&a->lock);
    set = cred_set(a, hash);
    pick = &set[0];
    for (i = 0; i < CRED_WAYS; i++) {
        if (CRYPTO_memcmp(set[i].hash, hash, 32) == 0) {
            pick = &set[i];
            break;
        }
        if (set[i].until < pick->until)
            pick = &set[i];
    }
    if (a->users == u) {
        memcpy(pick->hash, hash, 32);
        pick->until = now + CRED_TTL;
    }
    pthread_mutex_unlock(&a->lock);
}

int auth_login(struct auth *a, const char *user, const char *pass, const char *client)
{
    unsigned char hash[32];
    struct users *u;
    int rc;

    /* The whole credential: user, its NUL, password (no user holds a NUL). */
    salted_hash(a, user, strlen(user) + 1, pass, strlen(pass), hash);
    users_refresh(a);
    /* A correct password passes whatever failures came before it. */
    if (cred_cached(a, hash))
        return REG_OK;
    u = users_ref(a);
    log_debug("auth: checking the password of user '%.64s' with bcrypt", user);
    rc = u ? htpasswd_verify(u->h, user, pass) : REG_E_UNAUTHORIZED;
    if (!rc)
        cred_remember(a, hash, u);
    users_unref(a, u);
    if (rc == REG_E_UNAUTHORIZED) {
        log_info("auth: failed login for user '%.64s' from %s", user, client);
        rc = note_failure(a, client, user);
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

/* Whether a token's access claim is that of a refresh token. */
static int is_refresh(const json_t *access)
{
    size_t i;
    json_t *e;

    json_array_foreach(access, i, e)
    {
        const char *type = json_string_value(json_object_get(e, "type"));

        if (type && !strcmp(type, "refresh"))
            return 1;
    }
    return 0;
}

int auth_basic_login(struct auth *a, const char *authorization, const char *client,
                     struct auth_identity *id)
{
    char user[256], pass[512];
    int rc;

    memset(id, 0, sizeof(*id));
    if (strncasecmp(authorization, "Basic ", 6) != 0)
        return note_failure(a, client, "");
    rc = parse_basic(authorization + 6, user, sizeof(user), pass, sizeof(pass));
    if (rc)
        rc = note_failure(a, client, "");
    else
        rc = auth_login(a, user, pass, client);
    OPENSSL_cleanse(pass, sizeof(pass));
    if (rc)
        return rc;
    id->authenticated = 1;
    snprintf(id->user, sizeof(id->user), "%s", user);
    return REG_OK;
}

int auth_is_slow(struct auth *a, const char *authorization)
{
    char user[256], pass[512];
    unsigned char hash[32];
    int slow = 0;

    if (!authorization || a->mode != AUTH_BASIC || strncasecmp(authorization, "Basic ", 6) != 0)
        return 0;
    if (parse_basic(authorization + 6, user, sizeof(user), pass, sizeof(pass)) == REG_OK) {
        salted_hash(a, user, strlen(user) + 1, pass, strlen(pass), hash);
        slow = !cred_cached(a, hash);
    }
    OPENSSL_cleanse(pass, sizeof(pass));
    return slow;
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
        /* A refresh token is only good at /token: on /v2/ it would pass as
         * a known user with no rights, enough for the base endpoint. */
        if (!rc && is_refresh(claims.access)) {
            json_decref(claims.access);
            rc = REG_E_UNAUTHORIZED;
        }
        if (rc)
            return note_failure(a, client, "");
        remember_token(a, authorization + 7, &claims);
        id->has_token = 1;
        id->authenticated = claims.subject[0] != '\0';
        snprintf(id->user, sizeof(id->user), "%s", claims.subject);
        id->access = claims.access;
        return REG_OK;
    }
    if (!strncasecmp(authorization, "Basic ", 6)) {
        /* Token mode wants tokens: a 401 sends the client to the token
         * service, where its Basic credentials are checked. */
        if (a->mode != AUTH_BASIC)
            return REG_E_UNAUTHORIZED;
        return auth_basic_login(a, authorization, client, id);
    }
    return note_failure(a, client, "");
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
    struct policy *p;
    unsigned rights;

    if (a->mode == AUTH_NONE)
        return ACL_ALL;
    if (id->has_token)
        return token_rights(id->access, repo);
    p = policy_ref(a);
    rights = acl_allowed(p->acl, id->authenticated ? id->user : NULL, repo);
    policy_unref(a, p);
    return rights;
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
static int grant_scope(const struct acl *acl, const struct auth_identity *id, const char *scope,
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
        if (acl_allowed(acl, id->authenticated ? id->user : NULL, NULL) & ACL_CATALOG)
            json_array_append_new(actions, json_string("*"));
    } else if (!strcmp(type, "repository")) {
        want = !strcmp(c2 + 1, "*") ? ACL_PULL | ACL_PUSH | ACL_DELETE
                                    : acl_parse_actions(c2 + 1, strlen(c2 + 1));
        have = acl_allowed(acl, id->authenticated ? id->user : NULL, name);
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
    struct policy *policy;
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
    policy = policy_ref(a);
    for (i = 0; !rc && i < nscopes; i++) {
        /* One parameter may carry several scopes separated by spaces. */
        char *copy = strdup(scopes[i]), *save = NULL, *s;

        if (!copy) {
            rc = REG_E_NOMEM;
            break;
        }
        for (s = strtok_r(copy, " ", &save); s && !rc; s = strtok_r(NULL, " ", &save))
            rc = grant_scope(policy->acl, id, s, access);
        free(copy);
    }
    policy_unref(a, policy);
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
    struct users *u;
    json_t *first;
    const char *type;
    int rc, known, refresh;

    memset(id, 0, sizeof(*id));
    if (!a->signer)
        return REG_E_UNAUTHORIZED;
    rc = token_verify(a->verifier, refresh_token, a->issuer, a->service, a->leeway, time(NULL),
                      &claims);
    if (rc)
        return note_failure(a, client, "");
    users_refresh(a);
    u = users_ref(a);
    first = json_array_get(claims.access, 0);
    type = json_string_value(json_object_get(first, "type"));
    /* The user must still exist: removing a line from htpasswd revokes
     * its refresh tokens. */
    refresh = type && !strcmp(type, "refresh");
    json_decref(claims.access);
    known = u && htpasswd_has_user(u->h, claims.subject);
    users_unref(a, u);
    if (!refresh || !claims.subject[0] || !known)
        return note_failure(a, client, claims.subject);
    id->authenticated = 1;
    snprintf(id->user, sizeof(id->user), "%s", claims.subject);
    return REG_OK;
}
