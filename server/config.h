/* registry.conf: INI sections [server], [storage], [s3], [gc], [metrics],
 * [log], [auth], [groups], and [proxy.NAME] (one per upstream, keys from a
 * table of their own). One table (config.c) names every key with its type, range,
 * default, field and whether a reload (SIGHUP) may change it; loading,
 * environment overrides, printing and reloading all walk that table. Every
 * key has a default, so no file is needed. */
#ifndef REG_CONFIG_H
#define REG_CONFIG_H

#include <stddef.h>
#include <stdio.h>

struct config {
    /* [server] */
    char listen[256];          /* host:port */
    unsigned threads;          /* libmicrohttpd worker threads */
    unsigned max_connections;  /* concurrent connections */
    unsigned timeout;          /* idle seconds before a connection is dropped */
    unsigned header_timeout;   /* seconds a request may take to send its headers; 0 = none */
    unsigned max_per_address;  /* connections from one client address; 0 = no limit */
    size_t connection_memory;  /* libmicrohttpd's buffer per connection, bytes */
    size_t send_buffers;       /* bytes blob bodies may buffer together; 0 = sendfile only */
    unsigned shutdown_timeout; /* seconds to let requests finish on SIGTERM */
    size_t max_manifest_size;  /* bytes */
    size_t manifest_buffers;   /* bytes all manifest bodies in flight may hold together */
    char tls_cert[4096];       /* PEM certificate (chain); with tls_key serves HTTPS */
    char tls_key[4096];        /* PEM private key */
    /* [storage] */
    char root[4096];                   /* data directory */
    int delete_enabled;                /* allow DELETE of blobs and manifests */
    int read_only;                     /* refuse every write; GC does not run */
    size_t index_max_size;             /* LMDB map size, bytes */
    unsigned long long ready_min_free; /* bytes free on root below which /readyz says no */
    int storage_driver;                /* enum config_driver: where blob bytes live */
    /* [s3] (driver = s3) */
    char s3_endpoint[512];   /* scheme://host[:port] */
    char s3_region[64];      /* signing region */
    char s3_bucket[64];      /* bucket name */
    char s3_prefix[256];     /* key prefix; a '/' is added when it lacks one */
    char s3_access_key[128]; /* empty: AWS_ACCESS_KEY_ID */
    char s3_secret_key[128]; /* empty: AWS_SECRET_ACCESS_KEY */
    int s3_path_style;       /* endpoint/bucket/key rather than bucket.endpoint/key */
    size_t s3_part_size;     /* multipart part size, bytes */
    int s3_redirect;         /* blob GETs answered with 307 to a presigned URL */
    /* [gc] */
    long gc_interval;   /* seconds between runs inside serve; 0 = never */
    long gc_grace;      /* seconds a pushed blob or manifest is safe from GC */
    long gc_upload_ttl; /* seconds an upload session may stay idle */
    int gc_untagged;    /* enum config_untagged */
    /* [metrics] */
    int metrics_enabled;      /* serve GET /metrics */
    char metrics_listen[256]; /* host:port of a listener for /metrics alone; "" = the main one */
    /* [log] */
    int log_level;  /* enum log_level */
    int log_format; /* enum log_format */
    /* [auth] */
    int auth_mode; /* enum auth_mode */
    char auth_htpasswd[4096];
    char auth_realm[512];
    char auth_service[256];
    char auth_issuer[256];
    char auth_key[4096];
    char auth_trust[4096];
    long auth_token_ttl; /* seconds */
    long auth_leeway;    /* seconds */
    char **auth_rules;   /* "WHO ACTIONS REPOS", repeatable key "rule" */
    size_t auth_nrules;
    /* [groups] */
    char **groups; /* "name=member, member" */
    size_t ngroups;
    /* [proxy.NAME], one per upstream, in the order the file names them */
    struct config_proxy *proxies;
    size_t nproxies;
};

/* One [proxy.NAME] section: an upstream registry mirrored under prefix. */
struct config_proxy {
    char name[64];      /* NAME of [proxy.NAME] */
    char url[512];      /* scheme://host[:port] of the upstream */
    char prefix[256];   /* local namespace; "" = every repository not found locally */
    char username[256]; /* upstream credentials, "" = anonymous */
    char password[256];
    long tag_ttl;     /* seconds a cached tag is served before it is revalidated */
    long evict_after; /* seconds a cached repository may go unpulled; 0 = kept forever */
    char ca[4096];    /* PEM CA bundle for the upstream, "" = the system's */
    char where[320];  /* "FILE:LINE" (or "environment VAR") that named it, for errors */
};

enum config_untagged { CONFIG_UNTAGGED_KEEP, CONFIG_UNTAGGED_DELETE };
enum config_driver { CONFIG_DRIVER_FS, CONFIG_DRIVER_S3 };

/* How a value is written in the file. */
enum config_type {
    CONFIG_STRING,   /* text into a char array */
    CONFIG_BOOL,     /* true/false, yes/no, on/off, 1/0 into an int */
    CONFIG_UNSIGNED, /* decimal number */
    CONFIG_SIZE,     /* number with an optional K, M or G suffix (powers of 1024) */
    CONFIG_DURATION, /* seconds, or a number with s, m, h or d, into a long */
    CONFIG_ENUM,     /* one of names, its index into an int */
    CONFIG_LIST,     /* repeatable key: each line adds one entry (auth rules) */
};

/* Flags of a key. */
enum {
    CONFIG_RELOAD = 1,  /* SIGHUP may change it while serving */
    CONFIG_SECONDS = 2, /* a number of seconds: errors say so */
    CONFIG_SECRET = 4,  /* never printed: check-config shows whether it is set */
};

/* One row of the table. */
struct config_key {
    const char *section, *key;
    enum config_type type;
    size_t offset, width;        /* of the field in struct config */
    unsigned long long min, max; /* numbers, sizes and durations */
    const char *def;             /* default, as written in the file; NULL = empty */
    const char *const *names;    /* CONFIG_ENUM: the values, NULL-terminated */
    const char *expect;          /* what an error says was expected; NULL: built from the range */
    int (*valid)(const char *v); /* CONFIG_STRING: the value's shape, or NULL (any text) */
    unsigned flags;              /* CONFIG_RELOAD, CONFIG_SECONDS */
};

/* The table; *n gets its length. [groups] is not in it: any key there is a
 * group name. */
const struct config_key *config_keys(size_t *n);
/* The keys of every [proxy.NAME] section (section "proxy"; offsets into
 * struct config_proxy). */
const struct config_key *config_proxy_keys(size_t *n);
/* The row of section/key, or NULL; "proxy" and "proxy.NAME" find the
 * proxy keys. */
const struct config_key *config_key_find(const char *section, const char *key);

/* Names of enum values, NULL-terminated, used to parse and to print. */
extern const char *const config_log_levels[];
extern const char *const config_log_formats[];
extern const char *const config_auth_modes[];
extern const char *const config_untagged_names[];
extern const char *const config_drivers[];

/* Fill c with the defaults (the table's). */
void config_defaults(struct config *c);
/* Free what config_set allocated (rules, groups). */
void config_free(struct config *c);

/* Read path over c. On error writes "file:line: what" into err and returns
 * REG_E_CONFIG. */
int config_load(struct config *c, const char *path, char *err, size_t errsize);

/* Apply REGISTRY_<SECTION>_<KEY> variables (upper case) of the
 * environment over c, for every key of the table; REGISTRY_AUTH_RULE holds
 * rules separated by ';' and replaces the file's. Other variables are
 * ignored (REGISTRY_AUTH_FILE belongs to podman and skopeo). On error err
 * names the variable; REG_E_CONFIG. */
int config_env(struct config *c, char *err, size_t errsize);

/* Checks across keys, once every key is set: REG_E_CONFIG with err. */
int config_check(const struct config *c, char *err, size_t errsize);

/* Set one key as if read from a file ("server", "listen", "0.0.0.0:5000"). */
int config_set(struct config *c, const char *section, const char *key, const char *value, char *err,
               size_t errsize);

/* k's value in c as the file would say it (sizes and durations in their
 * largest exact unit); a list is its entries joined by "\n". Truncated to
 * size. */
void config_format(const struct config *c, const struct config_key *k, char *buf, size_t size);
/* Whether k has the same value in a and b. */
int config_same(const struct config *a, const struct config *b, const struct config_key *k);
/* Copy k's value from src to dst (not for CONFIG_LIST). */
void config_copy(struct config *dst, const struct config *src, const struct config_key *k);
/* Whether the [groups] of a and b are the same. */
int config_same_groups(const struct config *a, const struct config *b);
/* Whether the [proxy.NAME] sections of a and b are the same. */
int config_same_proxies(const struct config *a, const struct config *b);
/* Replace dst's proxies by a copy of src's: REG_E_NOMEM. */
int config_copy_proxies(struct config *dst, const struct config *src);

/* The whole configuration as a file that would give it. */
void config_print(const struct config *c, FILE *f);

#endif
