/* Range (blob GET) and Content-Range (upload PATCH) headers. The first
 * eight bytes are the blob's size, the rest the header; the first byte of
 * the rest picks which parser gets it. */
#include "fuzz.h"

#include "../../api/range.h"
#include "../../common/err.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint64_t blob_size, off = 0, len = 0;
    char *h;
    int rc, partial = 0;

    if (size < 9)
        return 0;
    memcpy(&blob_size, data, 8);
    h = fuzz_cstr(data + 9, size - 9);
    if (data[8] & 1) {
        rc = range_parse(h, blob_size, &off, &len, &partial);
        FUZZ_CHECK(rc == REG_OK || rc == REG_E_RANGE);
        /* A satisfiable range is non-empty and inside the blob. */
        if (rc == REG_OK && partial)
            FUZZ_CHECK(len >= 1 && off < blob_size && len <= blob_size - off);
    } else {
        rc = content_range_parse(h, &off, &len);
        FUZZ_CHECK(rc == REG_OK || rc == REG_E_UPLOAD_INVALID);
        /* start-end, both inclusive: at least one byte, and the end fits. */
        if (rc == REG_OK)
            FUZZ_CHECK(len >= 1 && off + (len - 1) >= off);
    }
    free(h);
    return 0;
}
