/* Unit tests for storage/digest: parsing "algo:hex" and the running hashes
 * whose state upload checkpoints save byte for byte. */
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "../common/err.h"
#include "../storage/digest.h"
#include "../storage/index.h"

#define SHA256_ABC "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
#define SHA256_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define SHA512_ABC                                                                                 \
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"                             \
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
#define SHA512_EMPTY                                                                               \
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"                             \
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
/* FIPS 180-2 vectors: 56-byte two-block message and one million 'a'. */
#define SHA256_TWO_BLOCK "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
#define SHA256_MILLION_A "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
#define SHA512_MILLION_A                                                                           \
    "e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"                             \
    "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b"

static int parse(const char *s, struct digest *d)
{
    return digest_parse(s, strlen(s), d);
}

static void expect_invalid(const char *s)
{
    struct digest d;
    int rc = digest_parse(s, strlen(s), &d);

    cr_assert_eq(rc, REG_E_DIGEST_INVALID, "'%s' gave %d", s, rc);
}

/* --- digest_parse ---------------------------------------------------------- */

Test(digest_parse, accepts_sha256_and_keeps_canonical_string)
{
    struct digest d;

    cr_assert_eq(parse("sha256:" SHA256_ABC, &d), REG_OK);
    cr_assert_eq(d.algo, DIGEST_SHA256);
    cr_assert_str_eq(d.str, "sha256:" SHA256_ABC);
    cr_assert_str_eq(digest_hex(&d), SHA256_ABC);
    cr_assert_str_eq(digest_algo_name(d.algo), "sha256");
}

Test(digest_parse, accepts_sha512_and_keeps_canonical_string)
{
    struct digest d;

    cr_assert_eq(parse("sha512:" SHA512_ABC, &d), REG_OK);
    cr_assert_eq(d.algo, DIGEST_SHA512);
    cr_assert_str_eq(d.str, "sha512:" SHA512_ABC);
    cr_assert_str_eq(digest_hex(&d), SHA512_ABC);
    cr_assert_str_eq(digest_algo_name(d.algo), "sha512");
}

Test(digest_parse, reads_only_len_bytes_and_nul_terminates)
{
    const char *s = "sha256:" SHA256_ABC "trailing";
    struct digest d;

    memset(&d, 'x', sizeof(d));
    cr_assert_eq(digest_parse(s, 7 + 64, &d), REG_OK);
    cr_assert_str_eq(d.str, "sha256:" SHA256_ABC);
}

Test(digest_parse, rejects_uppercase_hex)
{
    expect_invalid("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD");
    /* One uppercase digit at the very end is enough. */
    expect_invalid("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015aD");
}

Test(digest_parse, rejects_non_hex_characters)
{
    expect_invalid("sha256:ga7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    expect_invalid("sha256: a7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

Test(digest_parse, rejects_hex_of_the_wrong_length)
{
    /* 63 and 65 digits for sha256. */
    expect_invalid("sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015a");
    expect_invalid("sha256:" SHA256_ABC "0");
    /* A sha512-sized hex under sha256 and the reverse. */
    expect_invalid("sha256:" SHA512_ABC);
    expect_invalid("sha512:" SHA256_ABC);
    expect_invalid("sha256:");
}

Test(digest_parse, rejects_unknown_algorithms)
{
    expect_invalid("md5:900150983cd24fb0d6963f7d28e17f72");
    expect_invalid("sha384:cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
                   "8086072ba1e7cc2358baeca134c825a7");
    expect_invalid("SHA256:" SHA256_ABC);
    expect_invalid("sha2566:" SHA256_ABC);
    expect_invalid(":" SHA256_ABC);
}

Test(digest_parse, rejects_missing_colon)
{
    expect_invalid("sha256" SHA256_ABC);
    expect_invalid(SHA256_ABC);
    expect_invalid("sha256-" SHA256_ABC);
}

Test(digest_parse, rejects_empty_input)
{
    struct digest d;

    cr_assert_eq(digest_parse("", 0, &d), REG_E_DIGEST_INVALID);
    /* A valid digest cut to zero length is empty too. */
    cr_assert_eq(digest_parse("sha256:" SHA256_ABC, 0, &d), REG_E_DIGEST_INVALID);
}

/* --- hashing ----------------------------------------------------------------- */

Test(hasher, sha256_of_abc_matches_fips_vector)
{
    struct digest d;

    digest_of(DIGEST_SHA256, "abc", 3, &d);
    cr_assert_eq(d.algo, DIGEST_SHA256);
    cr_assert_str_eq(d.str, "sha256:" SHA256_ABC);
}

Test(hasher, sha512_of_abc_matches_fips_vector)
{
    struct digest d;

    digest_of(DIGEST_SHA512, "abc", 3, &d);
    cr_assert_eq(d.algo, DIGEST_SHA512);
    cr_assert_str_eq(d.str, "sha512:" SHA512_ABC);
}

Test(hasher, empty_input_gives_the_empty_string_digests)
{
    struct hasher h;
    struct digest d;

    hasher_init(&h, DIGEST_SHA256);
    hasher_peek(&h, &d);
    cr_assert_str_eq(d.str, "sha256:" SHA256_EMPTY);
    hasher_init(&h, DIGEST_SHA512);
    hasher_peek(&h, &d);
    cr_assert_str_eq(d.str, "sha512:" SHA512_EMPTY);
    digest_of(DIGEST_SHA256, "", 0, &d);
    cr_assert_str_eq(d.str, "sha256:" SHA256_EMPTY);
}

Test(hasher, computed_digest_parses_back_to_itself)
{
    struct digest d, p;

    digest_of(DIGEST_SHA512, "abc", 3, &d);
    cr_assert_eq(digest_parse(d.str, strlen(d.str), &p), REG_OK);
    cr_assert_eq(p.algo, d.algo);
    cr_assert_str_eq(p.str, d.str);
}

Test(hasher, updates_in_pieces_equal_one_update)
{
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    struct hasher h;
    struct digest d;
    size_t i;

    hasher_init(&h, DIGEST_SHA256);
    for (i = 0; i < strlen(msg); i++)
        hasher_update(&h, msg + i, 1);
    hasher_peek(&h, &d);
    cr_assert_str_eq(d.str, "sha256:" SHA256_TWO_BLOCK);
}

Test(hasher, peek_does_not_disturb_the_running_hash)
{
    struct hasher h;
    struct digest mid, end;

    hasher_init(&h, DIGEST_SHA256);
    hasher_update(&h, "a", 1);
    hasher_peek(&h, &mid);
    hasher_peek(&h, &mid); /* twice: still the same state */
    hasher_update(&h, "bc", 2);
    hasher_peek(&h, &end);
    cr_assert_str_eq(end.str, "sha256:" SHA256_ABC);
    cr_assert_str_neq(mid.str, end.str);
}

/* Hash one million 'a' in uneven pieces; after `split` bytes save the state
 * as raw bytes (as upload_checkpoint stores it in LMDB), wipe the original,
 * restore into a fresh struct and go on. */
static void million_a_with_checkpoint(enum digest_algo algo, size_t split, const char *want)
{
    enum { TOTAL = 1000000, PIECE = 7919 };
    unsigned char saved[sizeof(struct hasher)];
    struct hasher h, resumed, straight;
    struct digest d;
    char *buf = malloc(TOTAL);
    size_t done;

    cr_assert_not_null(buf);
    memset(buf, 'a', TOTAL);
    hasher_init(&straight, algo);
    hasher_update(&straight, buf, TOTAL);

    hasher_init(&h, algo);
    for (done = 0; done < split;) {
        size_t n = split - done < PIECE ? split - done : PIECE;

        hasher_update(&h, buf + done, n);
        done += n;
    }
    memcpy(saved, &h, sizeof(h));
    memset(&h, 0xa5, sizeof(h));
    memset(&resumed, 0x5a, sizeof(resumed));
    memcpy(&resumed, saved, sizeof(resumed));
    for (; done < TOTAL;) {
        size_t n = TOTAL - done < PIECE ? TOTAL - done : PIECE;

        hasher_update(&resumed, buf + done, n);
        done += n;
    }
    hasher_peek(&resumed, &d);
    cr_assert_str_eq(d.str, want);
    hasher_peek(&straight, &d);
    cr_assert_str_eq(d.str, want);
    free(buf);
}

Test(hasher, sha256_state_copied_mid_block_resumes_to_same_digest)
{
    million_a_with_checkpoint(DIGEST_SHA256, 333333, "sha256:" SHA256_MILLION_A);
}

Test(hasher, sha256_state_copied_on_block_boundary_resumes_to_same_digest)
{
    million_a_with_checkpoint(DIGEST_SHA256, 64 * 4096, "sha256:" SHA256_MILLION_A);
}

Test(hasher, sha512_state_copied_mid_block_resumes_to_same_digest)
{
    million_a_with_checkpoint(DIGEST_SHA512, 500001, "sha512:" SHA512_MILLION_A);
}

Test(hasher, state_fits_the_index_upload_record)
{
    /* upload_checkpoint stores the whole struct in index_upload.state. */
    cr_assert_leq(sizeof(struct hasher), INDEX_HASH_STATE_MAX);
}
