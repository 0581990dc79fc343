/* Authentication, authorization and TLS against a real server. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "harness.h"

static struct server srv;

static void make_key(const char *name, const char *algo_opts)
{
    char cmd[1200];

    snprintf(cmd, sizeof(cmd), "openssl genpkey %s -out %s 2>/dev/null", algo_opts,
             server_file(&srv, name, NULL));
    cr_assert_eq(system(cmd), 0, "openssl genpkey");
}

#define RULES                                                                                      \
    "rule = user:alice * *\n"                                                                      \
    "rule = user:bob pull team-b/*, shared/*\n"                                                    \
    "rule = authenticated * ${user}/*\n"                                                           \
    "rule = anonymous pull public/*\n"

static void start_mode(const char *mode, const char *extra)
{
    char cfg[4096];

    server_prepare(&srv);
    write_users(&srv);
    make_key("key.pem", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048");
    snprintf(cfg, sizeof(cfg),
             "[storage]\ndelete = true\n[auth]\nmode = %s\nhtpasswd = %s\nkey = %s\n" RULES "%s",
             mode, server_file(&srv, "htpasswd", NULL), server_file(&srv, "key.pem", NULL),
             extra ? extra : "");
    server_launch(&srv, cfg);
}

static void setup_basic(void)
{
    start_mode("basic", NULL);
}

static void setup_token(void)
{
    start_mode("token", NULL);
}

static void teardown(void)
{
    char cmd[600];

    /* Credentials and tokens never reach the log. */
    snprintf(cmd, sizeof(cmd), "grep -qE 'secret|pw2|eyJ' %s",
             server_file(&srv, "server.log", NULL));
    cr_expect_neq(system(cmd), 0, "a password or a token is in the server log");
    server_destroy(&srv);
}

TestSuite(auth_basic, .init = setup_basic, .fini = teardown, .timeout = 120);
TestSuite(auth_token, .init = setup_token, .fini = teardown, .timeout = 120);

static char *basic(const char *user, const char *pass)
{
    static char h[4][400];
    static int next;
    char *out = h[next++ % 4], creds[200];
    unsigned char enc[300];

    snprintf(creds, sizeof(creds), "%s:%s", user, pass);
    EVP_EncodeBlock(enc, (unsigned char *)creds, (int)strlen(creds));
    snprintf(out, sizeof(h[0]), "Authorization: Basic %s", enc);
    return out;
}

static long st(const char *method, const char *path, const char *auth, char *code, size_t csize,
               char *www, size_t wsize)
{
    const char *hdrs[] = {auth, NULL};
    struct resp r;
    long s;

    http(&srv, method, path, NULL, 0, auth ? hdrs : NULL, &r);
    s = r.status;
    if (code)
        resp_error_code(&r, code, csize);
    if (www && !resp_header(&r, "WWW-Authenticate", www, wsize))
        www[0] = '\0';
    resp_free(&r);
    return s;
}

/* ---- basic ----------------------------------------------------------------- */

Test(auth_basic, no_credentials_get_401_with_basic_challenge_and_error_json)
{
    char code[64], www[512];

    cr_assert_eq(st("GET", "/v2/", NULL, code, sizeof(code), www, sizeof(www)), 401);
    cr_assert_str_eq(code, "UNAUTHORIZED");
    cr_assert_eq(strncmp(www, "Basic realm=", 12), 0, "%s", www);
    cr_assert_eq(st("GET", "/v2/team-a/app/tags/list", NULL, code, sizeof(code), NULL, 0), 401);
}

Test(auth_basic, wrong_password_is_401_right_one_200)
{
    char code[64];

    cr_assert_eq(st("GET", "/v2/", basic("alice", "nope"), code, sizeof(code), NULL, 0), 401);
    cr_assert_str_eq(code, "UNAUTHORIZED");
    cr_assert_eq(st("GET", "/v2/", basic("nobody", "secret"), NULL, 0, NULL, 0), 401);
    cr_assert_eq(st("GET", "/v2/", basic("alice", "secret"), NULL, 0, NULL, 0), 200);
}

Test(auth_basic, pull_only_user_pushing_is_403_denied)
{
    char code[64];

    cr_assert_eq(st("POST", "/v2/team-b/app/blobs/uploads/", basic("bob", "pw2"), code,
                    sizeof(code), NULL, 0),
                 403);
    cr_assert_str_eq(code, "DENIED");
    cr_assert_eq(
        st("POST", "/v2/team-b/app/blobs/uploads/", basic("alice", "secret"), NULL, 0, NULL, 0),
        202);
}

Test(auth_basic, personal_namespace_from_user_variable)
{
    cr_assert_eq(st("POST", "/v2/bob/tools/blobs/uploads/", basic("bob", "pw2"), NULL, 0, NULL, 0),
                 202);
    cr_assert_eq(
        st("POST", "/v2/alice/tools/blobs/uploads/", basic("bob", "pw2"), NULL, 0, NULL, 0), 403);
}

Test(auth_basic, anonymous_pull_allowed_on_one_namespace_refused_on_another)
{
    const char *hdrs[] = {basic("alice", "secret"), NULL};
    char d[200], path[400];
    struct resp r;

    digest_str("sha256", "pub", 3, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/public/x/blobs/uploads/?digest=%s", d);
    http(&srv, "POST", path, "pub", 3, hdrs, &r);
    cr_assert_eq(r.status, 201);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/private/x/blobs/uploads/?digest=%s", d);
    http(&srv, "POST", path, "pub", 3, hdrs, &r);
    cr_assert_eq(r.status, 201);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/public/x/blobs/%s", d);
    cr_assert_eq(st("GET", path, NULL, NULL, 0, NULL, 0), 200);
    snprintf(path, sizeof(path), "/v2/private/x/blobs/%s", d);
    cr_assert_eq(st("GET", path, NULL, NULL, 0, NULL, 0), 401);
    cr_assert_eq(st("POST", "/v2/public/x/blobs/uploads/", NULL, NULL, 0, NULL, 0), 401);
}

Test(auth_basic, catalog_lists_only_what_the_caller_may_pull)
{
    const char *hdrs[] = {basic("alice", "secret"), NULL};
    const char *repos[] = {"team-a/app", "team-b/app", "shared/base"};
    char d[200], path[400];
    struct resp r;
    size_t i;

    digest_str("sha256", "c", 1, d, sizeof(d));
    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "/v2/%s/blobs/uploads/?digest=%s", repos[i], d);
        http(&srv, "POST", path, "c", 1, hdrs, &r);
        cr_assert_eq(r.status, 201);
        resp_free(&r);
    }
    http(&srv, "GET", "/v2/_catalog", NULL, 0, hdrs, &r);
    cr_assert(strstr(r.body, "team-a/app") && strstr(r.body, "team-b/app"), "%s", r.body);
    resp_free(&r);
    hdrs[0] = basic("bob", "pw2");
    http(&srv, "GET", "/v2/_catalog?n=1", NULL, 0, hdrs, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_str_eq(r.body, "{\"repositories\":[\"shared/base\"]}");
    resp_free(&r);
    http(&srv, "GET", "/v2/_catalog", NULL, 0, hdrs, &r);
    cr_assert_str_eq(r.body, "{\"repositories\":[\"shared/base\",\"team-b/app\"]}");
    resp_free(&r);
}

Test(auth_basic, mount_needs_pull_on_the_source)
{
    const char *ha[] = {basic("alice", "secret"), NULL}, *hb[] = {basic("bob", "pw2"), NULL};
    char d[200], path[400];
    struct resp r;

    digest_str("sha256", "m", 1, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/team-a/private/blobs/uploads/?digest=%s", d);
    http(&srv, "POST", path, "m", 1, ha, &r);
    cr_assert_eq(r.status, 201);
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/bob/copy/blobs/uploads/?mount=%s&from=team-a/private", d);
    http(&srv, "POST", path, NULL, 0, hb, &r);
    cr_assert_eq(r.status, 202, "no pull on from: a plain session, not a mount");
    resp_free(&r);
    snprintf(path, sizeof(path), "/v2/bob/copy/blobs/uploads/?mount=%s", d);
    http(&srv, "POST", path, NULL, 0, hb, &r);
    cr_assert_eq(r.status, 202, "mount without from must not leak other repositories");
    resp_free(&r);
}

Test(auth_basic, malformed_authorization_headers_are_401)
{
    const char *bad[] = {"Authorization: Basic",          "Authorization: Basic !!!!",
                         "Authorization: Basic YWxpY2U=", "Authorization: Bearer",
                         "Authorization: Bearer a.b.c",   "Authorization: Digest username=x",
                         "Authorization: basicbasic",     "Authorization: Basic ====",
                         "Authorization: Basic ========", "Authorization: Basic A===",
                         "Authorization: Basic YQ==YQ==", NULL};
    char big[9000];
    size_t i;

    cr_assert_eq(st("GET", "/v2/", basic("alice", "secret"), NULL, 0, NULL, 0), 200);
    /* Refused, never a crash; past ten failures the address is throttled. */
    for (i = 0; bad[i]; i++) {
        long s = st("GET", "/v2/", bad[i], NULL, 0, NULL, 0);

        cr_assert(s == 401 || (i >= 9 && s == 429), "%s: %ld", bad[i], s);
    }
    snprintf(big, sizeof(big), "Authorization: Basic %0*d", 8000, 0);
    cr_assert_neq(st("GET", "/v2/", big, NULL, 0, NULL, 0), 200);
}

/* Fail alice's password from this address until 429. */
static void block_alice(void)
{
    long s = 0;
    int i;

    for (i = 0; i < 15 && s != 429; i++)
        s = st("GET", "/v2/", basic("alice", "guess"), NULL, 0, NULL, 0);
    cr_assert_eq(s, 429, "no throttling after %d failures", i);
}

Test(auth_basic, failed_logins_of_a_user_get_429_but_its_correct_password_always_passes)
{
    const char *hdrs[] = {basic("alice", "guess"), NULL};
    char v[64];
    struct resp r;

    block_alice();
    http(&srv, "GET", "/v2/", NULL, 0, hdrs, &r);
    cr_assert_eq(r.status, 429);
    cr_assert_str_eq(resp_error_code(&r, v, sizeof(v)), "TOOMANYREQUESTS");
    cr_assert_str_eq(resp_header(&r, "Retry-After", v, sizeof(v)) ? v : "", "30");
    resp_free(&r);
    cr_assert_eq(st("GET", "/v2/", basic("alice", "secret"), NULL, 0, NULL, 0), 200,
                 "a correct password always passes");
    cr_assert_eq(st("GET", "/v2/team-a/app/tags/list", basic("alice", "secret"), NULL, 0, NULL, 0),
                 404);
    cr_assert_eq(st("GET", "/v2/", basic("alice", "guess2"), NULL, 0, NULL, 0), 429,
                 "a success does not lift the block on wrong passwords");
}

Test(auth_basic, one_users_failures_never_lock_out_another_user_from_the_same_address)
{
    char code[64];

    block_alice();
    cr_assert_eq(st("GET", "/v2/", basic("bob", "pw2"), NULL, 0, NULL, 0), 200);
    cr_assert_eq(st("GET", "/v2/", basic("bob", "wrong"), code, sizeof(code), NULL, 0), 401,
                 "bob's first failure is his own");
    cr_assert_str_eq(code, "UNAUTHORIZED");
    cr_assert_eq(st("GET", "/v2/", NULL, NULL, 0, NULL, 0), 401, "anonymous is not throttled");
    cr_assert_eq(st("GET", "/v2/", "Authorization: Basic !!!!", NULL, 0, NULL, 0), 401,
                 "junk counts apart from alice");
    cr_assert_eq(st("GET", "/v2/", basic("bob", "pw2"), NULL, 0, NULL, 0), 200);
}

static void setup_basic_debug(void)
{
    start_mode("basic", "[log]\nlevel = debug\n");
}

/* Lines of the server log that hold needle. */
static int log_lines(const char *needle)
{
    FILE *f = fopen(server_file(&srv, "server.log", NULL), "r");
    char line[4096];
    int n = 0;

    cr_assert(f);
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* Its own suite: a suite's .init runs before a test's, so inside auth_basic
 * this test started a second server and left the first one running. */
Test(auth_basic_log, verified_credentials_are_cached_so_bcrypt_runs_once_per_credential,
     .init = setup_basic_debug, .fini = teardown, .timeout = 120)
{
    int i;

    for (i = 0; i < 5; i++)
        cr_assert_eq(st("GET", "/v2/", basic("alice", "secret"), NULL, 0, NULL, 0), 200);
    cr_assert_eq(log_lines("checking the password of user 'alice'"), 1);
    for (i = 0; i < 3; i++)
        cr_assert_eq(st("GET", "/v2/", basic("bob", "pw2"), NULL, 0, NULL, 0), 200);
    cr_assert_eq(log_lines("checking the password of user 'bob'"), 1);
    /* A wrong password is never taken from the cache, nor put in it. */
    for (i = 0; i < 2; i++)
        cr_assert_eq(st("GET", "/v2/", basic("alice", "secreT"), NULL, 0, NULL, 0), 401);
    cr_assert_eq(log_lines("checking the password of user 'alice'"), 3);
    cr_assert_eq(st("GET", "/v2/", basic("alice", "secret"), NULL, 0, NULL, 0), 200);
    cr_assert_eq(log_lines("checking the password of user 'alice'"), 3);
}

Test(auth_basic, changing_htpasswd_takes_effect_without_restart_even_for_cached_credentials)
{
    const char *bin = getenv("REGISTRY_BIN") ? getenv("REGISTRY_BIN") : "build/registry";
    struct timespec ts = {0, 100 * 1000 * 1000};
    char cmd[1400];
    long s = 200;
    int i;

    cr_assert_eq(st("GET", "/v2/", basic("alice", "secret"), NULL, 0, NULL, 0), 200);
    cr_assert_eq(st("GET", "/v2/", basic("bob", "pw2"), NULL, 0, NULL, 0), 200);
    /* A new password for alice, bob gone; replaced the way editors do. */
    snprintf(cmd, sizeof(cmd),
             "echo changed | %s passwd alice > %s.new 2>/dev/null && mv %s.new %s", bin,
             server_file(&srv, "htpasswd", NULL), server_file(&srv, "htpasswd", NULL),
             server_file(&srv, "htpasswd", NULL));
    cr_assert_eq(system(cmd), 0);
    /* The file is looked at once a second at most: wait up to 5 s. */
    for (i = 0; i < 50 && s == 200; i++) {
        s = st("GET", "/v2/", basic("alice", "secret"), NULL, 0, NULL, 0);
        if (s == 200)
            nanosleep(&ts, NULL);
    }
    cr_assert_eq(s, 401, "the old password still works");
    cr_assert_eq(st("GET", "/v2/", basic("bob", "pw2"), NULL, 0, NULL, 0), 401,
                 "a removed user's cached credential still works");
    cr_assert_eq(st("GET", "/v2/", basic("alice", "changed"), NULL, 0, NULL, 0), 200);
}

/* ---- token ------------------------------------------------------------------ */

static void get_token(const char *auth, const char *query, char *tok, size_t size, long *status)
{
    const char *hdrs[] = {auth, NULL};
    char path[1024];
    struct resp r;
    json_t *j;

    snprintf(path, sizeof(path), "/token?service=registry%s", query);
    http(&srv, "GET", path, NULL, 0, auth ? hdrs : NULL, &r);
    *status = r.status;
    tok[0] = '\0';
    j = json_loadb(r.body, r.len, 0, NULL);
    if (j && json_is_string(json_object_get(j, "token")))
        snprintf(tok, size, "%s", json_string_value(json_object_get(j, "token")));
    json_decref(j);
    resp_free(&r);
}

static char *bearer(const char *tok)
{
    static char h[4][9100];
    static int next;
    char *out = h[next++ % 4];

    snprintf(out, sizeof(h[0]), "Authorization: Bearer %.9000s", tok);
    return out;
}

Test(auth_token, challenge_names_realm_service_and_scope)
{
    char www[512], want[200];

    cr_assert_eq(st("GET", "/v2/", NULL, NULL, 0, www, sizeof(www)), 401);
    snprintf(want, sizeof(want), "Bearer realm=\"%s/token\",service=\"registry\"", srv.base);
    cr_assert_str_eq(www, want);
    cr_assert_eq(st("POST", "/v2/team-a/app/blobs/uploads/", NULL, NULL, 0, www, sizeof(www)), 401);
    cr_assert(strstr(www, "scope=\"repository:team-a/app:pull,push\""), "%s", www);
}

Test(auth_token, token_response_has_the_docker_fields)
{
    const char *hdrs[] = {basic("alice", "secret"), NULL};
    struct resp r;
    json_t *j;

    http(&srv, "GET", "/token?service=registry&scope=repository:team-a/app:pull,push", NULL, 0,
         hdrs, &r);
    cr_assert_eq(r.status, 200);
    j = json_loadb(r.body, r.len, 0, NULL);
    cr_assert(j);
    cr_assert(json_is_string(json_object_get(j, "token")));
    cr_assert(json_is_string(json_object_get(j, "access_token")));
    cr_assert(json_is_integer(json_object_get(j, "expires_in")));
    cr_assert(json_is_string(json_object_get(j, "issued_at")));
    json_decref(j);
    resp_free(&r);
    http(&srv, "GET", "/token?service=registry", NULL, 0,
         (const char *[]){basic("alice", "bad"), NULL}, &r);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
}

Test(auth_token, token_grants_only_the_intersection_of_scope_and_rules)
{
    char tok[8192], www[512];
    long s;

    get_token(basic("bob", "pw2"), "&scope=repository:team-b/app:pull,push", tok, sizeof(tok), &s);
    cr_assert_eq(s, 200);
    cr_assert_eq(st("GET", "/v2/team-b/app/tags/list", bearer(tok), NULL, 0, NULL, 0), 404,
                 "pull granted (the repository does not exist yet)");
    cr_assert_eq(
        st("POST", "/v2/team-b/app/blobs/uploads/", bearer(tok), NULL, 0, www, sizeof(www)), 401);
    cr_assert(strstr(www, "error=\"insufficient_scope\""), "%s", www);
    cr_assert_eq(st("GET", "/v2/team-a/app/tags/list", bearer(tok), NULL, 0, NULL, 0), 401,
                 "a token for one repository says nothing of another");
    get_token(basic("alice", "secret"), "&scope=repository:team-a/app:pull,push", tok, sizeof(tok),
              &s);
    cr_assert_eq(st("POST", "/v2/team-a/app/blobs/uploads/", bearer(tok), NULL, 0, NULL, 0), 202);
    cr_assert_eq(st("GET", "/v2/", bearer(tok), NULL, 0, NULL, 0), 200);
}

Test(auth_token, anonymous_token_pulls_public_only)
{
    char tok[8192];
    long s;

    get_token(NULL, "&scope=repository:public/x:pull&scope=repository:private/x:pull", tok,
              sizeof(tok), &s);
    cr_assert_eq(s, 200);
    cr_assert_eq(st("GET", "/v2/public/x/tags/list", bearer(tok), NULL, 0, NULL, 0), 404);
    cr_assert_eq(st("GET", "/v2/private/x/tags/list", bearer(tok), NULL, 0, NULL, 0), 401);
}

Test(auth_token, basic_credentials_on_the_registry_send_the_client_to_the_token_service)
{
    char www[512];

    cr_assert_eq(st("GET", "/v2/", basic("alice", "secret"), NULL, 0, www, sizeof(www)), 401);
    cr_assert_eq(strncmp(www, "Bearer ", 7), 0, "%s", www);
}

Test(auth_token, post_token_password_and_refresh_grants)
{
    const char form[] = "grant_type=password&username=alice&password=secret&service=registry"
                        "&scope=repository%3Ateam-a%2Fapp%3Apull&access_type=offline&client_id=t";
    char body[8192], tok[8192];
    struct resp r;
    json_t *j;

    http(&srv, "POST", "/token", form, strlen(form),
         (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = json_loadb(r.body, r.len, 0, NULL);
    cr_assert(json_is_string(json_object_get(j, "access_token")));
    cr_assert(json_is_string(json_object_get(j, "refresh_token")));
    snprintf(tok, sizeof(tok), "%s", json_string_value(json_object_get(j, "access_token")));
    snprintf(body, sizeof(body),
             "grant_type=refresh_token&service=registry&scope=repository%%3Ateam-a%%2Fapp%%3A"
             "pull&refresh_token=%s",
             json_string_value(json_object_get(j, "refresh_token")));
    json_decref(j);
    resp_free(&r);
    cr_assert_eq(st("GET", "/v2/team-a/app/tags/list", bearer(tok), NULL, 0, NULL, 0), 404);
    http(&srv, "POST", "/token", body, strlen(body),
         (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    resp_free(&r);
    http(&srv, "POST", "/token", "grant_type=refresh_token&refresh_token=junk", 43,
         (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, &r);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
    http(&srv, "POST", "/token", "grant_type=password&username=alice&password=x", 45,
         (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, &r);
    cr_assert_eq(r.status, 401);
    resp_free(&r);
}

static char *forge_h(const char *keyfile, jwt_alg_t alg, const char *secret, long exp_delta,
                     long nbf_delta, const char *iss, const char *aud, const char *headers);

/* Sign claims with a key file of the server's root, or with alg none/HS256. */
static char *forge(const char *keyfile, jwt_alg_t alg, const char *secret, long exp_delta,
                   long nbf_delta, const char *iss, const char *aud)
{
    return forge_h(keyfile, alg, secret, exp_delta, nbf_delta, iss, aud, NULL);
}

/* The same with extra header members (JSON object text). */
static char *forge_h(const char *keyfile, jwt_alg_t alg, const char *secret, long exp_delta,
                     long nbf_delta, const char *iss, const char *aud, const char *headers)
{
    jwt_t *jwt = NULL;
    char *key = NULL, claims[1024], *out;
    size_t klen = 0;
    time_t now = time(NULL);

    if (keyfile) {
        FILE *f = fopen(server_file(&srv, keyfile, NULL), "rb");

        cr_assert(f);
        key = malloc(8192);
        klen = fread(key, 1, 8192, f);
        fclose(f);
    }
    snprintf(claims, sizeof(claims),
             "{\"iss\":\"%s\",\"sub\":\"alice\",\"aud\":\"%s\",\"exp\":%ld,\"nbf\":%ld,\"iat\":%ld,"
             "\"jti\":\"x\",\"access\":[{\"type\":\"repository\",\"name\":\"team-a/app\","
             "\"actions\":[\"pull\",\"push\"]}]}",
             iss, aud, (long)now + exp_delta, (long)now + nbf_delta, (long)now);
    cr_assert_eq(jwt_new(&jwt), 0);
    cr_assert_eq(jwt_add_grants_json(jwt, claims), 0);
    if (headers)
        cr_assert_eq(jwt_add_headers_json(jwt, headers), 0);
    if (alg == JWT_ALG_NONE)
        cr_assert_eq(jwt_set_alg(jwt, JWT_ALG_NONE, NULL, 0), 0);
    else if (secret)
        cr_assert_eq(jwt_set_alg(jwt, alg, (const unsigned char *)secret, (int)strlen(secret)), 0);
    else
        cr_assert_eq(jwt_set_alg(jwt, alg, (unsigned char *)key, (int)klen), 0);
    out = jwt_encode_str(jwt);
    jwt_free(jwt);
    free(key);
    return out;
}

static long push_with(const char *tok)
{
    return st("POST", "/v2/team-a/app/blobs/uploads/", bearer(tok), NULL, 0, NULL, 0);
}

Test(auth_token, tokens_signed_by_our_key_with_right_claims_work)
{
    char *t = forge("key.pem", JWT_ALG_RS256, NULL, 300, -10, "registry-token-issuer", "registry");

    cr_assert_eq(push_with(t), 202);
    free(t);
}

/* fuzz_auth (UBSan), given a signed token with exp = LONG_MAX: exp + leeway
 * overflowed (UB; wrapped, the token was refused as expired). Twice: the
 * second answer comes from the cache of verified tokens, which had the same
 * sum. */
Test(auth_token, token_expiring_at_the_end_of_time_works)
{
    char *t = forge("key.pem", JWT_ALG_RS256, NULL, LONG_MAX - (long)time(NULL) - 5, -10,
                    "registry-token-issuer", "registry");

    cr_assert_eq(push_with(t), 202);
    cr_assert_eq(push_with(t), 202);
    free(t);
}

Test(auth_token, forged_expired_and_unsigned_tokens_are_refused)
{
    char *t, *pub, cmd[1200], tok[8192];
    long s;

    /* Expired, not yet valid (past the leeway), wrong issuer, wrong audience. */
    t = forge("key.pem", JWT_ALG_RS256, NULL, -120, -300, "registry-token-issuer", "registry");
    cr_assert_eq(push_with(t), 401, "expired");
    free(t);
    t = forge("key.pem", JWT_ALG_RS256, NULL, 600, 300, "registry-token-issuer", "registry");
    cr_assert_eq(push_with(t), 401, "not yet valid");
    free(t);
    t = forge("key.pem", JWT_ALG_RS256, NULL, 300, -10, "someone-else", "registry");
    cr_assert_eq(push_with(t), 401, "wrong issuer");
    free(t);
    t = forge("key.pem", JWT_ALG_RS256, NULL, 300, -10, "registry-token-issuer", "other");
    cr_assert_eq(push_with(t), 401, "wrong audience");
    free(t);
    /* Another key. */
    make_key("other.pem", "-algorithm RSA -pkeyopt rsa_keygen_bits:2048");
    t = forge("other.pem", JWT_ALG_RS256, NULL, 300, -10, "registry-token-issuer", "registry");
    cr_assert_eq(push_with(t), 401, "signed by a stranger");
    free(t);
    /* alg none, and HS256 keyed with our public key (key confusion). */
    t = forge(NULL, JWT_ALG_NONE, NULL, 300, -10, "registry-token-issuer", "registry");
    cr_assert_eq(push_with(t), 401, "alg none");
    free(t);
    snprintf(cmd, sizeof(cmd), "openssl pkey -in %s -pubout -out %s 2>/dev/null",
             server_file(&srv, "key.pem", NULL), server_file(&srv, "pub.pem", NULL));
    cr_assert_eq(system(cmd), 0);
    {
        FILE *f = fopen(server_file(&srv, "pub.pem", NULL), "r");
        size_t n;

        pub = calloc(1, 8192);
        n = fread(pub, 1, 8191, f);
        pub[n] = '\0';
        fclose(f);
    }
    t = forge(NULL, JWT_ALG_HS256, pub, 300, -10, "registry-token-issuer", "registry");
    cr_assert_eq(push_with(t), 401, "HS256 with the public key as secret");
    free(t);
    free(pub);
    /* A real token with its payload swapped for a more generous one. */
    get_token(basic("bob", "pw2"), "&scope=repository:team-b/app:pull", tok, sizeof(tok), &s);
    {
        char *d1 = strchr(tok, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL, forged[9000];
        char *good =
            forge("other.pem", JWT_ALG_RS256, NULL, 300, -10, "registry-token-issuer", "registry");
        char *g1 = strchr(good, '.'), *g2 = strchr(g1 + 1, '.');

        cr_assert(d1 && d2);
        snprintf(forged, sizeof(forged), "%.*s%.*s%s", (int)(d1 - tok), tok, (int)(g2 - g1), g1,
                 d2);
        cr_assert_eq(push_with(forged), 401, "payload swapped");
        free(good);
    }
}

/* ---- external issuer and TLS ------------------------------------------------ */

static void start_external(void)
{
    char cfg[4096], cmd[1500];

    server_prepare(&srv);
    make_key("issuer.pem", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    snprintf(cmd, sizeof(cmd),
             "openssl req -new -x509 -key %s -subj /CN=issuer -days 2 -out %s 2>/dev/null",
             server_file(&srv, "issuer.pem", NULL), server_file(&srv, "issuer.crt", NULL));
    cr_assert_eq(system(cmd), 0);
    snprintf(cfg, sizeof(cfg),
             "[auth]\nmode = token\nrealm = https://auth.example/token\nservice = registry\n"
             "issuer = registry-token-issuer\ntrust = %s\n",
             server_file(&srv, "issuer.crt", NULL));
    server_launch(&srv, cfg);
}

Test(auth_external, tokens_of_a_trusted_issuer_certificate_are_accepted, .init = start_external,
     .fini = teardown, .timeout = 60)
{
    char *t = forge("issuer.pem", JWT_ALG_ES256, NULL, 300, -10, "registry-token-issuer",
                    "registry"),
         www[512];

    cr_assert_eq(push_with(t), 202);
    free(t);
    t = forge("issuer.pem", JWT_ALG_ES256, NULL, 300, -10, "registry-token-issuer", "nope");
    cr_assert_eq(push_with(t), 401);
    free(t);
    cr_assert_eq(st("GET", "/v2/", NULL, NULL, 0, www, sizeof(www)), 401);
    cr_assert(strstr(www, "realm=\"https://auth.example/token\""), "%s", www);
    cr_assert_eq(st("GET", "/token?service=registry", NULL, NULL, 0, NULL, 0), 404,
                 "no built-in token service without a key");
}

static void start_tls(void)
{
    char cfg[4096], cmd[1500];

    server_prepare(&srv);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey rsa:2048 -nodes -keyout %s -out %s -days 2 "
             "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 2>/dev/null",
             server_file(&srv, "tls.key", NULL), server_file(&srv, "tls.crt", NULL));
    cr_assert_eq(system(cmd), 0);
    snprintf(cfg, sizeof(cfg), "[server]\ntls_cert = %s\ntls_key = %s\n",
             server_file(&srv, "tls.crt", NULL), server_file(&srv, "tls.key", NULL));
    server_launch(&srv, cfg);
}

Test(tls, https_with_a_self_signed_certificate, .init = start_tls, .fini = teardown, .timeout = 60)
{
    char hostport[64], d[200], path[600];
    struct resp r;

    snprintf(hostport, sizeof(hostport), "%.40s", srv.base + strlen("http://"));
    snprintf(srv.base, sizeof(srv.base), "https://%.50s", hostport);
    snprintf(srv.cafile, sizeof(srv.cafile), "%s", server_file(&srv, "tls.crt", NULL));
    http(&srv, "GET", "/v2/", NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    resp_free(&r);
    push_blob(&srv, "secure/app", "tls", 3, d, sizeof(d));
    snprintf(path, sizeof(path), "/v2/secure/app/blobs/%s", d);
    http(&srv, "GET", path, NULL, 0, NULL, &r);
    cr_assert_eq(r.status, 200);
    cr_assert_eq(r.len, 3);
    resp_free(&r);
}

/* A JWKS file holding the public half of an EC P-256 key file. */
static void write_jwks(const char *keyfile, const char *kid, const char *out)
{
    FILE *f = fopen(server_file(&srv, keyfile, NULL), "r");
    EVP_PKEY *pk = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    unsigned char pt[100];
    char x[100], y[100], text[600];
    size_t len = 0;

    cr_assert(pk);
    fclose(f);
    cr_assert(EVP_PKEY_get_octet_string_param(pk, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &len));
    cr_assert_eq(len, 65);
    EVP_EncodeBlock((unsigned char *)x, pt + 1, 32);
    EVP_EncodeBlock((unsigned char *)y, pt + 33, 32);
    /* base64 -> base64url without padding */
    for (char *p = x; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p == '=' ? '\0' : *p;
    for (char *p = y; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p == '=' ? '\0' : *p;
    snprintf(text, sizeof(text),
             "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"kid\":\"%s\",\"x\":\"%s\","
             "\"y\":\"%s\",\"use\":\"sig\"}]}",
             kid, x, y);
    server_file(&srv, out, text);
    EVP_PKEY_free(pk);
}

static void start_jwks(void)
{
    char cfg[2048];

    server_prepare(&srv);
    make_key("issuer.pem", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    write_jwks("issuer.pem", "key-2026", "jwks.json");
    snprintf(cfg, sizeof(cfg),
             "[auth]\nmode = token\nrealm = https://auth.example/token\ntrust = %s\n",
             server_file(&srv, "jwks.json", NULL));
    server_launch(&srv, cfg);
}

Test(auth_external, tokens_verified_with_a_jwks_key, .init = start_jwks, .fini = teardown,
     .timeout = 60)
{
    char *t = forge_h("issuer.pem", JWT_ALG_ES256, NULL, 300, -10, "registry-token-issuer",
                      "registry", "{\"kid\":\"key-2026\"}");

    cr_assert_eq(push_with(t), 202);
    free(t);
    make_key("stranger.pem", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    t = forge_h("stranger.pem", JWT_ALG_ES256, NULL, 300, -10, "registry-token-issuer", "registry",
                "{\"kid\":\"key-2026\"}");
    cr_assert_eq(push_with(t), 401, "a kid alone proves nothing");
    free(t);
}

/* DER of a PEM certificate file, base64 (x5c form). */
static void cert_b64(const char *file, char *out, size_t size)
{
    FILE *f = fopen(server_file(&srv, file, NULL), "r");
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    unsigned char *der = NULL;
    int n;

    cr_assert(x);
    fclose(f);
    n = i2d_X509(x, &der);
    cr_assert(n > 0 && (size_t)(n + 2) / 3 * 4 < size);
    EVP_EncodeBlock((unsigned char *)out, der, n);
    OPENSSL_free(der);
    X509_free(x);
}

static void start_x5c(void)
{
    char cfg[2048], cmd[3000];

    server_prepare(&srv);
    make_key("ca.key", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    make_key("leaf.key", "-algorithm EC -pkeyopt ec_paramgen_curve:P-256");
    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -new -x509 -key ca.key -subj /CN=token-ca -days 2 "
             "-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign "
             "-out ca.crt 2>/dev/null && "
             "openssl req -new -key leaf.key -subj /CN=token-signer -out leaf.csr 2>/dev/null && "
             "openssl x509 -req -in leaf.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
             "-out leaf.crt 2>/dev/null && "
             "openssl req -new -x509 -key leaf.key -subj /CN=self -days 2 -out self.crt "
             "2>/dev/null",
             srv.root);
    cr_assert_eq(system(cmd), 0, "making the certificates");
    snprintf(cfg, sizeof(cfg),
             "[auth]\nmode = token\nrealm = https://auth.example/token\ntrust = %s\n",
             server_file(&srv, "ca.crt", NULL));
    server_launch(&srv, cfg);
}

Test(auth_external, x5c_chain_to_the_trusted_certificate, .init = start_x5c, .fini = teardown,
     .timeout = 60)
{
    char b64[4096], hdr[4200], *t;

    cert_b64("leaf.crt", b64, sizeof(b64));
    snprintf(hdr, sizeof(hdr), "{\"x5c\":[\"%s\"]}", b64);
    t = forge_h("leaf.key", JWT_ALG_ES256, NULL, 300, -10, "registry-token-issuer", "registry",
                hdr);
    cr_assert_eq(push_with(t), 202);
    free(t);
    cert_b64("self.crt", b64, sizeof(b64));
    snprintf(hdr, sizeof(hdr), "{\"x5c\":[\"%s\"]}", b64);
    t = forge_h("leaf.key", JWT_ALG_ES256, NULL, 300, -10, "registry-token-issuer", "registry",
                hdr);
    cr_assert_eq(push_with(t), 401, "a self-signed x5c is not a chain to the trusted CA");
    free(t);
    t = forge("leaf.key", JWT_ALG_ES256, NULL, 300, -10, "registry-token-issuer", "registry");
    cr_assert_eq(push_with(t), 401, "without x5c the leaf key is not trusted");
    free(t);
}

Test(auth_token, junk_tokens_from_an_address_do_not_lock_out_a_valid_token)
{
    char tok[8192];
    long s;
    int i;

    get_token(basic("alice", "secret"), "&scope=repository:team-a/app:pull", tok, sizeof(tok), &s);
    cr_assert_eq(s, 200);
    for (i = 0; i < 15; i++)
        st("GET", "/v2/team-a/app/tags/list", bearer("junk.junk.junk"), NULL, 0, NULL, 0);
    cr_assert_eq(st("GET", "/v2/team-a/app/tags/list", bearer("junk.junk.junk"), NULL, 0, NULL, 0),
                 429);
    cr_assert_eq(st("GET", "/v2/team-a/app/tags/list", bearer(tok), NULL, 0, NULL, 0), 404,
                 "a valid token still works");
}

Test(auth_token, a_refresh_token_is_never_an_access_token)
{
    const char form[] = "grant_type=password&username=alice&password=secret&service=registry"
                        "&scope=repository%3Ateam-a%2Fapp%3Apull&access_type=offline";
    char access[8192], refresh[8192], code[64];
    struct resp r;
    json_t *j;

    http(&srv, "POST", "/token", form, strlen(form),
         (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = json_loadb(r.body, r.len, 0, NULL);
    cr_assert(json_is_string(json_object_get(j, "refresh_token")));
    snprintf(access, sizeof(access), "%s", json_string_value(json_object_get(j, "access_token")));
    snprintf(refresh, sizeof(refresh), "%s",
             json_string_value(json_object_get(j, "refresh_token")));
    json_decref(j);
    resp_free(&r);
    cr_assert_eq(st("GET", "/v2/", bearer(refresh), code, sizeof(code), NULL, 0), 401);
    cr_assert_str_eq(code, "UNAUTHORIZED");
    cr_assert_eq(st("GET", "/v2/team-a/app/tags/list", bearer(refresh), NULL, 0, NULL, 0), 401);
    cr_assert_eq(st("GET", "/v2/", bearer(refresh), NULL, 0, NULL, 0), 401, "nor once seen");
    cr_assert_eq(st("GET", "/v2/", bearer(access), NULL, 0, NULL, 0), 200);
    cr_assert_eq(st("GET", "/v2/team-a/app/tags/list", bearer(access), NULL, 0, NULL, 0), 404);
}

Test(auth_token, removing_a_user_revokes_their_refresh_tokens)
{
    const char form[] = "grant_type=password&username=bob&password=pw2&service=registry"
                        "&access_type=offline";
    char body[8192], cmd[1200];
    struct resp r;
    json_t *j;
    const char *bin = getenv("REGISTRY_BIN") ? getenv("REGISTRY_BIN") : "build/registry";

    http(&srv, "POST", "/token", form, strlen(form),
         (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, &r);
    cr_assert_eq(r.status, 200, "%s", r.body);
    j = json_loadb(r.body, r.len, 0, NULL);
    cr_assert(json_is_string(json_object_get(j, "refresh_token")));
    snprintf(body, sizeof(body), "grant_type=refresh_token&service=registry&refresh_token=%s",
             json_string_value(json_object_get(j, "refresh_token")));
    json_decref(j);
    resp_free(&r);
    cr_assert_eq(server_stop(&srv), 0);
    snprintf(cmd, sizeof(cmd), "echo secret | %s passwd alice > %s 2>/dev/null", bin,
             server_file(&srv, "htpasswd", NULL));
    cr_assert_eq(system(cmd), 0);
    server_restart(&srv);
    http(&srv, "POST", "/token", body, strlen(body),
         (const char *[]){"Content-Type: application/x-www-form-urlencoded", NULL}, &r);
    cr_assert_eq(r.status, 401, "bob is gone: %s", r.body);
    resp_free(&r);
}
