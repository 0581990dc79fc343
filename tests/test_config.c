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
    config_free(&c);
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

/* --- the table: messages, environment, printing -------------------------------- */

/* config_set's error for section/key = value. */
static const char *set_error(const char *section, const char *key, const char *value)
{
    static char err[512];
    struct config c;

    config_defaults(&c);
    err[0] = '\0';
    cr_assert_eq(config_set(&c, section, key, value, err, sizeof(err)), REG_E_CONFIG,
                 "%s=%s accepted", key, value);
    config_free(&c);
    return err;
}

Test(config_table, errors_say_key_expectation_and_value)
{
    cr_assert_str_eq(set_error("server", "threads", "0"), "threads: expected 1..256, got '0'");
    cr_assert_str_eq(set_error("server", "timeout", "0"),
                     "timeout: expected seconds 1..86400, got '0'");
    cr_assert_str_eq(set_error("server", "connection_memory", "2M"),
                     "connection_memory: expected 8K..1M, got '2M'");
    cr_assert_str_eq(set_error("storage", "index_max_size", "1K"),
                     "index_max_size: expected 1M..1024G, got '1K'");
    cr_assert_str_eq(set_error("gc", "interval", "soon"),
                     "interval: expected a duration such as 1h, 30m or 0 (off), got 'soon'");
    cr_assert_str_eq(set_error("log", "level", "loud"),
                     "level: expected debug, info, warn or error, got 'loud'");
    cr_assert_str_eq(set_error("auth", "mode", "kerberos"),
                     "mode: expected none, basic or token, got 'kerberos'");
    cr_assert_str_eq(set_error("storage", "read_only", "maybe"),
                     "read_only: expected true or false, got 'maybe'");
    cr_assert_str_eq(set_error("server", "listen", "5000"),
                     "listen: expected host:port, got '5000'");
    cr_assert_str_eq(set_error("server", "colour", "blue"), "unknown key 'colour' in [server]");
}

Test(config_table, durations_take_units_and_sizes_take_either_case)
{
    struct config c;
    char err[256];

    config_defaults(&c);
    cr_assert_eq(config_set(&c, "gc", "grace", "90", err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_eq(c.gc_grace, 90);
    cr_assert_eq(config_set(&c, "gc", "grace", "30m", err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_eq(c.gc_grace, 1800);
    cr_assert_eq(config_set(&c, "gc", "upload_ttl", "7d", err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_eq(c.gc_upload_ttl, 7 * 86400);
    cr_assert_eq(config_set(&c, "gc", "grace", "367d", err, sizeof(err)), REG_E_CONFIG);
    cr_assert_eq(config_set(&c, "gc", "grace", "1H", err, sizeof(err)), REG_E_CONFIG);
    cr_assert_eq(config_set(&c, "storage", "ready_min_free", "2g", err, sizeof(err)), REG_OK);
    cr_assert_eq(c.ready_min_free, 2ULL << 30);
    cr_assert_eq(config_set(&c, "storage", "read_only", "on", err, sizeof(err)), REG_OK);
    cr_assert_eq(c.read_only, 1);
    config_free(&c);
}

Test(config_table, every_key_has_a_default_the_table_accepts_and_prints_back)
{
    size_t n, i;
    const struct config_key *k = config_keys(&n);
    struct config c, d;
    char buf[4096], err[256];

    cr_assert_gt(n, 30);
    config_defaults(&c);
    cr_assert_eq(c.log_level, LOG_INFO, "log level names follow enum log_level");
    cr_assert_eq(c.read_only, 0);
    cr_assert_eq(c.gc_interval, 3600);
    cr_assert_eq(c.ready_min_free, 1ULL << 30);
    for (i = 0; i < n; i++) {
        if (k[i].type == CONFIG_LIST)
            continue;
        config_format(&c, &k[i], buf, sizeof(buf));
        if (k[i].def == NULL)
            cr_assert_str_eq(buf, "", "%s has no default but prints '%s'", k[i].key, buf);
        config_defaults(&d);
        memset((char *)&d + k[i].offset, 0x5a, k[i].width);
        cr_assert_eq(config_set(&d, k[i].section, k[i].key, buf, err, sizeof(err)), REG_OK,
                     "%s = %s: %s", k[i].key, buf, err);
        cr_assert(config_same(&c, &d, &k[i]), "%s does not read back what it prints", k[i].key);
    }
}

Test(config_table, printed_configuration_loads_to_the_same_values)
{
    size_t n, i;
    const struct config_key *k = config_keys(&n);
    struct config c, d;
    char path[128], err[512];
    FILE *f;

    config_defaults(&c);
    cr_assert_eq(config_set(&c, "server", "threads", "9", err, sizeof(err)), REG_OK);
    cr_assert_eq(config_set(&c, "gc", "grace", "90m", err, sizeof(err)), REG_OK);
    cr_assert_eq(config_set(&c, "auth", "rule", "anonymous pull public/*", err, sizeof(err)),
                 REG_OK, "%s", err);
    cr_assert_eq(config_set(&c, "auth", "rule", "group:ops * *", err, sizeof(err)), REG_OK);
    cr_assert_eq(config_set(&c, "groups", "ops", "alice, bob", err, sizeof(err)), REG_OK);
    cr_assert_eq(config_set(&c, "auth", "realm", "", err, sizeof(err)), REG_OK);
    snprintf(path, sizeof(path), "%s/registry.conf", tmpdir);
    f = fopen(path, "w");
    cr_assert_not_null(f);
    config_print(&c, f);
    cr_assert_eq(fclose(f), 0);
    config_defaults(&d);
    cr_assert_eq(config_load(&d, path, err, sizeof(err)), REG_OK, "%s", err);
    for (i = 0; i < n; i++)
        cr_assert(config_same(&c, &d, &k[i]), "%s differs after a round trip", k[i].key);
    cr_assert(config_same_groups(&c, &d));
    cr_assert_eq(d.auth_nrules, 2);
    config_free(&c);
    config_free(&d);
}

TestSuite(config_env, .init = setup, .fini = teardown);

Test(config_env, variables_override_the_file)
{
    struct config c;
    char err[512];

    cr_assert_eq(load("[server]\nlisten = 127.0.0.1:6000\nthreads = 2\n[auth]\n"
                      "rule = anonymous pull a/*\n",
                      &c, err, sizeof(err)),
                 REG_OK, "%s", err);
    setenv("REGISTRY_SERVER_LISTEN", "0.0.0.0:5000", 1);
    setenv("REGISTRY_STORAGE_ROOT", "/srv/registry", 1);
    setenv("REGISTRY_AUTH_MODE", "basic", 1);
    setenv("REGISTRY_STORAGE_READ_ONLY", "true", 1);
    setenv("REGISTRY_GC_INTERVAL", "15m", 1);
    setenv("REGISTRY_AUTH_RULE", "anonymous pull public/* ; authenticated * *", 1);
    /* Not ours (containers/image's credentials file): ignored. */
    setenv("REGISTRY_AUTH_FILE", "/nowhere/auth.json", 1);
    cr_assert_eq(config_env(&c, err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_str_eq(c.listen, "0.0.0.0:5000");
    cr_assert_eq(c.threads, 2, "keys without a variable keep the file's value");
    cr_assert_str_eq(c.root, "/srv/registry");
    cr_assert_eq(c.auth_mode, 1);
    cr_assert_eq(c.read_only, 1);
    cr_assert_eq(c.gc_interval, 900);
    cr_assert_eq(c.auth_nrules, 2, "the variable's rules replace the file's");
    cr_assert_str_eq(c.auth_rules[0], "anonymous pull public/*");
    cr_assert_str_eq(c.auth_rules[1], "authenticated * *");
    config_free(&c);
}

Test(config_env, a_bad_value_names_the_variable)
{
    struct config c;
    char err[512];

    config_defaults(&c);
    setenv("REGISTRY_SERVER_MAX_CONNECTIONS", "lots", 1);
    cr_assert_eq(config_env(&c, err, sizeof(err)), REG_E_CONFIG);
    cr_assert_str_eq(err, "environment REGISTRY_SERVER_MAX_CONNECTIONS: max_connections: expected "
                          "1..65536, got 'lots'");
    cr_assert_eq(c.max_connections, 1024);
    unsetenv("REGISTRY_SERVER_MAX_CONNECTIONS");
    setenv("REGISTRY_AUTH_RULE", "nobody-knows pull x", 1);
    cr_assert_eq(config_env(&c, err, sizeof(err)), REG_E_CONFIG);
    cr_assert(strstr(err, "REGISTRY_AUTH_RULE"), "%s", err);
    config_free(&c);
}

/* --- registry.conf.sample and docs/configuration.md cover the table ------------ */

/* A file of the source tree (tests run from the top of it, or from tests/). */
static FILE *open_source(const char *name)
{
    char path[256];
    FILE *f = fopen(name, "r");

    if (!f) {
        snprintf(path, sizeof(path), "../%s", name);
        f = fopen(path, "r");
    }
    cr_assert_not_null(f, "cannot open %s from the source tree", name);
    return f;
}

/* Whether "section key" is among the n entries of seen. */
static int has(char seen[][96], size_t n, const char *section, const char *key)
{
    char want[96];
    size_t i;

    snprintf(want, sizeof(want), "%s %s", section, key);
    for (i = 0; i < n; i++)
        if (!strcmp(seen[i], want))
            return 1;
    return 0;
}

/* The keys the sample sets or shows commented out ("# key = value"), each
 * as "section key"; every one must be accepted in its section. */
static size_t sample_keys(char seen[][96], size_t max)
{
    FILE *f = open_source("registry.conf.sample");
    char line[512], section[32] = "", key[64], err[512];
    size_t n = 0;
    struct config c;

    config_defaults(&c);
    while (fgets(line, sizeof(line), f)) {
        char *p = line, *eq, *v, *end;

        line[strcspn(line, "\n")] = '\0';
        if (p[0] == '#' || p[0] == ';')
            p += p[1] == ' ' ? 2 : 1;
        if (sscanf(p, "[%31[a-z0-9._-]]", section) == 1)
            continue;
        /* A key is a lower-case word right before " =": prose is not. */
        eq = strstr(p, " =");
        if (!eq || eq == p || (size_t)(eq - p) >= sizeof(key) ||
            strspn(p, "abcdefghijklmnopqrstuvwxyz_") != (size_t)(eq - p))
            continue;
        snprintf(key, sizeof(key), "%.*s", (int)(eq - p), p);
        v = eq + 2;
        while (*v == ' ')
            v++;
        end = v + strlen(v);
        while (end > v && end[-1] == ' ')
            *--end = '\0';
        cr_assert(section[0], "key %s before any section", key);
        cr_assert_eq(config_set(&c, section, key, v, err, sizeof(err)), REG_OK,
                     "registry.conf.sample: [%s] %s = %s is refused: %s", section, key, v, err);
        cr_assert_lt(n, max);
        /* [proxy.NAME] sets the keys of the proxy table, section "proxy". */
        snprintf(seen[n++], 96, "%.*s %s",
                 !strncmp(section, "proxy.", 6) ? 5 : (int)strlen(section), section, key);
    }
    fclose(f);
    config_free(&c);
    return n;
}

/* The keys docs/configuration.md documents: the backquoted names in the
 * first column of the tables under each "## [section]" heading. */
static size_t doc_keys(char seen[][96], size_t max)
{
    FILE *f = open_source("docs/configuration.md");
    char line[2048], section[32] = "";
    size_t n = 0;

    while (fgets(line, sizeof(line), f)) {
        char *p, *cell_end;

        if (sscanf(line, "## [%31[a-z0-9]]", section) == 1)
            continue;
        if (!strncmp(line, "## ", 3))
            section[0] = '\0';
        if (!section[0] || line[0] != '|' || !(cell_end = strchr(line + 1, '|')))
            continue;
        *cell_end = '\0';
        for (p = strchr(line, '`'); p; p = strchr(p, '`')) {
            char *close = strchr(p + 1, '`');

            if (!close)
                break;
            cr_assert_lt(n, max);
            snprintf(seen[n++], 96, "%s %.*s", section, (int)(close - p - 1), p + 1);
            p = close + 1;
        }
    }
    fclose(f);
    return n;
}

Test(config_docs, every_key_is_in_the_sample_and_the_docs_and_every_sample_key_is_accepted)
{
    static char sample[256][96], doc[256][96];
    size_t ns = sample_keys(sample, 256), nd = doc_keys(doc, 256), n, i;
    const struct config_key *k = config_keys(&n);

    cr_assert_gt(ns, 20, "the sample parser found only %zu keys", ns);
    for (i = 0; i < n; i++) {
        cr_expect(has(sample, ns, k[i].section, k[i].key), "[%s] %s is not in registry.conf.sample",
                  k[i].section, k[i].key);
        cr_expect(has(doc, nd, k[i].section, k[i].key), "[%s] %s is not in docs/configuration.md",
                  k[i].section, k[i].key);
    }
    k = config_proxy_keys(&n);
    for (i = 0; i < n; i++) {
        cr_expect(has(sample, ns, "proxy", k[i].key), "[proxy.NAME] %s is not in the sample",
                  k[i].key);
        cr_expect(has(doc, nd, "proxy", k[i].key), "[proxy.NAME] %s is not in the docs", k[i].key);
    }
    for (i = 0; i < ns; i++) {
        char section[32], key[64];

        cr_assert_eq(sscanf(sample[i], "%31s %63s", section, key), 2);
        if (strcmp(section, "groups") != 0)
            cr_expect(config_key_find(section, key) != NULL, "sample key %s is not in the table",
                      sample[i]);
    }
}

Test(config_load, metrics_keys_set_and_check_their_values)
{
    struct config c;
    char err[256];

    config_defaults(&c);
    cr_assert_eq(c.metrics_enabled, 1, "on by default");
    cr_assert_str_eq(c.metrics_listen, "", "on the main listener by default");
    cr_assert_eq(load("[metrics]\nenabled = false\nlisten = 10.0.0.5:9101\n", &c, err, sizeof(err)),
                 REG_OK, "%s", err);
    cr_assert_eq(c.metrics_enabled, 0);
    cr_assert_str_eq(c.metrics_listen, "10.0.0.5:9101");
    config_free(&c);
    cr_assert_eq(load("[metrics]\nlisten =\n", &c, err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_str_eq(c.metrics_listen, "");
    config_free(&c);
    expect_refused("metrics", "enabled", "maybe");
    expect_refused("metrics", "listen", "9101");
}

/* --- [proxy.NAME] -------------------------------------------------------------- */

TestSuite(config_proxy, .init = setup, .fini = teardown);

Test(config_proxy, sections_become_upstreams_with_defaults)
{
    struct config c;
    char err[512];

    cr_assert_eq(load("[proxy.hub]\nurl = https://registry-1.docker.io\nprefix = mirror/hub\n"
                      "tag_ttl = 30s\nevict_after = 7d\nusername = u\npassword = p\n"
                      "[proxy.all]\nurl = http://127.0.0.1:5001\n",
                      &c, err, sizeof(err)),
                 REG_OK, "%s", err);
    cr_assert_eq(config_check(&c, err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_eq(c.nproxies, 2);
    cr_assert_str_eq(c.proxies[0].name, "hub");
    cr_assert_str_eq(c.proxies[0].url, "https://registry-1.docker.io");
    cr_assert_str_eq(c.proxies[0].prefix, "mirror/hub");
    cr_assert_eq(c.proxies[0].tag_ttl, 30);
    cr_assert_str_eq(c.proxies[0].password, "p");
    cr_assert_str_eq(c.proxies[1].prefix, "");
    cr_assert_eq(c.proxies[1].tag_ttl, 300, "the default tag_ttl is 5m");
    cr_assert_eq(c.proxies[0].evict_after, 7 * 86400);
    cr_assert_eq(c.proxies[1].evict_after, 0, "by default nothing is evicted");
    config_free(&c);
}

/* Load text and expect config_check to refuse it naming line. */
static void expect_check_refused(const char *text, int line, const char *words)
{
    char path[128], err[512], where[160];
    struct config c;

    write_conf(text, path, sizeof(path));
    config_defaults(&c);
    cr_assert_eq(config_load(&c, path, err, sizeof(err)), REG_OK, "%s", err);
    err[0] = '\0';
    cr_assert_eq(config_check(&c, err, sizeof(err)), REG_E_CONFIG, "accepted: %s", text);
    snprintf(where, sizeof(where), "%s:%d:", path, line);
    cr_expect_not_null(strstr(err, where), "'%s' lacks '%s'", err, where);
    cr_expect_not_null(strstr(err, words), "'%s' lacks '%s'", err, words);
    config_free(&c);
}

Test(config_proxy, at_most_one_empty_prefix_and_no_overlaps)
{
    expect_check_refused("[proxy.a]\nurl = http://a\n\n[proxy.b]\nurl = http://b\n", 5,
                         "at most one");
    expect_check_refused("[proxy.a]\nurl = http://a\nprefix = m/x\n[proxy.b]\n"
                         "url = http://b\nprefix = m/x/y\n",
                         5, "overlaps");
    expect_check_refused("[proxy.a]\nprefix = m\n", 2, "no url");
    expect_check_refused("[proxy.a]\nurl = http://a\nusername = u\n", 2, "go together");
}

Test(config_proxy, neighbouring_prefixes_are_fine)
{
    struct config c;
    char err[512];

    cr_assert_eq(load("[proxy.a]\nurl = http://a\nprefix = m/x\n[proxy.b]\nurl = http://b\n"
                      "prefix = m/xy\n",
                      &c, err, sizeof(err)),
                 REG_OK, "%s", err);
    cr_assert_eq(config_check(&c, err, sizeof(err)), REG_OK, "%s", err);
    config_free(&c);
}

Test(config_proxy, bad_values_and_names_are_refused_with_their_line)
{
    expect_refused("proxy.a", "url", "ftp://x");
    expect_refused("proxy.a", "url", "https://user:secret@upstream.example");
    expect_refused("proxy.a", "prefix", "/m");
    expect_refused("proxy.a", "tag_ttl", "soon");
    expect_refused("proxy.a", "evict_after", "-1d");
    expect_refused("proxy.a", "colour", "red");
}

Test(config_proxy, a_section_without_a_good_name_is_refused)
{
    struct config c;
    char err[512];

    cr_assert_eq(load("\n[proxy.A]\nurl = http://x\n", &c, err, sizeof(err)), REG_E_CONFIG);
    cr_assert_not_null(strstr(err, ":3: [proxy.A]: a proxy section is [proxy.NAME]"), "%s", err);
    config_free(&c);
    cr_assert_eq(load("[proxy]\nurl = http://x\n", &c, err, sizeof(err)), REG_E_CONFIG);
    cr_assert_not_null(strstr(err, ":2: [proxy]"), "%s", err);
    config_free(&c);
}

Test(config_proxy, environment_sets_and_adds_proxies)
{
    struct config c;
    char err[512];

    cr_assert_eq(load("[proxy.hub]\nurl = http://a\nprefix = m\n", &c, err, sizeof(err)), REG_OK);
    setenv("REGISTRY_PROXY_HUB_PASSWORD", "secret", 1);
    setenv("REGISTRY_PROXY_HUB_USERNAME", "me", 1);
    setenv("REGISTRY_PROXY_MY_LAB_URL", "http://lab:5000", 1);
    cr_assert_eq(config_env(&c, err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_eq(c.nproxies, 2);
    cr_assert_str_eq(c.proxies[0].password, "secret");
    cr_assert_str_eq(c.proxies[1].name, "my_lab");
    cr_assert_str_eq(c.proxies[1].url, "http://lab:5000");
    setenv("REGISTRY_PROXY_MY_LAB_TAG_TTL", "never", 1);
    cr_assert_eq(config_env(&c, err, sizeof(err)), REG_E_CONFIG);
    cr_assert_not_null(strstr(err, "REGISTRY_PROXY_MY_LAB_TAG_TTL"), "%s", err);
    unsetenv("REGISTRY_PROXY_HUB_PASSWORD");
    unsetenv("REGISTRY_PROXY_HUB_USERNAME");
    unsetenv("REGISTRY_PROXY_MY_LAB_URL");
    unsetenv("REGISTRY_PROXY_MY_LAB_TAG_TTL");
    config_free(&c);
}

Test(config_proxy, printed_configuration_hides_the_password)
{
    struct config c;
    char err[512], *buf = NULL;
    size_t len = 0;
    FILE *f;

    cr_assert_eq(load("[proxy.hub]\nurl = http://a\nusername = u\npassword = hunter2\n", &c, err,
                      sizeof(err)),
                 REG_OK);
    f = open_memstream(&buf, &len);
    config_print(&c, f);
    fclose(f);
    cr_assert_not_null(strstr(buf, "[proxy.hub]\nurl = http://a\n"), "%s", buf);
    cr_assert_null(strstr(buf, "hunter2"));
    free(buf);
    config_free(&c);
}
