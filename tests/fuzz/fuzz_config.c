/* config_load (inih, our line reader, config_set, ACL rules) on an
 * arbitrary file, held in a memfd and read through /proc/self/fd. */
#include "fuzz.h"

#include <sys/mman.h>
#include <unistd.h>

#include "../../common/err.h"
#include "../../server/config.h"

static int fd = -1;
static char path[64];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_quiet();
    fd = memfd_create("fuzz-config", 0);
    if (fd < 0)
        abort();
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config c;
    char err[512] = "";
    size_t i;

    if (ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size)
        abort();
    config_defaults(&c);
    if (config_load(&c, path, err, sizeof(err)) == REG_OK) {
        /* Whatever loads is within the documented bounds. */
        FUZZ_CHECK(c.threads >= 1 && c.threads <= 256);
        FUZZ_CHECK(c.max_connections >= 1 && c.max_connections <= 65536);
        FUZZ_CHECK(c.timeout >= 1 && c.timeout <= 86400 && c.shutdown_timeout <= 3600);
        FUZZ_CHECK(c.max_manifest_size >= 1024 && c.max_manifest_size <= (64u << 20));
        FUZZ_CHECK(c.index_max_size >= (1u << 20) && c.index_max_size <= (1ULL << 40));
        FUZZ_CHECK(c.gc_interval >= 0 && c.gc_interval <= 366L * 86400);
        FUZZ_CHECK(c.gc_grace >= 0 && c.gc_upload_ttl >= 0);
        FUZZ_CHECK(c.auth_token_ttl >= 10 && c.auth_leeway >= 0 && c.auth_leeway <= 600);
        FUZZ_CHECK(strchr(c.listen, ':') && c.root[0]);
        FUZZ_CHECK(c.metrics_enabled == 0 || c.metrics_enabled == 1);
        FUZZ_CHECK(!c.metrics_listen[0] || strchr(c.metrics_listen, ':'));
        FUZZ_CHECK(strlen(c.tls_key) < sizeof(c.tls_key) &&
                   strlen(c.auth_realm) < sizeof(c.auth_realm));
        for (i = 0; i < c.ngroups; i++)
            FUZZ_CHECK(strchr(c.groups[i], '='));
    } else {
        FUZZ_CHECK(err[0] != '\0');
    }
    config_free(&c);
    return 0;
}
