/* Shared by the libFuzzer harnesses in tests/fuzz/ (docs/testing.md).
 * Each harness #includes the .c file whose static parsers it drives, as
 * h2o's unit tests do; the rest of the tree comes from build/fuzz/libcore.a. */
#ifndef REG_FUZZ_H
#define REG_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A property the code under test broke: report it and crash, so that
 * libFuzzer saves the input. */
#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* The input as a NUL-terminated heap string (it may hold NULs of its own,
 * which end it early as they would a header). To free(). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);

    if (!s)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    return s;
}

/* Log nothing: a level above every real one. */
static inline void fuzz_quiet(void)
{
    log_setup((enum log_level)(LOG_ERROR + 1), LOG_TEXT);
}

#endif
