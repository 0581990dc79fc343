/* The OCI distribution conformance suite: a black-box client that drives
 * any registry through the spec's workflows. Configured by the environment
 * variables of the official suite (OCI_ROOT_URL, OCI_NAMESPACE, ...). */
#ifndef CF_SUITE_H
#define CF_SUITE_H

#include <stddef.h>

enum cf_workflow { CF_PULL, CF_PUSH, CF_DISCOVERY, CF_MANAGEMENT, CF_EXTRA, CF__WORKFLOWS };

struct cf_config {
    const char *root;        /* OCI_ROOT_URL, without trailing slash */
    const char *ns;          /* OCI_NAMESPACE */
    const char *cross_ns;    /* OCI_CROSSMOUNT_NAMESPACE */
    const char *user, *pass; /* OCI_USERNAME, OCI_PASSWORD */
    int enabled[CF__WORKFLOWS];
    int delete_manifest_before_blobs; /* OCI_DELETE_MANIFEST_BEFORE_BLOBS */
    const char *restart_cmd;          /* OCI_RESTART_CMD: restarts the registry, keeping data */
    const char *report_dir;           /* OCI_REPORT_DIR: junit.xml goes there */
    int require_referrers;            /* OCI_REFERRERS=1: the referrers API must be there */
};

extern struct cf_config cf;

struct cf_resp {
    long status;
    char *body; /* NUL-terminated */
    size_t len;
    char *headers; /* header block of the final response */
};

/* One request; path is appended to the root URL unless it is absolute.
 * hdrs: NULL-terminated "Name: value" list. Follows 401 challenges with the
 * configured credentials (Basic, or the Bearer token flow). */
int cf_http(const char *method, const char *path, const char *const *hdrs, const void *body,
            size_t len, struct cf_resp *out);
void cf_resp_free(struct cf_resp *r);
const char *cf_header(const struct cf_resp *r, const char *name, char *buf, size_t size);
/* The first error code of an OCI error body, "" if the body is not one. */
const char *cf_error_code(const struct cf_resp *r, char *buf, size_t size);

/* Test bodies report through these; a failed check ends the test. */
void cf_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4), noreturn));
void cf_skip(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            cf_fail(__FILE__, __LINE__, __VA_ARGS__);                                              \
    } while (0)

struct cf_test {
    enum cf_workflow workflow;
    const char *name;
    void (*fn)(void);
};

/* The tests, in the order they run; ends with a NULL name. */
extern const struct cf_test cf_tests[];

/* Helpers shared by the tests. */
void cf_digest(const char *algo, const void *data, size_t len, char *out, size_t size);
void *cf_random(size_t len);

#endif
