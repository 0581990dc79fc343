/* The low-level SHA interfaces are deprecated in OpenSSL 3 but are the only
 * ones whose state is a plain struct we can checkpoint; they run the same
 * assembly as EVP. */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "digest.h"

#include <string.h>

#include "../common/err.h"

static size_t hex_len(enum digest_algo algo)
{
    return algo == DIGEST_SHA512 ? 128 : 64;
}

const char *digest_algo_name(enum digest_algo algo)
{
    return algo == DIGEST_SHA512 ? "sha512" : "sha256";
}

const char *digest_hex(const struct digest *d)
{
    return d->str + strlen(digest_algo_name(d->algo)) + 1;
}

static int is_lower_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

int digest_parse(const char *s, size_t len, struct digest *out)
{
    const char *colon = memchr(s, ':', len);
    size_t alen, hlen, i;

    if (!colon)
        return REG_E_DIGEST_INVALID;
    alen = (size_t)(colon - s);
    hlen = len - alen - 1;
    if (alen == 6 && memcmp(s, "sha256", 6) == 0)
        out->algo = DIGEST_SHA256;
    else if (alen == 6 && memcmp(s, "sha512", 6) == 0)
        out->algo = DIGEST_SHA512;
    else
        return REG_E_DIGEST_INVALID;
    if (hlen != hex_len(out->algo))
        return REG_E_DIGEST_INVALID;
    for (i = 0; i < hlen; i++)
        if (!is_lower_hex(colon[1 + i]))
            return REG_E_DIGEST_INVALID;
    memcpy(out->str, s, len);
    out->str[len] = '\0';
    return REG_OK;
}

void hasher_init(struct hasher *h, enum digest_algo algo)
{
    memset(h, 0, sizeof(*h));
    h->algo = algo;
    if (algo == DIGEST_SHA512)
        SHA512_Init(&h->ctx.s512);
    else
        SHA256_Init(&h->ctx.s256);
}

void hasher_update(struct hasher *h, const void *data, size_t len)
{
    if (h->algo == DIGEST_SHA512)
        SHA512_Update(&h->ctx.s512, data, len);
    else
        SHA256_Update(&h->ctx.s256, data, len);
}

void hasher_peek(const struct hasher *h, struct digest *out)
{
    static const char hexdig[] = "0123456789abcdef";
    struct hasher copy = *h;
    unsigned char md[SHA512_DIGEST_LENGTH];
    size_t n, i, off;

    if (h->algo == DIGEST_SHA512) {
        SHA512_Final(md, &copy.ctx.s512);
        n = SHA512_DIGEST_LENGTH;
    } else {
        SHA256_Final(md, &copy.ctx.s256);
        n = SHA256_DIGEST_LENGTH;
    }
    out->algo = h->algo;
    off = strlen(digest_algo_name(h->algo));
    memcpy(out->str, digest_algo_name(h->algo), off);
    out->str[off++] = ':';
    for (i = 0; i < n; i++) {
        out->str[off++] = hexdig[md[i] >> 4];
        out->str[off++] = hexdig[md[i] & 15];
    }
    out->str[off] = '\0';
}

void digest_of(enum digest_algo algo, const void *data, size_t len, struct digest *out)
{
    struct hasher h;

    hasher_init(&h, algo);
    hasher_update(&h, data, len);
    hasher_peek(&h, out);
}
