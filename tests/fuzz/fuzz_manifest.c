/* Manifest and index validation (manifest_parse, check_descriptor) on
 * arbitrary JSON, as svc_manifest_put runs it, with the Content-Type picked by the
 * first byte; and the referrers descriptor built from what passed. */
#include "fuzz.h"

#include "../../common/err.h"
#include "../../service/manifest.c"

static const char *const content_types[] = {
    NULL,           MT_OCI_MANIFEST,           MT_OCI_INDEX,       MT_DOCKER_MANIFEST,
    MT_DOCKER_LIST, MT_DOCKER_V1 "+prettyjws", "application/json", "",
};

static struct manifest_info *p;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    p = malloc(sizeof(*p));
    if (!p)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *ct;
    const char *detail;
    char *desc;
    json_error_t jerr;
    json_t *root, *back;
    struct digest d;
    size_t i;

    if (size < 1)
        return 0;
    ct = content_types[data[0] % (sizeof(content_types) / sizeof(content_types[0]))];
    root = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return 0;
    reg_detail_clear();
    if (manifest_parse(root, ct, p) == REG_OK) {
        FUZZ_CHECK(known_type(p->media_type));
        FUZZ_CHECK(p->nblobs <= MANIFEST_REFS_MAX && p->nchildren <= MANIFEST_REFS_MAX);
        FUZZ_CHECK(p->is_index ? p->nblobs == 0 : p->nblobs >= 1 && p->nchildren == 0);
        for (i = 0; i < p->nblobs; i++)
            FUZZ_CHECK(digest_parse(p->blobs[i], strlen(p->blobs[i]), &d) == REG_OK);
        for (i = 0; i < p->nchildren; i++)
            FUZZ_CHECK(digest_parse(p->children[i], strlen(p->children[i]), &d) == REG_OK);
        if (p->subject) {
            FUZZ_CHECK(digest_parse(p->subject, strlen(p->subject), &d) == REG_OK);
            digest_of(DIGEST_SHA256, data, size, &d);
            desc = manifest_descriptor(p, d.str, size);
            FUZZ_CHECK(desc != NULL);
            back = json_loads(desc, 0, NULL);
            FUZZ_CHECK(json_is_object(back));
            json_decref(back);
            free(desc);
        }
    } else {
        detail = reg_detail();
        FUZZ_CHECK(detail != NULL && strlen(detail) < 512);
    }
    json_decref(root);
    return 0;
}
