/* What the modules of the service layer share among themselves (not part
 * of service.h: its users never need it). */
#ifndef REG_SERVICE_SHARED_H
#define REG_SERVICE_SHARED_H

#include "service.h"

struct index;

/* Resolve ref in repo from the index alone (never an upstream) and fill out;
 * with_data copies the bytes (malloc'd, the caller frees).
 * REG_E_MANIFEST_UNKNOWN when repo lacks it. Only ref->d.str of a digest
 * reference is read. */
int svc_manifest_read(struct index *ix, const char *repo, const struct svc_ref *ref, int with_data,
                      struct svc_manifest *out);

#endif
