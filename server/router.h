/* Path -> route. Repository names contain slashes, so the path is parsed
 * from the right. */
#ifndef REG_ROUTER_H
#define REG_ROUTER_H

#include "../api/api.h"

/* Parse path (already percent-decoded). REG_E_NOT_FOUND when it names no
 * endpoint, REG_E_NAME_INVALID when the repository name is bad. */
int router_match(const char *path, struct route *out);

#endif
