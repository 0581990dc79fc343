/* Small whole-file reads (keys, certificates). */
#ifndef REG_FILE_H
#define REG_FILE_H

#include <stddef.h>

/* Read path, at most max bytes, NUL-terminated; *len (may be NULL) gets the
 * size. NULL on error (errno set) or when the file is larger. free() it. */
char *file_read(const char *path, size_t max, size_t *len);

#endif
