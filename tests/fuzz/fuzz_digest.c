/* digest_parse on arbitrary bytes (a slice without a NUL, as the router and
 * JSON hand it over), and the canonical form it keeps. */
#include "fuzz.h"

#include "../../common/err.h"
#include "../../storage/digest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct digest d, again;

    if (digest_parse(s, size, &d) == REG_OK) {
        size_t hexlen = d.algo == DIGEST_SHA512 ? 128 : 64;

        /* Only canonical digests pass, and they are kept byte for byte. */
        FUZZ_CHECK(size == strlen(d.str) && memcmp(d.str, s, size) == 0);
        FUZZ_CHECK(strlen(digest_hex(&d)) == hexlen);
        FUZZ_CHECK(strncmp(d.str, digest_algo_name(d.algo), 6) == 0 && d.str[6] == ':');
        FUZZ_CHECK(digest_parse(d.str, strlen(d.str), &again) == REG_OK && again.algo == d.algo &&
                   strcmp(again.str, d.str) == 0);
    }
    /* What we compute must always parse back. */
    digest_of(size % 2 ? DIGEST_SHA512 : DIGEST_SHA256, data, size, &d);
    FUZZ_CHECK(digest_parse(d.str, strlen(d.str), &again) == REG_OK && !strcmp(again.str, d.str));
    return 0;
}
