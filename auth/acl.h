/* Access rules: who may do what on which repositories.
 *
 *   rule = WHO ACTIONS REPOS
 *     WHO      user:NAME | group:NAME | anonymous | authenticated | *
 *     ACTIONS  pull,push,delete,catalog or *
 *     REPOS    comma-separated globs (fnmatch, '*' crosses '/'); ${user}
 *              stands for the caller's name
 *   [groups] NAME = user1, user2
 *
 * Rules add up: a caller gets every action of every rule that matches.
 * catalog is registry-wide: a rule grants it when it names it or when its
 * repositories are "*".
 * With no rules at all, authenticated users may do everything and
 * anonymous callers nothing. */
#ifndef REG_ACL_H
#define REG_ACL_H

#include <stddef.h>

enum acl_action {
    ACL_PULL = 1,
    ACL_PUSH = 2,
    ACL_DELETE = 4,
    ACL_CATALOG = 8,
    ACL_ALL = 15,
};

struct acl;

int acl_new(struct acl **out);
void acl_free(struct acl *a);

/* Add "WHO ACTIONS REPOS"; REG_E_CONFIG with the reason in err. */
int acl_add_rule(struct acl *a, const char *text, char *err, size_t errsize);
/* Add members ("alice, bob") to group. */
int acl_add_group(struct acl *a, const char *group, const char *members, char *err, size_t errsize);

/* Actions user (NULL = anonymous) may do on repo (NULL: the registry
 * itself, where only catalog counts). */
unsigned acl_allowed(const struct acl *a, const char *user, const char *repo);

/* Parse "pull,push" into a mask; 0 when a word is unknown. */
unsigned acl_parse_actions(const char *s, size_t len);

/* Whether any rule gives anonymous callers anything. */
int acl_anonymous_has_rights(const struct acl *a);

#endif
