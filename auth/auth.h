/* The check every request passes through, and the built-in token service.
 * Nothing outside auth/ knows how a caller proved who they are; callers
 * ask what an identity may do. */
#ifndef REG_AUTH_H
#define REG_AUTH_H

#include <stddef.h>

#include <jansson.h>

#include "acl.h"

enum auth_mode { AUTH_NONE, AUTH_BASIC, AUTH_TOKEN };

struct auth_settings {
    enum auth_mode mode;
    const char *htpasswd; /* users file (basic, and token with the built-in service) */
    const char *realm;    /* Basic realm, or the token service URL ("" = this server's /token) */
    const char *service;  /* token audience */
    const char *issuer;   /* token issuer */
    const char *key;      /* PEM private key of the built-in token service, or NULL */
    const char *trust;    /* PEM certificates/public keys of an external issuer, or NULL */
    long token_ttl;       /* seconds */
    long leeway;          /* clock skew accepted, seconds */
    const char *const *rules; /* acl rules */
    size_t nrules;
    const char *const *groups; /* "name=member, member" */
    size_t ngroups;
};

struct auth;

/* Seconds a throttled client is told to wait (Retry-After). */
#define AUTH_RETRY_AFTER "30"

int auth_new(const struct auth_settings *s, struct auth **out, char *err, size_t errsize);
void auth_free(struct auth *a);
/* SIGHUP: the rules and groups of s replace the ones in force, and the
 * htpasswd file is read again now. Requests in flight finish with what
 * they started with (each holds a reference). The other settings of s are
 * not looked at. A bad rule or a users file that does not load changes
 * nothing: REG_E_CONFIG (or the load's error) with the reason in err. */
int auth_reload(struct auth *a, const struct auth_settings *s, char *err, size_t errsize);
enum auth_mode auth_mode(const struct auth *a);

struct auth_identity {
    int authenticated; /* a known user (or a token naming one) */
    int has_token;     /* rights come from a bearer token's access claim */
    char user[256];    /* "" when anonymous */
    json_t *access;    /* the token's access claim */
};

/* Who is calling, from the Authorization header (NULL: nobody said).
 * REG_E_UNAUTHORIZED for bad credentials or a bad token (a refresh token
 * included), REG_E_TOOMANY instead while failures from client for that
 * user (or, for junk and bad tokens, for nobody named) are throttled.
 * Valid credentials and tokens always pass. */
int auth_identify(struct auth *a, const char *authorization, const char *client,
                  struct auth_identity *id);
void auth_identity_clear(struct auth_identity *id);
/* Whether auth_identify would run bcrypt for this header (Basic
 * credentials not verified lately): the caller moves it off the threads
 * that serve other requests. */
int auth_is_slow(struct auth *a, const char *authorization);

/* The ACL_* actions id may do on repo (NULL: registry-wide, i.e. catalog). */
unsigned auth_rights(struct auth *a, const struct auth_identity *id, const char *repo);

/* WWW-Authenticate value for a refused request; host is the request's Host
 * (for a default realm), scheme "http" or "https". */
int auth_challenge(struct auth *a, const char *host, const char *scheme, const char *repo,
                   unsigned actions, int insufficient, char *buf, size_t size);

/* Check a "Basic ..." Authorization header against the users, whatever
 * the mode (the token service's login). */
int auth_basic_login(struct auth *a, const char *authorization, const char *client,
                     struct auth_identity *id);

/* Check user's password; a success is cached for a minute (bcrypt runs
 * once), and the htpasswd file is reloaded when it changed. REG_E_TOOMANY
 * for a wrong password while (client, user) is throttled. */
int auth_login(struct auth *a, const char *user, const char *pass, const char *client);

/* The token service: a JSON answer granting id the intersection of scopes
 * (strings "repository:NAME:ACTIONS" or "registry:catalog:*") and its
 * rights. refresh adds a refresh_token. *out is to free(). REG_E_UNSUPPORTED
 * when this registry has no signing key. */
int auth_token_response(struct auth *a, const struct auth_identity *id, const char *service,
                        const char *const *scopes, size_t nscopes, int refresh, int oauth,
                        char **out);

/* Identify by a refresh token issued earlier. */
int auth_refresh_identity(struct auth *a, const char *refresh_token, const char *client,
                          struct auth_identity *id);

#endif
