#include "acl.h"

#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/err.h"

enum who { WHO_USER, WHO_GROUP, WHO_ANONYMOUS, WHO_AUTHENTICATED, WHO_ANY };

struct rule {
    enum who who;
    char *name; /* user or group name */
    unsigned actions;
    int catalog; /* grants the registry-wide catalog right */
    char **globs;
    size_t nglobs;
};

struct group {
    char *name;
    char **members;
    size_t n;
};

struct acl {
    struct rule *rules;
    size_t nrules;
    struct group *groups;
    size_t ngroups;
};

int acl_new(struct acl **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? REG_OK : REG_E_NOMEM;
}

void acl_free(struct acl *a)
{
    size_t i, j;

    if (!a)
        return;
    for (i = 0; i < a->nrules; i++) {
        free(a->rules[i].name);
        for (j = 0; j < a->rules[i].nglobs; j++)
            free(a->rules[i].globs[j]);
        free(a->rules[i].globs);
    }
    free(a->rules);
    for (i = 0; i < a->ngroups; i++) {
        free(a->groups[i].name);
        for (j = 0; j < a->groups[i].n; j++)
            free(a->groups[i].members[j]);
        free(a->groups[i].members);
    }
    free(a->groups);
    free(a);
}

unsigned acl_parse_actions(const char *s, size_t len)
{
    static const struct {
        const char *word;
        unsigned bit;
    } words[] = {{"pull", ACL_PULL},
                 {"push", ACL_PUSH},
                 {"delete", ACL_DELETE},
                 {"catalog", ACL_CATALOG},
                 {"*", ACL_ALL}};
    unsigned mask = 0;
    size_t start = 0, i, w;

    for (i = 0; i <= len; i++) {
        if (i < len && s[i] != ',')
            continue;
        for (w = 0; w < sizeof(words) / sizeof(words[0]); w++)
            if (strlen(words[w].word) == i - start && !memcmp(s + start, words[w].word, i - start))
                break;
        if (w == sizeof(words) / sizeof(words[0]))
            return 0;
        mask |= words[w].bit;
        start = i + 1;
    }
    return mask;
}

/* Split s on commas into trimmed, non-empty strings. */
static int split_list(const char *s, char ***out, size_t *n)
{
    char **v = NULL;
    size_t count = 0;
    const char *p = s;

    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char **nv;

        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
            len--;
        if (len) {
            nv = realloc(v, (count + 1) * sizeof(*v));
            if (!nv || !(nv[count] = strndup(p, len))) {
                free(nv ? nv : v);
                return REG_E_NOMEM;
            }
            v = nv;
            count++;
        }
        if (!e)
            break;
        p = e + 1;
    }
    *out = v;
    *n = count;
    return REG_OK;
}

int acl_add_rule(struct acl *a, const char *text, char *err, size_t errsize)
{
    char who[256], actions[128], repos[1024];
    struct rule r, *nr;
    int rc;

    memset(&r, 0, sizeof(r));
    if (sscanf(text, "%255s %127s %1023[^\n]", who, actions, repos) != 3) {
        snprintf(err, errsize, "rule: expected 'WHO ACTIONS REPOS', got '%s'", text);
        return REG_E_CONFIG;
    }
    if (!strncmp(who, "user:", 5) && who[5]) {
        r.who = WHO_USER;
    } else if (!strncmp(who, "group:", 6) && who[6]) {
        r.who = WHO_GROUP;
    } else if (!strcmp(who, "anonymous")) {
        r.who = WHO_ANONYMOUS;
    } else if (!strcmp(who, "authenticated")) {
        r.who = WHO_AUTHENTICATED;
    } else if (!strcmp(who, "*")) {
        r.who = WHO_ANY;
    } else {
        snprintf(err, errsize,
                 "rule: '%s' is not user:NAME, group:NAME, anonymous, authenticated or *", who);
        return REG_E_CONFIG;
    }
    r.actions = acl_parse_actions(actions, strlen(actions));
    if (!r.actions) {
        snprintf(err, errsize, "rule: actions '%s' are not from pull,push,delete,catalog,*",
                 actions);
        return REG_E_CONFIG;
    }
    rc = split_list(repos, &r.globs, &r.nglobs);
    if (rc)
        return rc;
    /* Catalog is registry-wide: a rule grants it when it names it, or when
     * "*" covers every repository. */
    r.catalog = strstr(actions, "catalog") != NULL;
    for (size_t g = 0; g < r.nglobs && !r.catalog; g++)
        r.catalog = (r.actions & ACL_CATALOG) && !strcmp(r.globs[g], "*");
    if (r.who == WHO_USER || r.who == WHO_GROUP)
        r.name = strdup(strchr(who, ':') + 1);
    nr = realloc(a->rules, (a->nrules + 1) * sizeof(*nr));
    if (!nr || ((r.who == WHO_USER || r.who == WHO_GROUP) && !r.name)) {
        size_t j;

        for (j = 0; j < r.nglobs; j++)
            free(r.globs[j]);
        free(r.globs);
        free(r.name);
        if (nr)
            a->rules = nr;
        return REG_E_NOMEM;
    }
    a->rules = nr;
    a->rules[a->nrules++] = r;
    return REG_OK;
}

int acl_add_group(struct acl *a, const char *group, const char *members, char *err, size_t errsize)
{
    struct group g, *ng;
    int rc;

    (void)err;
    (void)errsize;
    memset(&g, 0, sizeof(g));
    g.name = strdup(group);
    if (!g.name)
        return REG_E_NOMEM;
    rc = split_list(members, &g.members, &g.n);
    ng = rc ? NULL : realloc(a->groups, (a->ngroups + 1) * sizeof(*ng));
    if (!ng) {
        size_t j;

        for (j = 0; j < g.n; j++)
            free(g.members[j]);
        free(g.members);
        free(g.name);
        return REG_E_NOMEM;
    }
    a->groups = ng;
    a->groups[a->ngroups++] = g;
    return REG_OK;
}

static int in_group(const struct acl *a, const char *group, const char *user)
{
    size_t i, j;

    for (i = 0; i < a->ngroups; i++) {
        if (strcmp(a->groups[i].name, group) != 0)
            continue;
        for (j = 0; j < a->groups[i].n; j++)
            if (!strcmp(a->groups[i].members[j], user))
                return 1;
    }
    return 0;
}

static int rule_applies(const struct acl *a, const struct rule *r, const char *user)
{
    switch (r->who) {
    case WHO_ANY:
        return 1;
    case WHO_ANONYMOUS:
        return user == NULL;
    case WHO_AUTHENTICATED:
        return user != NULL;
    case WHO_USER:
        return user && !strcmp(r->name, user);
    case WHO_GROUP:
        return user && in_group(a, r->name, user);
    }
    return 0;
}

/* glob with ${user} replaced; a ${user} glob never matches anonymous. */
static int glob_matches(const char *glob, const char *user, const char *repo)
{
    const char *var = strstr(glob, "${user}");
    char buf[1024];

    if (!var)
        return fnmatch(glob, repo, 0) == 0;
    if (!user)
        return 0;
    if (snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(var - glob), glob, user, var + 7) >=
        (int)sizeof(buf))
        return 0;
    return fnmatch(buf, repo, 0) == 0;
}

unsigned acl_allowed(const struct acl *a, const char *user, const char *repo)
{
    unsigned mask = 0;
    size_t i, j;

    if (a->nrules == 0)
        return user ? ACL_ALL : 0;
    for (i = 0; i < a->nrules; i++) {
        const struct rule *r = &a->rules[i];

        if (!rule_applies(a, r, user))
            continue;
        if (!repo) {
            if (r->catalog)
                mask |= ACL_CATALOG;
            continue;
        }
        for (j = 0; j < r->nglobs; j++)
            if (glob_matches(r->globs[j], user, repo)) {
                mask |= r->actions;
                break;
            }
    }
    return mask;
}

int acl_anonymous_has_rights(const struct acl *a)
{
    size_t i;

    for (i = 0; i < a->nrules; i++)
        if (a->rules[i].who == WHO_ANONYMOUS || a->rules[i].who == WHO_ANY)
            return 1;
    return 0;
}
