/* registry.conf: INI sections [server], [storage], [log]. Every key has a
 * default, so no file is needed. */
#ifndef REG_CONFIG_H
#define REG_CONFIG_H

#include <stddef.h>

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
    size_t index_max_size;             /* LMDB map size, bytes */
    unsigned long long ready_min_free; /* bytes free on root below which /readyz says no */
    /* [gc] */
    long gc_interval;   /* seconds between runs inside serve; 0 = never */
    long gc_grace;      /* seconds a pushed blob or manifest is safe from GC */
    long gc_upload_ttl; /* seconds an upload session may stay idle */
    int gc_untagged;    /* 0 keep, 1 delete manifests nothing needs */
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
};

/* Fill c with the defaults. */
void config_defaults(struct config *c);
/* Free what config_set allocated (rules, groups). */
void config_free(struct config *c);

/* Read path over c. On error writes "file:line: what" into err and returns
 * REG_E_CONFIG. */
int config_load(struct config *c, const char *path, char *err, size_t errsize);

/* Checks across keys, once every key is set: REG_E_CONFIG with err. */
int config_check(const struct config *c, char *err, size_t errsize);

/* Set one key as if read from a file ("server", "listen", "0.0.0.0:5000"). */
int config_set(struct config *c, const char *section, const char *key, const char *value, char *err,
               size_t errsize);

#endif
