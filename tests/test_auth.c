/* Unit tests for auth/: access rules (acl), htpasswd files with bcrypt,
 * and tokens issued and verified with a real key (JWT via libjwt). */
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "../auth/acl.h"
#include "../auth/htpasswd.h"
#include "../auth/token.h"
#include "../common/err.h"

/* --- access rules ---------------------------------------------------------------- */

static struct acl *rules(const char *const *text, size_t n)
{
    struct acl *a = NULL;
    char err[256];
    size_t i;

    cr_assert_eq(acl_new(&a), REG_OK);
    for (i = 0; i < n; i++)
        cr_assert_eq(acl_add_rule(a, text[i], err, sizeof(err)), REG_OK, "%s: %s", text[i], err);
    return a;
}

Test(acl, without_rules_users_may_do_everything_and_anonymous_nothing)
{
    struct acl *a = rules(NULL, 0);

    cr_assert_eq(acl_allowed(a, "alice", "any/repo"), ACL_ALL);
    cr_assert_eq(acl_allowed(a, NULL, "any/repo"), 0);
    cr_assert_not(acl_anonymous_has_rights(a));
    acl_free(a);
}

Test(acl, rules_add_up_and_match_repository_globs)
{
    static const char *const text[] = {
        "user:alice pull,push team/*",
        "user:alice delete team/scratch",
        "anonymous pull public/*",
        "authenticated pull ${user}/*",
    };
    struct acl *a = rules(text, 4);

    cr_assert_eq(acl_allowed(a, "alice", "team/app"), ACL_PULL | ACL_PUSH);
    cr_assert_eq(acl_allowed(a, "alice", "team/scratch"), ACL_PULL | ACL_PUSH | ACL_DELETE);
    cr_assert_eq(acl_allowed(a, "alice", "team/deep/app"), ACL_PULL | ACL_PUSH, "'*' crosses '/'");
    cr_assert_eq(acl_allowed(a, "bob", "team/app"), 0);
    cr_assert_eq(acl_allowed(a, "bob", "bob/x"), ACL_PULL, "${user} is the caller");
    cr_assert_eq(acl_allowed(a, "bob", "alice/x"), 0);
    cr_assert_eq(acl_allowed(a, NULL, "public/x"), ACL_PULL);
    cr_assert_eq(acl_allowed(a, "bob", "public/x"), 0, "anonymous rules are for anonymous callers");
    cr_assert(acl_anonymous_has_rights(a));
    acl_free(a);
}

Test(acl, groups_and_the_registry_wide_catalog)
{
    static const char *const text[] = {"group:ops * *", "user:carol catalog team/*"};
    struct acl *a = rules(text, 2);
    char err[256];

    cr_assert_eq(acl_add_group(a, "ops", "dave, erin", err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_eq(acl_allowed(a, "erin", "x/y"), ACL_ALL);
    cr_assert(acl_allowed(a, "dave", NULL) & ACL_CATALOG, "all repositories: the catalog too");
    cr_assert_eq(acl_allowed(a, "carol", NULL) & ACL_CATALOG, ACL_CATALOG);
    cr_assert_eq(acl_allowed(a, "frank", NULL), 0);
    acl_free(a);
}

Test(acl, malformed_rules_are_refused_with_a_reason)
{
    static const char *const bad[] = {"",           "user:alice",       "user:alice pull",
                                      "who pull x", "user:alice fly x", "user: pull x"};
    struct acl *a = NULL;
    char err[256];
    size_t i;

    cr_assert_eq(acl_new(&a), REG_OK);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        cr_assert_eq(acl_add_rule(a, bad[i], err, sizeof(err)), REG_E_CONFIG, "accepted '%s'",
                     bad[i]);
        cr_assert_neq(err[0], '\0', "no reason for '%s'", bad[i]);
    }
    cr_assert_eq(acl_parse_actions("pull,push", 9), ACL_PULL | ACL_PUSH);
    cr_assert_eq(acl_parse_actions("pull,jump", 9), 0);
    acl_free(a);
}

/* --- htpasswd ------------------------------------------------------------------- */

static void write_file(char *path, const char *text)
{
    int fd = mkstemp(path);

    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
}

Test(htpasswd, bcrypt_entries_verify_the_right_password_only)
{
    char path[] = "/tmp/regtest-htpasswd-XXXXXX", line[512], err[256];
    const char *salt = crypt_gensalt("$2b$", 5, NULL, 0);
    const char *hash;
    struct htpasswd *h = NULL;

    cr_assert_not_null(salt);
    hash = crypt("s3cret", salt);
    cr_assert_not_null(hash);
    snprintf(line, sizeof(line), "# a comment\nalice:%s\n\n", hash);
    write_file(path, line);
    cr_assert_eq(htpasswd_load(path, &h, err, sizeof(err)), REG_OK, "%s", err);
    cr_assert(htpasswd_has_user(h, "alice"));
    cr_assert_not(htpasswd_has_user(h, "bob"));
    cr_assert_eq(htpasswd_verify(h, "alice", "s3cret"), REG_OK);
    cr_assert_eq(htpasswd_verify(h, "alice", "S3cret"), REG_E_UNAUTHORIZED);
    cr_assert_eq(htpasswd_verify(h, "alice", ""), REG_E_UNAUTHORIZED);
    cr_assert_eq(htpasswd_verify(h, "bob", "s3cret"), REG_E_UNAUTHORIZED);
    htpasswd_free(h);
    unlink(path);
}

Test(htpasswd, a_missing_file_is_an_error_with_a_reason)
{
    struct htpasswd *h = NULL;
    char err[256] = "";

    cr_assert_neq(htpasswd_load("/nonexistent/htpasswd", &h, err, sizeof(err)), REG_OK);
    cr_assert_neq(err[0], '\0');
}

/* --- tokens --------------------------------------------------------------------- */

static struct token_signer *signer;
static struct token_verifier *verifier;
static char key_path[] = "/tmp/regtest-key-XXXXXX";

static void token_setup(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    char err[256];
    FILE *f;
    int fd;

    cr_assert_not_null(k);
    fd = mkstemp(key_path);
    cr_assert_geq(fd, 0);
    f = fdopen(fd, "w");
    cr_assert(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
    fclose(f);
    EVP_PKEY_free(k);
    cr_assert_eq(token_signer_load(key_path, &signer, err, sizeof(err)), REG_OK, "%s", err);
    cr_assert_eq(token_verifier_new(&verifier), REG_OK);
    cr_assert_eq(token_verifier_add_signer(verifier, signer), REG_OK);
}

static void token_teardown(void)
{
    token_verifier_free(verifier);
    token_signer_free(signer);
    unlink(key_path);
}

TestSuite(token, .init = token_setup, .fini = token_teardown);

static char *issue(time_t now, long ttl)
{
    json_t *access = json_pack("[{s:s, s:s, s:[s]}]", "type", "repository", "name", "team/app",
                               "actions", "pull");
    char *t = NULL;

    cr_assert_eq(token_issue(signer, "issuer", "alice", "registry", ttl, access, now, &t), REG_OK);
    json_decref(access);
    return t;
}

Test(token, an_issued_token_verifies_with_its_claims)
{
    time_t now = time(NULL);
    struct token_claims c;
    char *t = issue(now, 300);

    cr_assert_eq(token_verify(verifier, t, "issuer", "registry", 60, now, &c), REG_OK);
    cr_assert_str_eq(c.subject, "alice");
    cr_assert_eq(c.exp, (long)now + 300);
    cr_assert_str_eq(json_string_value(json_object_get(json_array_get(c.access, 0), "name")),
                     "team/app");
    json_decref(c.access);
    free(t);
}

Test(token, wrong_audience_issuer_expiry_or_bytes_are_refused)
{
    time_t now = time(NULL);
    struct token_claims c;
    char *t = issue(now, 300);
    size_t n = strlen(t);

    cr_assert_neq(token_verify(verifier, t, "issuer", "elsewhere", 60, now, &c), REG_OK);
    cr_assert_neq(token_verify(verifier, t, "someone", "registry", 60, now, &c), REG_OK);
    cr_assert_neq(token_verify(verifier, t, "issuer", "registry", 60, now + 300 + 61, &c), REG_OK);
    cr_assert_eq(token_verify(verifier, t, "issuer", "registry", 60, now + 300 + 59, &c), REG_OK,
                 "within the leeway");
    json_decref(c.access);
    /* One character of the signature changed. */
    t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';
    cr_assert_neq(token_verify(verifier, t, "issuer", "registry", 60, now, &c), REG_OK);
    free(t);
}
