/* Content digests ("sha256:<hex>") and the running hashes behind them. */
#ifndef REG_DIGEST_H
#define REG_DIGEST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/sha.h>

enum digest_algo { DIGEST_SHA256 = 1, DIGEST_SHA512 = 2 };

#define DIGEST_HEX_MAX 128                      /* sha512 */
#define DIGEST_STR_MAX (7 + DIGEST_HEX_MAX + 1) /* "sha512:" + hex + NUL */

struct digest {
    enum digest_algo algo;
    char str[DIGEST_STR_MAX]; /* canonical "algo:hex", NUL-terminated */
};

/* Parse s[0..len) as a digest. REG_E_DIGEST_INVALID if it is malformed or
 * its algorithm is not supported. */
int digest_parse(const char *s, size_t len, struct digest *out);

/* Directory name of the algorithm ("sha256") and the hex part of d. */
const char *digest_algo_name(enum digest_algo algo);
const char *digest_hex(const struct digest *d);

/* A running hash whose state can be saved and restored byte for byte, so
 * that an upload resumes after a restart without rehashing. */
struct hasher {
    enum digest_algo algo;
    union {
        SHA256_CTX s256;
        SHA512_CTX s512;
    } ctx;
};

void hasher_init(struct hasher *h, enum digest_algo algo);
void hasher_update(struct hasher *h, const void *data, size_t len);
/* Finish a copy of h (h itself may go on) and write the digest to out. */
void hasher_peek(const struct hasher *h, struct digest *out);

/* One-shot digest of a buffer. */
void digest_of(enum digest_algo algo, const void *data, size_t len, struct digest *out);

#endif
