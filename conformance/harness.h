/* Black-box test harness: start the real registry binary on a free
 * loopback port with a temporary root, and talk HTTP to it with libcurl.
 * The binary is $REGISTRY_BIN (default build/registry). */
#ifndef REG_HARNESS_H
#define REG_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

struct server {
    pid_t pid;
    char root[256];   /* temporary data directory */
    char config[300]; /* config file used, or "" */
    char base[64];    /* "http://127.0.0.1:PORT" */
    int exit_status;  /* of the last stop, as from waitpid */
    char cafile[400]; /* CA certificate curl trusts (TLS tests), or "" */
    int no_assert;    /* http(): a failed connection gives status -1 (forked clients) */
};

struct resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char *headers; /* raw header block of the last response */
};

/* Start a server; config_text (may be NULL) is written to a config file. */
void server_start(struct server *s, const char *config_text);
/* The same in two steps, to put files in s->root before the start. */
void server_prepare(struct server *s);
void server_launch(struct server *s, const char *config_text);
/* Path of name under s->root; writes text there when text is not NULL.
 * The returned path is valid for the next three calls. */
const char *server_file(struct server *s, const char *name, const char *text);
/* s's htpasswd file (server_file "htpasswd"): alice/secret and bob/pw2,
 * made with `registry passwd`. */
void write_users(struct server *s);
/* Start again on the same root (after a stop or a kill). */
void server_restart(struct server *s);
/* SIGTERM and wait; returns the exit code (0 on a clean stop). */
int server_stop(struct server *s);
/* SIGKILL and wait. */
void server_kill9(struct server *s);
/* Stop if running and remove the root. */
void server_destroy(struct server *s);

/* One request. path is appended to s->base unless it starts with "http".
 * hdrs is a NULL-terminated list of "Name: value" (may be NULL). */
void http(struct server *s, const char *method, const char *path, const void *body, size_t len,
          const char *const *hdrs, struct resp *out);
void resp_free(struct resp *r);
/* method on path: the status, and the first error code into code (may be
 * NULL). */
long http_status(struct server *s, const char *method, const char *path, char *code, size_t csize);
/* Whether s's catalog lists repo. */
int in_catalog(struct server *s, const char *repo);
/* PUT body as the manifest repo:ref with Content-Type ct (NULL: none); the
 * status. *out (may be NULL) takes the response, to resp_free. */
long http_put_manifest(struct server *s, const char *repo, const char *ref, const char *ct,
                       const void *body, size_t len, struct resp *out);
/* A response header's value (case-insensitive name) into buf; NULL if absent. */
const char *resp_header(const struct resp *r, const char *name, char *buf, size_t size);
/* The first error code in an OCI error body, or "" */
const char *resp_error_code(const struct resp *r, char *buf, size_t size);

/* Random bytes and their digest ("sha256:..." / "sha512:..."). */
void *rand_bytes(size_t len);
void digest_str(const char *algo, const void *data, size_t len, char *out, size_t size);

/* Push a blob monolithically; asserts 201. */
void push_blob(struct server *s, const char *repo, const void *data, size_t len, char *digest,
               size_t dsize);
/* Open an upload session; writes its path (Location) into loc. Asserts 202. */
void start_upload(struct server *s, const char *repo, char *loc, size_t size);

/* Raw HTTP over a socket: send exactly req (len bytes); when close_early,
 * wait 300 ms and hang up without reading, else read the whole answer into
 * out (may be NULL). */
void raw_send(struct server *s, const void *req, size_t len, int close_early, char *out,
              size_t outsize);

/* Count regular files under dir (recursively). */
int count_files(const char *dir);
/* Bytes of the regular files under dir (recursively; apparent sizes). */
unsigned long long dir_bytes(const char *dir);

/* Run the registry binary with args (killed after 20 s); stdout and stderr
 * into out. Returns its exit code (137 when it had to be killed). */
int registry_run(const char *args, char *out, size_t size);
/* The last line of s's server log holding needle (from needle on, into buf;
 * buf may be NULL), and how many lines hold it. */
int server_log_find(struct server *s, const char *needle, char *buf, size_t size);

#endif
