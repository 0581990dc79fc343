/* The Authorization header and JWT handling: auth_identify in basic and
 * token mode, the Basic parser, token_verify on raw tokens, on tokens whose
 * claims are the input signed with a real key (so the checks after the
 * signature are reached), and on signed tokens whose header was swapped for
 * the input. One EC P-256 key and one bcrypt user per process. */
#include "fuzz.h"

#include <crypt.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "../../auth/authn.c"
#include "../../auth/token.c"

#define ISSUER "fuzz-issuer"
#define SERVICE "registry"

static struct auth *tok_auth, *basic_auth;
static unsigned long runs;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    if (!f || fputs(text, f) < 0 || fclose(f))
        abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    static const char *const rules[] = {"authenticated pull,push ${user}/*",
                                        "anonymous pull public/*"};
    char dir[] = "/tmp/fuzz-auth-XXXXXX", key[64], users[64], line[256], err[256];
    struct auth_settings s;
    struct crypt_data cd;
    EVP_PKEY *pk;
    FILE *f;
    char *salt;

    (void)argc;
    (void)argv;
    fuzz_quiet();
    if (!mkdtemp(dir))
        abort();
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    snprintf(users, sizeof(users), "%s/htpasswd", dir);
    pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    f = fopen(key, "w");
    if (!pk || !f || !PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL) || fclose(f))
        abort();
    EVP_PKEY_free(pk);
    /* Cost 4: a login that gets as far as bcrypt stays cheap. */
    salt = crypt_gensalt_ra("$2b$", 4, NULL, 0);
    memset(&cd, 0, sizeof(cd));
    if (!salt || !crypt_r("secret", salt, &cd))
        abort();
    snprintf(line, sizeof(line), "alice:%s\n", cd.output);
    free(salt);
    write_file(users, line);
    memset(&s, 0, sizeof(s));
    s.mode = AUTH_TOKEN;
    s.htpasswd = users;
    s.realm = "";
    s.service = SERVICE;
    s.issuer = ISSUER;
    s.key = key;
    s.token_ttl = 900;
    s.leeway = 60;
    s.rules = rules;
    s.nrules = 2;
    if (auth_new(&s, &tok_auth, err, sizeof(err)))
        abort();
    s.mode = AUTH_BASIC;
    s.key = NULL;
    if (auth_new(&s, &basic_auth, err, sizeof(err)))
        abort();
    unlink(key);
    unlink(users);
    rmdir(dir);
    return 0;
}

/* claims signed with the token service's key; NULL if libjwt refuses them. */
static char *sign(const char *claims)
{
    const struct token_signer *sg = tok_auth->signer;
    jwt_t *jwt = NULL;
    char *tok = NULL;

    if (!jwt_new(&jwt) &&
        !jwt_set_alg(jwt, sg->alg, (const unsigned char *)sg->priv_pem, (int)sg->priv_len) &&
        !jwt_add_header(jwt, "kid", sg->pub.kid_libtrust) && !jwt_add_grants_json(jwt, claims))
        tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    return tok;
}

/* Through auth_identify as "Bearer tok" (twice: the second is the cache's
 * answer, which must be the same), then the rights it gives. */
static void identify(struct auth *a, const char *header, const char *client)
{
    struct auth_identity id, again;
    int rc = auth_identify(a, header, client, &id), rc2;

    if (rc == REG_OK) {
        auth_rights(a, &id, "alice/app");
        auth_rights(a, &id, NULL);
        if (id.has_token) {
            rc2 = auth_identify(a, header, client, &again);
            FUZZ_CHECK(rc2 == REG_OK && again.has_token && !strcmp(again.user, id.user));
            FUZZ_CHECK(auth_rights(a, &again, "alice/app") == auth_rights(a, &id, "alice/app"));
            auth_identity_clear(&again);
        }
    }
    auth_identity_clear(&id);
}

static char *bearer(const char *tok)
{
    size_t n = strlen(tok) + 8;
    char *h = malloc(n);

    if (!h)
        abort();
    snprintf(h, n, "Bearer %s", tok);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char client[32], user[256], pass[512], *in, *tok, *h, *nl, *forged;
    struct token_claims claims;
    unsigned char *dec;
    size_t hlen;
    int n;

    if (size < 1)
        return 0;
    /* A new address each run: throttling would otherwise stop most inputs. */
    runs++;
    snprintf(client, sizeof(client), "10.%lu.%lu.%lu", (runs >> 16) & 255, (runs >> 8) & 255,
             runs & 255);
    in = fuzz_cstr(data + 1, size - 1);
    switch (data[0] % 4) {
    case 0: /* an Authorization header */
        identify(tok_auth, in, client);
        if (!strncasecmp(in, "Basic ", 6)) {
            /* The rest of a Basic login is bcrypt, not parsing: stop here. */
            if (parse_basic(in + 6, user, sizeof(user), pass, sizeof(pass)) == REG_OK)
                FUZZ_CHECK(!strchr(user, ':') && strlen(user) < sizeof(user));
        } else {
            identify(basic_auth, in, client);
        }
        break;
    case 1: /* claims, signed */
        tok = sign(in);
        if (tok) {
            h = bearer(tok);
            identify(tok_auth, h, client);
            free(h);
            free(tok);
        }
        break;
    case 2: /* a header line, then claims: the header replaces the signed one */
        nl = strchr(in, '\n');
        if (!nl)
            break;
        *nl = '\0';
        tok = sign(nl + 1);
        if (!tok)
            break;
        hlen = strlen(in);
        forged = malloc(hlen * 4 / 3 + 8 + strlen(tok));
        if (!forged)
            abort();
        b64url((const unsigned char *)in, hlen, forged, hlen * 4 / 3 + 8);
        strcat(forged, strchr(tok, '.'));
        if (token_verify(tok_auth->verifier, forged, ISSUER, SERVICE, 60, time(NULL), &claims) ==
            REG_OK) {
            /* The signature covers the header: only the original passes. */
            FUZZ_CHECK(!strcmp(forged, tok));
            json_decref(claims.access);
        }
        free(forged);
        free(tok);
        break;
    default: /* a raw token, and base64url decoding */
        if (token_verify(tok_auth->verifier, in, ISSUER, SERVICE, 60, time(NULL), &claims) ==
            REG_OK)
            json_decref(claims.access);
        hlen = strlen(in);
        dec = malloc(hlen + 3);
        if (!dec)
            abort();
        n = b64url_decode(in, hlen, dec, hlen + 3);
        FUZZ_CHECK(n <= (int)(hlen * 3 / 4 + 3));
        free(dec);
        break;
    }
    free(in);
    return 0;
}
