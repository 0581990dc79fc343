/* Unit tests for server/config: defaults, INI loading and value checks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>

#include "../common/err.h"
#include "../common/log.h"
#include "../server/config.h"

/* A private directory per test (tests run in parallel processes). */
static char tmpdir[64];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/regtest-config-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char path[128];

    snprintf(path, sizeof(path), "%s/registry.conf", tmpdir);
    unlink(path);
    rmdir(tmpdir);
}

TestSuite(config_load, .init = setup, .fini = teardown);

/* Write text to <tmpdir>/registry.conf; the path goes to path. */
static void write_conf(const char *text, char *path, size_t size)
{
    FILE *f;

    snprintf(path, size, "%s/registry.conf", tmpdir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    cr_assert_eq(fputs(text, f) >= 0, 1);
    cr_assert_eq(fclose(f), 0);
}

/* Load text over the defaults; the error text goes to err. */
static int load(const char *text, struct config *c, char *err, size_t errsize)
{
    char path[128];

    write_conf(text, path, sizeof(path));
    config_defaults(c);
    err[0] = '\0';
    return config_load(c, path, err, errsize);
}

/* Load a file whose line 3 sets section/key to value; expect refusal with
 * "path:3:" and the key name in the message. */
static void expect_refused(const char *section, const char *key, const char *value)
{
    char text[256], path[128], err[512], where[160];
    struct config c;

    snprintf(text, sizeof(text), "; line 1\n[%s]\n%s = %s\n", section, key, value);
    write_conf(text, path, sizeof(path));
    config_defaults(&c);
    err[0] = '\0';
    cr_assert_eq(config_load(&c, path, err, sizeof(err)), REG_E_CONFIG, "%s=%s accepted", key,
                 value);
    snprintf(where, sizeof(where), "%s:3:", path);
    cr_assert_not_null(strstr(err, where), "'%s' lacks '%s'", err, where);
    cr_assert_not_null(strstr(err, key), "'%s' lacks '%s'", err, key);
}

/* --- defaults ---------------------------------------------------------------- */

Test(config_defaults, every_field_has_its_documented_default)
{
    struct config c;

    memset(&c, 0xff, sizeof(c));
    config_defaults(&c);
    cr_assert_str_eq(c.listen, "127.0.0.1:5000");
    cr_assert_eq(c.threads, 4);
    cr_assert_eq(c.max_connections, 1024);
    cr_assert_eq(c.timeout, 120);
    cr_assert_eq(c.shutdown_timeout, 30);
    cr_assert_eq(c.max_manifest_size, (size_t)4 << 20);
    cr_assert_str_eq(c.root, "./data");
    cr_assert_eq(c.delete_enabled, 0);
    cr_assert_eq(c.index_max_size, (size_t)16 << 30);
    cr_assert_eq(c.log_level, LOG_INFO);
    cr_assert_eq(c.log_format, LOG_TEXT);
}

/* --- config_load ------------------------------------------------------------- */

Test(config_load, file_with_every_key_sets_every_field)
{
    static const char text[] = "[server]\n"
                               "listen = 0.0.0.0:6000\n"
                               "threads = 16\n"
                               "max_connections = 200\n"
                               "timeout = 30\n"
                               "shutdown_timeout = 0\n"
                               "max_manifest_size = 8M\n"
                               "\n"
                               "[storage]\n"
                               "root = /srv/registry\n"
                               "delete = true\n"
                               "index_max_size = 2G\n"
                               "\n"
                               "[log]\n"
                               "; comments are fine\n"
                               "level = debug\n"
                               "format = json\n";
    struct config c;
    char err[256];

    cr_assert_eq(load(text, &c, err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_str_eq(c.listen, "0.0.0.0:6000");
    cr_assert_eq(c.threads, 16);
    cr_assert_eq(c.max_connections, 200);
    cr_assert_eq(c.timeout, 30);
    cr_assert_eq(c.shutdown_timeout, 0);
    cr_assert_eq(c.max_manifest_size, (size_t)8 << 20);
    cr_assert_str_eq(c.root, "/srv/registry");
    cr_assert_eq(c.delete_enabled, 1);
    cr_assert_eq(c.index_max_size, (size_t)2 << 30);
    cr_assert_eq(c.log_level, LOG_DEBUG);
    cr_assert_eq(c.log_format, LOG_JSON);
}

Test(config_load, keys_absent_from_the_file_keep_their_defaults)
{
    struct config c;
    char err[256];

    cr_assert_eq(load("[server]\nthreads = 2\n", &c, err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_eq(c.threads, 2);
    cr_assert_str_eq(c.listen, "127.0.0.1:5000");
    cr_assert_str_eq(c.root, "./data");
    cr_assert_eq(c.max_manifest_size, (size_t)4 << 20);
}

Test(config_load, empty_file_is_fine)
{
    struct config c;
    char err[256];

    cr_assert_eq(load("", &c, err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_eq(c.threads, 4);
}

Test(config_load, unknown_key_names_file_line_and_key)
{
    expect_refused("server", "colour", "blue");
}

Test(config_load, known_key_in_the_wrong_section_is_unknown)
{
    expect_refused("storage", "threads", "4");
}

Test(config_load, missing_file_is_refused_with_its_path)
{
    struct config c;
    char path[128], err[512];

    snprintf(path, sizeof(path), "%s/absent.conf", tmpdir);
    config_defaults(&c);
    cr_assert_eq(config_load(&c, path, err, sizeof(err)), REG_E_CONFIG);
    cr_assert_not_null(strstr(err, path), "%s", err);
}

Test(config_load, syntax_error_gives_its_line)
{
    char path[128], err[512], where[160];
    struct config c;

    write_conf("[server]\nthreads = 2\nthis line has no equals sign\n", path, sizeof(path));
    config_defaults(&c);
    cr_assert_eq(config_load(&c, path, err, sizeof(err)), REG_E_CONFIG);
    snprintf(where, sizeof(where), "%s:3:", path);
    cr_assert_not_null(strstr(err, where), "'%s' lacks '%s'", err, where);
}

Test(config_load, zero_threads_refused)
{
    expect_refused("server", "threads", "0");
}

Test(config_load, non_numeric_and_out_of_range_numbers_refused)
{
    expect_refused("server", "threads", "four");
    expect_refused("server", "threads", "4x");
    expect_refused("server", "threads", "-1");
    expect_refused("server", "threads", "257");
    expect_refused("server", "max_connections", "0");
    expect_refused("server", "timeout", "0");
    expect_refused("server", "shutdown_timeout", "3601");
}

Test(config_load, delete_maybe_refused)
{
    expect_refused("storage", "delete", "maybe");
}

Test(config_load, listen_without_colon_refused)
{
    expect_refused("server", "listen", "5000");
}

Test(config_load, level_loud_refused)
{
    expect_refused("log", "level", "loud");
}

Test(config_load, unknown_log_format_refused)
{
    expect_refused("log", "format", "xml");
}

Test(config_load, max_manifest_size_of_one_byte_refused)
{
    expect_refused("server", "max_manifest_size", "1");
}

Test(config_load, sizes_beyond_their_caps_refused)
{
    expect_refused("server", "max_manifest_size", "65M");
    expect_refused("server", "max_manifest_size", "1G");
    expect_refused("storage", "index_max_size", "1025G");
    expect_refused("storage", "index_max_size", "1K");
    expect_refused("storage", "index_max_size", "16T");
    expect_refused("storage", "index_max_size", "G");
}

Test(config_load, size_suffixes_are_powers_of_1024)
{
    struct config c;
    char err[256];

    cr_assert_eq(load("[server]\nmax_manifest_size = 4M\n[storage]\nindex_max_size = 16G\n", &c,
                      err, sizeof(err)),
                 REG_OK, "%s", err);
    cr_assert_eq(c.max_manifest_size, (size_t)4 << 20);
    cr_assert_eq(c.index_max_size, (size_t)16 << 30);
    cr_assert_eq(load("[server]\nmax_manifest_size = 1k\n[storage]\nindex_max_size = 1048576\n", &c,
                      err, sizeof(err)),
                 REG_OK, "%s", err);
    cr_assert_eq(c.max_manifest_size, 1024);
    cr_assert_eq(c.index_max_size, (size_t)1 << 20);
}

Test(config_load, first_bad_key_is_reported_not_a_later_one)
{
    char path[128], err[512], where[160];
    struct config c;

    write_conf("[server]\nthreads = 0\ntimeout = 0\n", path, sizeof(path));
    config_defaults(&c);
    cr_assert_eq(config_load(&c, path, err, sizeof(err)), REG_E_CONFIG);
    snprintf(where, sizeof(where), "%s:2:", path);
    cr_assert_not_null(strstr(err, where), "'%s' lacks '%s'", err, where);
    cr_assert_not_null(strstr(err, "threads"), "%s", err);
}

Test(config_load, error_line_and_error_text_come_from_the_same_line)
{
    char path[128], err[512], line2[160], line4[160];
    struct config c;
    int blames2, blames4, names_key;

    /* A syntax error on line 2 and an unknown key on line 4: either may be
     * reported, but the line number and the text must belong together. */
    write_conf("[server]\nno equals sign here\n[server]\ncolour = blue\n", path, sizeof(path));
    config_defaults(&c);
    cr_assert_eq(config_load(&c, path, err, sizeof(err)), REG_E_CONFIG);
    snprintf(line2, sizeof(line2), "%s:2:", path);
    snprintf(line4, sizeof(line4), "%s:4:", path);
    blames2 = strstr(err, line2) != NULL;
    blames4 = strstr(err, line4) != NULL;
    names_key = strstr(err, "colour") != NULL;
    cr_assert((blames2 && !names_key) || (blames4 && names_key), "mismatched: '%s'", err);
}

/* --- config_set -------------------------------------------------------------- */

Test(config_set, sets_one_key_like_the_file_does)
{
    struct config c;
    char err[256];

    config_defaults(&c);
    cr_assert_eq(config_set(&c, "server", "listen", "[::1]:5001", err, sizeof(err)), REG_OK);
    cr_assert_str_eq(c.listen, "[::1]:5001");
    cr_assert_eq(config_set(&c, "storage", "delete", "yes", err, sizeof(err)), REG_OK);
    cr_assert_eq(c.delete_enabled, 1);
    cr_assert_eq(config_set(&c, "storage", "delete", "off", err, sizeof(err)), REG_OK);
    cr_assert_eq(c.delete_enabled, 0);
    cr_assert_eq(config_set(&c, "log", "level", "error", err, sizeof(err)), REG_OK);
    cr_assert_eq(c.log_level, LOG_ERROR);
}

Test(config_set, refused_value_leaves_the_field_unchanged)
{
    struct config c;
    char err[256];

    config_defaults(&c);
    cr_assert_eq(config_set(&c, "server", "threads", "0", err, sizeof(err)), REG_E_CONFIG);
    cr_assert_eq(c.threads, 4);
    cr_assert_eq(config_set(&c, "storage", "delete", "maybe", err, sizeof(err)), REG_E_CONFIG);
    cr_assert_eq(c.delete_enabled, 0);
    cr_assert_eq(config_set(&c, "log", "level", "loud", err, sizeof(err)), REG_E_CONFIG);
    cr_assert_eq(c.log_level, LOG_INFO);
    cr_assert_eq(config_set(&c, "server", "listen", "localhost", err, sizeof(err)), REG_E_CONFIG);
    cr_assert_str_eq(c.listen, "127.0.0.1:5000");
    cr_assert_eq(config_set(&c, "server", "max_manifest_size", "1", err, sizeof(err)),
                 REG_E_CONFIG);
    cr_assert_eq(c.max_manifest_size, (size_t)4 << 20);
}

Test(config_set, empty_root_refused)
{
    struct config c;
    char err[256];

    config_defaults(&c);
    cr_assert_eq(config_set(&c, "storage", "root", "", err, sizeof(err)), REG_E_CONFIG);
    cr_assert_not_null(strstr(err, "root"), "%s", err);
}

Test(config, manifest_buffers_below_the_largest_manifest_are_refused)
{
    struct config c;
    char err[256] = "";

    config_defaults(&c);
    cr_assert_eq(config_check(&c, err, sizeof(err)), REG_OK);
    cr_assert_eq(config_set(&c, "server", "max_manifest_size", "8M", err, sizeof(err)), REG_OK);
    cr_assert_eq(config_set(&c, "server", "manifest_buffers", "4M", err, sizeof(err)), REG_OK);
    cr_assert_eq(config_check(&c, err, sizeof(err)), REG_E_CONFIG);
    cr_assert(strstr(err, "manifest_buffers"), "%s", err);
    config_free(&c);
}
