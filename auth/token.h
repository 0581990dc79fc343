/* Docker registry bearer tokens (JWT, RS256/ES256 family) through libjwt:
 * issue them with our own key, verify ours and those of trusted issuers. */
#ifndef REG_TOKEN_H
#define REG_TOKEN_H

#include <stddef.h>
#include <time.h>

#include <jansson.h>

struct token_signer;
struct token_verifier;

/* Load a PEM private key (RSA, or EC P-256/384/521). */
int token_signer_load(const char *path, struct token_signer **out, char *err, size_t errsize);
void token_signer_free(struct token_signer *s);
/* The key's libtrust key id, put in the kid header. */
const char *token_signer_kid(const struct token_signer *s);

/* Sign a token. access is the "access" claim (borrowed); *out is the
 * compact JWT, to free(). */
int token_issue(const struct token_signer *s, const char *issuer, const char *subject,
                const char *audience, long ttl, json_t *access, time_t now, char **out);

int token_verifier_new(struct token_verifier **out);
void token_verifier_free(struct token_verifier *v);
/* Trust the public key of a signer. */
int token_verifier_add_signer(struct token_verifier *v, const struct token_signer *s);
/* Trust the public keys and certificates in a PEM file. */
int token_verifier_add_pem(struct token_verifier *v, const char *path, char *err, size_t errsize);

struct token_claims {
    char subject[256];
    long exp;       /* expiry, unix seconds */
    json_t *access; /* the "access" claim (owned), an array or NULL */
};

/* Verify the signature with a trusted key (the header's alg must fit the
 * key; none and HMAC are refused), the issuer, that audience is among the
 * token's audiences, and exp/nbf within leeway seconds. REG_E_UNAUTHORIZED
 * otherwise. On success out->access must be json_decref()ed. */
int token_verify(const struct token_verifier *v, const char *token, const char *issuer,
                 const char *audience, long leeway, time_t now, struct token_claims *out);

#endif
