/* test_util.h - the smallest assertion harness: CHECK counts failures and keeps going, so one
 * run reports every mismatch; test_finish returns the process exit status. */
#ifndef ATTNSIM_TEST_UTIL_H
#define ATTNSIM_TEST_UTIL_H

#include <stdio.h>

static long test_checks, test_failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        test_checks++;                                                                             \
        if (!(cond)) {                                                                             \
            test_failures++;                                                                       \
            if (test_failures <= 50) {                                                             \
                fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond);           \
                fprintf(stderr, __VA_ARGS__);                                                      \
                fputc('\n', stderr);                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

static inline int test_finish(const char *name)
{
    printf("%s: %ld checks, %ld failed\n", name, test_checks, test_failures);
    return test_failures ? 1 : 0;
}

#endif
