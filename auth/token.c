#include "token.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "../common/err.h"
#include "../common/file.h"
#include "../common/log.h"

/* A public key we can verify with. */
struct tkey {
    char *pem; /* SubjectPublicKeyInfo PEM, what libjwt takes */
    size_t pem_len;
    int is_ec;
    int bits;              /* EC curve size */
    char kid_libtrust[64]; /* docker_auth, Distribution 2.8 */
    char kid_jwk[64];      /* RFC 7638 thumbprint, Distribution 3 */
    char kid_named[128];   /* the kid a JWKS file gave the key */
};

struct token_signer {
    char *priv_pem;
    size_t priv_len;
    jwt_alg_t alg;
    struct tkey pub;
};

struct token_verifier {
    struct tkey *keys;
    size_t n;
    X509_STORE *roots; /* trusted certificates, for tokens carrying an x5c chain */
};

static void b64url(const unsigned char *in, size_t len, char *out, size_t size)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t i, o = 0;
    unsigned v;

    for (i = 0; i + 2 < len && o + 4 < size; i += 3) {
        v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (i < len && o + 4 < size) {
        v = (unsigned)in[i] << 16 | (i + 1 < len ? (unsigned)in[i + 1] << 8 : 0);
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        if (i + 1 < len)
            out[o++] = tbl[(v >> 6) & 63];
    }
    out[o] = '\0';
}

/* Decode base64url (no padding) into out; returns length or -1. */
static int b64url_decode(const char *in, size_t len, unsigned char *out, size_t size)
{
    char buf[4096];
    size_t i, n = len;
    int got;

    if (len + 4 >= sizeof(buf) || (len + 3) / 4 * 3 > size)
        return -1;
    for (i = 0; i < len; i++)
        buf[i] = in[i] == '-' ? '+' : in[i] == '_' ? '/' : in[i];
    while (n % 4)
        buf[n++] = '=';
    got = EVP_DecodeBlock(out, (unsigned char *)buf, (int)n);
    if (got < 0)
        return -1;
    /* EVP_DecodeBlock counts padding as zero bytes. */
    return got - (int)(n - len);
}

/* libtrust key id: base32 of the first 240 bits of sha256(DER SPKI), in
 * groups of four. */
static void libtrust_kid(EVP_PKEY *pk, char *out, size_t size)
{
    static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    unsigned char *der = NULL, md[32];
    char raw[49];
    int len = i2d_PUBKEY(pk, &der), bit, o = 0;
    size_t i, w = 0;

    out[0] = '\0';
    if (len <= 0)
        return;
    EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL);
    OPENSSL_free(der);
    for (bit = 0; bit < 240; bit += 5) {
        int byte = bit / 8, off = bit % 8;
        unsigned v = ((unsigned)md[byte] << 8 | md[byte + 1]) >> (11 - off);

        raw[o++] = b32[v & 31];
    }
    raw[o] = '\0';
    for (i = 0; i < 48 && w + 2 < size; i++) {
        if (i && i % 4 == 0)
            out[w++] = ':';
        out[w++] = raw[i];
    }
    out[w] = '\0';
}

/* RFC 7638 thumbprint of the key's JWK. */
static void jwk_thumbprint(EVP_PKEY *pk, int is_ec, int bits, char *out, size_t size)
{
    unsigned char a[1024], b[1024], md[32];
    char ea[1400], eb[1400], json[3000];
    size_t alen = 0, blen = 0;
    int n;

    out[0] = '\0';
    if (is_ec) {
        unsigned char pt[200];
        size_t ptlen = 0, c;

        if (!EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &ptlen) ||
            ptlen < 3 || pt[0] != 4)
            return;
        c = (ptlen - 1) / 2;
        b64url(pt + 1, c, ea, sizeof(ea));
        b64url(pt + 1 + c, c, eb, sizeof(eb));
        n = snprintf(json, sizeof(json),
                     "{\"crv\":\"P-%d\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", bits, ea, eb);
    } else {
        BIGNUM *bn_n = NULL, *bn_e = NULL;

        if (!EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &bn_n) ||
            !EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &bn_e) ||
            BN_num_bytes(bn_n) > (int)sizeof(a) || BN_num_bytes(bn_e) > (int)sizeof(b)) {
            BN_free(bn_n);
            BN_free(bn_e);
            return;
        }
        alen = (size_t)BN_bn2bin(bn_n, a);
        blen = (size_t)BN_bn2bin(bn_e, b);
        BN_free(bn_n);
        BN_free(bn_e);
        b64url(b, blen, eb, sizeof(eb));
        b64url(a, alen, ea, sizeof(ea));
        n = snprintf(json, sizeof(json), "{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", eb, ea);
    }
    if (n <= 0 || n >= (int)sizeof(json))
        return;
    EVP_Digest(json, (size_t)n, md, NULL, EVP_sha256(), NULL);
    b64url(md, sizeof(md), out, size);
}

static int tkey_init(struct tkey *k, EVP_PKEY *pk)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data;
    long len;
    int id = EVP_PKEY_get_base_id(pk);

    memset(k, 0, sizeof(*k));
    if (id != EVP_PKEY_RSA && id != EVP_PKEY_EC) {
        BIO_free(bio);
        return REG_E_CONFIG;
    }
    k->is_ec = id == EVP_PKEY_EC;
    k->bits = EVP_PKEY_get_bits(pk);
    if (!bio || !PEM_write_bio_PUBKEY(bio, pk)) {
        BIO_free(bio);
        return REG_E_NOMEM;
    }
    len = BIO_get_mem_data(bio, &data);
    k->pem = malloc((size_t)len + 1);
    if (!k->pem) {
        BIO_free(bio);
        return REG_E_NOMEM;
    }
    memcpy(k->pem, data, (size_t)len);
    k->pem[len] = '\0';
    k->pem_len = (size_t)len;
    BIO_free(bio);
    libtrust_kid(pk, k->kid_libtrust, sizeof(k->kid_libtrust));
    jwk_thumbprint(pk, k->is_ec, k->bits, k->kid_jwk, sizeof(k->kid_jwk));
    return REG_OK;
}

static jwt_alg_t key_alg(const struct tkey *k)
{
    if (!k->is_ec)
        return JWT_ALG_RS256;
    return k->bits == 256 ? JWT_ALG_ES256 : k->bits == 384 ? JWT_ALG_ES384 : JWT_ALG_ES512;
}

/* Whether a token's alg fits the key: RS* for RSA, the curve's ES* for EC. */
static int alg_fits(jwt_alg_t alg, const struct tkey *k)
{
    if (!k->is_ec)
        return alg == JWT_ALG_RS256 || alg == JWT_ALG_RS384 || alg == JWT_ALG_RS512;
    return alg == key_alg(k);
}

int token_signer_load(const char *path, struct token_signer **out, char *err, size_t errsize)
{
    struct token_signer *s = calloc(1, sizeof(*s));
    EVP_PKEY *pk = NULL;
    BIO *bio = NULL;
    int rc = REG_E_CONFIG;

    *out = NULL;
    if (!s)
        return REG_E_NOMEM;
    s->priv_pem = file_read(path, 1 << 20, &s->priv_len);
    if (!s->priv_pem) {
        snprintf(err, errsize, "key %s: cannot read: %s", path, strerror(errno));
        goto out;
    }
    bio = BIO_new_mem_buf(s->priv_pem, (int)s->priv_len);
    pk = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    if (!pk || tkey_init(&s->pub, pk) != REG_OK) {
        snprintf(err, errsize, "key %s: not a PEM RSA or EC private key", path);
        goto out;
    }
    s->alg = key_alg(&s->pub);
    rc = REG_OK;
out:
    EVP_PKEY_free(pk);
    BIO_free(bio);
    if (rc) {
        token_signer_free(s);
        s = NULL;
    }
    *out = s;
    return rc;
}

void token_signer_free(struct token_signer *s)
{
    if (!s)
        return;
    if (s->priv_pem)
        OPENSSL_cleanse(s->priv_pem, s->priv_len);
    free(s->priv_pem);
    free(s->pub.pem);
    free(s);
}

const char *token_signer_kid(const struct token_signer *s)
{
    return s->pub.kid_libtrust;
}

int token_issue(const struct token_signer *s, const char *issuer, const char *subject,
                const char *audience, long ttl, json_t *access, time_t now, char **out)
{
    unsigned char rnd[16];
    char jti[40], *claims = NULL;
    json_t *grants = NULL;
    jwt_t *jwt = NULL;
    int rc = REG_E_INTERNAL;

    *out = NULL;
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return REG_E_INTERNAL;
    b64url(rnd, sizeof(rnd), jti, sizeof(jti));
    grants = json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:s, s:O}", "iss", issuer, "sub", subject,
                       "aud", audience, "exp", (json_int_t)now + ttl, "nbf", (json_int_t)now - 1,
                       "iat", (json_int_t)now, "jti", jti, "access", access);
    claims = grants ? json_dumps(grants, JSON_COMPACT) : NULL;
    if (!claims || jwt_new(&jwt))
        goto out;
    if (jwt_set_alg(jwt, s->alg, (const unsigned char *)s->priv_pem, (int)s->priv_len) ||
        jwt_add_header(jwt, "kid", s->pub.kid_libtrust) || jwt_add_grants_json(jwt, claims))
        goto out;
    *out = jwt_encode_str(jwt);
    rc = *out ? REG_OK : REG_E_INTERNAL;
out:
    jwt_free(jwt);
    free(claims);
    json_decref(grants);
    return rc;
}

int token_verifier_new(struct token_verifier **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? REG_OK : REG_E_NOMEM;
}

void token_verifier_free(struct token_verifier *v)
{
    size_t i;

    if (!v)
        return;
    for (i = 0; i < v->n; i++)
        free(v->keys[i].pem);
    free(v->keys);
    X509_STORE_free(v->roots);
    free(v);
}

static int add_key(struct token_verifier *v, const struct tkey *k)
{
    struct tkey *nk = realloc(v->keys, (v->n + 1) * sizeof(*nk));

    if (!nk)
        return REG_E_NOMEM;
    v->keys = nk;
    nk[v->n] = *k;
    nk[v->n].pem = strdup(k->pem);
    if (!nk[v->n].pem)
        return REG_E_NOMEM;
    v->n++;
    return REG_OK;
}

int token_verifier_add_signer(struct token_verifier *v, const struct token_signer *s)
{
    return add_key(v, &s->pub);
}

/* base64url text of a JWK member into bytes. */
static int jwk_bytes(json_t *jwk, const char *member, unsigned char *out, size_t size)
{
    const char *s = json_string_value(json_object_get(jwk, member));

    return s ? b64url_decode(s, strlen(s), out, size) : -1;
}

/* One JWK (RSA n/e or EC crv/x/y) as a public key. */
static EVP_PKEY *jwk_key(json_t *jwk)
{
    const char *kty = json_string_value(json_object_get(jwk, "kty"));
    const char *crv = json_string_value(json_object_get(jwk, "crv"));
    unsigned char a[1024], b[1024], pt[200];
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    BIGNUM *n = NULL, *e = NULL;
    int la, lb;

    if (!bld || !kty)
        goto out;
    if (!strcmp(kty, "RSA")) {
        la = jwk_bytes(jwk, "n", a, sizeof(a));
        lb = jwk_bytes(jwk, "e", b, sizeof(b));
        if (la <= 0 || lb <= 0)
            goto out;
        n = BN_bin2bn(a, la, NULL);
        e = BN_bin2bn(b, lb, NULL);
        if (!n || !e || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    } else if (!strcmp(kty, "EC") && crv) {
        const char *group = !strcmp(crv, "P-256")   ? "prime256v1"
                            : !strcmp(crv, "P-384") ? "secp384r1"
                            : !strcmp(crv, "P-521") ? "secp521r1"
                                                    : NULL;

        la = jwk_bytes(jwk, "x", a, sizeof(a));
        lb = jwk_bytes(jwk, "y", b, sizeof(b));
        if (!group || la <= 0 || la != lb || 1 + 2 * (size_t)la > sizeof(pt))
            goto out;
        pt[0] = 4;
        memcpy(pt + 1, a, (size_t)la);
        memcpy(pt + 1 + la, b, (size_t)lb);
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * (size_t)la))
            goto out;
        ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    if (!ctx || !params || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pk = NULL;
out:
    BN_free(n);
    BN_free(e);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EVP_PKEY_CTX_free(ctx);
    return pk;
}

static int add_jwks(struct token_verifier *v, const char *text, size_t len, const char *path,
                    char *err, size_t errsize)
{
    json_t *doc = json_loadb(text, len, 0, NULL), *keys = json_object_get(doc, "keys"), *jwk;
    size_t i, added = 0;
    int rc = REG_OK;

    json_array_foreach(keys, i, jwk)
    {
        EVP_PKEY *pk = jwk_key(jwk);
        const char *kid = json_string_value(json_object_get(jwk, "kid"));
        struct tkey k;

        if (!pk)
            continue;
        if (tkey_init(&k, pk) == REG_OK) {
            snprintf(k.kid_named, sizeof(k.kid_named), "%s", kid ? kid : "");
            rc = add_key(v, &k);
            free(k.pem);
            added += rc == REG_OK;
        }
        EVP_PKEY_free(pk);
        if (rc)
            break;
    }
    json_decref(doc);
    if (!rc && !added) {
        snprintf(err, errsize, "trust %s: a JSON file but no usable RSA or EC key in \"keys\"",
                 path);
        rc = REG_E_CONFIG;
    }
    return rc;
}

int token_verifier_add_pem(struct token_verifier *v, const char *path, char *err, size_t errsize)
{
    size_t len = 0, added = 0;
    char *text = file_read(path, 1 << 20, &len);
    const char *p;
    int rc = REG_OK;

    if (!text) {
        snprintf(err, errsize, "trust %s: cannot read: %s", path, strerror(errno));
        return REG_E_CONFIG;
    }
    if (text[strspn(text, " \t\r\n")] == '{') {
        rc = add_jwks(v, text, len, path, err, errsize);
        free(text);
        return rc;
    }
    /* Each PEM block in turn: a certificate or a public key. */
    for (p = strstr(text, "-----BEGIN "); p && !rc; p = strstr(p + 1, "-----BEGIN ")) {
        BIO *bio = BIO_new_mem_buf(p, (int)(len - (size_t)(p - text)));
        EVP_PKEY *pk = NULL;
        struct tkey k;

        if (!bio) {
            rc = REG_E_NOMEM;
            break;
        }
        if (!strncmp(p, "-----BEGIN CERTIFICATE-----", 27)) {
            X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);

            pk = x ? X509_get_pubkey(x) : NULL;
            if (x && !v->roots)
                v->roots = X509_STORE_new();
            if (x && v->roots)
                X509_STORE_add_cert(v->roots, x);
            X509_free(x);
        } else if (!strncmp(p, "-----BEGIN PUBLIC KEY-----", 26)) {
            pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        }
        BIO_free(bio);
        if (!pk)
            continue;
        if (tkey_init(&k, pk) == REG_OK) {
            rc = add_key(v, &k);
            free(k.pem);
            added++;
        }
        EVP_PKEY_free(pk);
    }
    free(text);
    if (!rc && !added) {
        snprintf(err, errsize, "trust %s: no certificate or public key (RSA or EC) in it", path);
        rc = REG_E_CONFIG;
    }
    return rc;
}

/* The token's header, read before anything is verified; NULL if unusable. */
static json_t *read_header(const char *token)
{
    const char *dot = strchr(token, '.');
    unsigned char buf[8192];
    int n;

    if (!dot)
        return NULL;
    n = b64url_decode(token, (size_t)(dot - token), buf, sizeof(buf) - 1);
    if (n <= 0)
        return NULL;
    return json_loadb((const char *)buf, (size_t)n, 0, NULL);
}

/* The leaf key of an x5c chain that verifies up to a trusted certificate;
 * NULL otherwise. */
static EVP_PKEY *x5c_key(const struct token_verifier *v, json_t *x5c)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *leaf = NULL;
    X509_STORE_CTX *ctx = NULL;
    EVP_PKEY *pk = NULL;
    json_t *c;
    size_t i;

    if (!v->roots || !chain || !json_is_array(x5c) || json_array_size(x5c) == 0 ||
        json_array_size(x5c) > 8)
        goto out;
    json_array_foreach(x5c, i, c)
    {
        const char *b64 = json_string_value(c);
        unsigned char der[8192];
        const unsigned char *p = der;
        int n;
        X509 *x;

        if (!b64 || strlen(b64) > 10000)
            goto out;
        n = EVP_DecodeBlock(der, (const unsigned char *)b64, (int)strlen(b64));
        if (n <= 0)
            goto out;
        x = d2i_X509(NULL, &p, n);
        if (!x)
            goto out;
        if (i == 0)
            leaf = x;
        else
            sk_X509_push(chain, x);
    }
    ctx = X509_STORE_CTX_new();
    if (ctx && X509_STORE_CTX_init(ctx, v->roots, leaf, chain) == 1 && X509_verify_cert(ctx) == 1)
        pk = X509_get_pubkey(leaf);
    else
        log_info("token refused: x5c chain does not lead to a trusted certificate");
out:
    X509_STORE_CTX_free(ctx);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    return pk;
}

static int audience_ok(jwt_t *jwt, const char *audience)
{
    char *aud_json;
    json_t *aud;
    size_t i;
    int ok = 0;

    if (!audience)
        return 1;
    aud_json = jwt_get_grants_json(jwt, "aud");
    aud = aud_json ? json_loads(aud_json, JSON_DECODE_ANY, NULL) : NULL;
    free(aud_json);
    if (json_is_string(aud))
        ok = !strcmp(json_string_value(aud), audience);
    for (i = 0; json_is_array(aud) && i < json_array_size(aud); i++)
        ok |= json_is_string(json_array_get(aud, i)) &&
              !strcmp(json_string_value(json_array_get(aud, i)), audience);
    json_decref(aud);
    return ok;
}

static jwt_t *try_key(const struct tkey *k, jwt_alg_t alg, const char *token)
{
    jwt_t *jwt = NULL;

    if (!alg_fits(alg, k))
        return NULL;
    if (jwt_decode(&jwt, token, (const unsigned char *)k->pem, (int)k->pem_len) != 0)
        return NULL;
    return jwt;
}

int token_verify(const struct token_verifier *v, const char *token, const char *issuer,
                 const char *audience, long leeway, time_t now, struct token_claims *out)
{
    json_t *header;
    const char *alg_name, *kid;
    jwt_alg_t alg;
    jwt_t *jwt = NULL;
    const char *iss, *sub;
    char *access;
    long exp, nbf;
    size_t i;
    int pass;

    memset(out, 0, sizeof(*out));
    header = strlen(token) > 16384 ? NULL : read_header(token);
    alg_name = json_string_value(json_object_get(header, "alg"));
    kid = json_string_value(json_object_get(header, "kid"));
    alg = alg_name ? jwt_str_alg(alg_name) : JWT_ALG_INVAL;
    if (alg == JWT_ALG_NONE || alg == JWT_ALG_INVAL || alg == JWT_ALG_HS256 ||
        alg == JWT_ALG_HS384 || alg == JWT_ALG_HS512) {
        log_info("token refused: its algorithm is none, HMAC or unknown");
        json_decref(header);
        return REG_E_UNAUTHORIZED;
    }
    if (json_object_get(header, "x5c")) {
        /* The chain names the key: it must lead to a trusted certificate. */
        EVP_PKEY *pk = x5c_key(v, json_object_get(header, "x5c"));
        struct tkey k;

        if (pk && tkey_init(&k, pk) == REG_OK) {
            jwt = try_key(&k, alg, token);
            free(k.pem);
        }
        EVP_PKEY_free(pk);
    } else {
        /* Keys named by kid first, then any key the algorithm fits. */
        for (pass = 0; pass < 2 && !jwt; pass++)
            for (i = 0; i < v->n && !jwt; i++) {
                const struct tkey *k = &v->keys[i];
                int named = kid && (!strcmp(kid, k->kid_libtrust) || !strcmp(kid, k->kid_jwk) ||
                                    (k->kid_named[0] && !strcmp(kid, k->kid_named)));

                if ((pass == 0) == named)
                    jwt = try_key(k, alg, token);
            }
    }
    json_decref(header);
    if (!jwt || jwt_get_alg(jwt) != alg)
        goto bad;
    iss = jwt_get_grant(jwt, "iss");
    if (issuer && (!iss || strcmp(iss, issuer) != 0))
        goto bad;
    if (!audience_ok(jwt, audience))
        goto bad;
    errno = 0;
    exp = jwt_get_grant_int(jwt, "exp");
    /* now - leeway, not exp + leeway: exp is the issuer's and may be LONG_MAX. */
    if (errno || now - leeway > exp)
        goto bad;
    errno = 0;
    nbf = jwt_get_grant_int(jwt, "nbf");
    if (!errno && now + leeway < nbf)
        goto bad;
    sub = jwt_get_grant(jwt, "sub");
    snprintf(out->subject, sizeof(out->subject), "%s", sub ? sub : "");
    out->exp = exp;
    access = jwt_get_grants_json(jwt, "access");
    out->access = access ? json_loads(access, JSON_DECODE_ANY, NULL) : NULL;
    free(access);
    jwt_free(jwt);
    return REG_OK;
bad:
    jwt_free(jwt);
    return REG_E_UNAUTHORIZED;
}
