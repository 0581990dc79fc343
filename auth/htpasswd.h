/* Users from an htpasswd file (bcrypt hashes, verified through crypt(3)). */
#ifndef REG_HTPASSWD_H
#define REG_HTPASSWD_H

#include <stddef.h>

struct htpasswd;

/* Load path. REG_E_CONFIG with "path:line: what" in err on a bad line or
 * a hash that is not bcrypt ($2a$, $2b$, $2y$). */
int htpasswd_load(const char *path, struct htpasswd **out, char *err, size_t errsize);
void htpasswd_free(struct htpasswd *h);

/* REG_OK when user exists and pass matches, else REG_E_UNAUTHORIZED. Takes
 * the same time whether or not the user exists. */
int htpasswd_verify(const struct htpasswd *h, const char *user, const char *pass);

/* Whether user is in the file (a refresh token's user may have been removed). */
int htpasswd_has_user(const struct htpasswd *h, const char *user);

#endif
