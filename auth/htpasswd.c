#include "htpasswd.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../common/err.h"

struct user {
    char *name;
    char *hash;
};

struct htpasswd {
    struct user *users;
    size_t n;
};

/* Checked against when the user does not exist, so that an unknown name
 * costs as much as a wrong password (cost 10, like htpasswd -B). */
static const char dummy_hash[] = "$2y$10$abcdefghijklmnopqrstuu4T826PRnz0Hu6YlprUuxkZxOOj5Fw5S";

static int is_bcrypt(const char *h)
{
    return strlen(h) == 60 && h[0] == '$' && h[1] == '2' &&
           (h[2] == 'a' || h[2] == 'b' || h[2] == 'y') && h[3] == '$';
}

int htpasswd_load(const char *path, struct htpasswd **out, char *err, size_t errsize)
{
    struct htpasswd *h = calloc(1, sizeof(*h));
    FILE *f = fopen(path, "r");
    char line[1024];
    int lineno = 0, rc = REG_OK;

    *out = NULL;
    if (!h) {
        rc = REG_E_NOMEM;
        goto out;
    }
    if (!f) {
        snprintf(err, errsize, "%s: cannot read: %s", path, strerror(errno));
        rc = REG_E_CONFIG;
        goto out;
    }
    while (fgets(line, sizeof(line), f)) {
        char *colon, *end = line + strcspn(line, "\r\n");
        struct user *u;

        lineno++;
        *end = '\0';
        if (!line[0] || line[0] == '#')
            continue;
        colon = strchr(line, ':');
        if (!colon || colon == line || !is_bcrypt(colon + 1)) {
            snprintf(err, errsize, "%s:%d: expected user:bcrypt-hash (htpasswd -B)", path, lineno);
            rc = REG_E_CONFIG;
            goto out;
        }
        *colon = '\0';
        u = realloc(h->users, (h->n + 1) * sizeof(*u));
        if (!u) {
            rc = REG_E_NOMEM;
            goto out;
        }
        h->users = u;
        u[h->n].name = strdup(line);
        u[h->n].hash = strdup(colon + 1);
        h->n++;
        if (!u[h->n - 1].name || !u[h->n - 1].hash) {
            rc = REG_E_NOMEM;
            goto out;
        }
    }
out:
    if (f)
        fclose(f);
    if (rc) {
        htpasswd_free(h);
        h = NULL;
    }
    *out = h;
    return rc;
}

void htpasswd_free(struct htpasswd *h)
{
    size_t i;

    if (!h)
        return;
    for (i = 0; i < h->n; i++) {
        free(h->users[i].name);
        free(h->users[i].hash);
    }
    free(h->users);
    free(h);
}

int htpasswd_verify(const struct htpasswd *h, const char *user, const char *pass)
{
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    const char *hash = dummy_hash, *got;
    int found = 0, ok = 0;
    size_t i;

    if (!cd)
        return REG_E_NOMEM;
    for (i = 0; i < h->n; i++)
        if (strcmp(h->users[i].name, user) == 0) {
            hash = h->users[i].hash;
            found = 1;
        }
    got = crypt_r(pass, hash, cd);
    if (got && strlen(got) == strlen(hash))
        ok = CRYPTO_memcmp(got, hash, strlen(hash)) == 0;
    free(cd);
    return found && ok ? REG_OK : REG_E_UNAUTHORIZED;
}

int htpasswd_has_user(const struct htpasswd *h, const char *user)
{
    size_t i;

    for (i = 0; h && i < h->n; i++)
        if (strcmp(h->users[i].name, user) == 0)
            return 1;
    return 0;
}
