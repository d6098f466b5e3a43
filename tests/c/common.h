/* Helpers shared by the C tests: checks that report the library's last error, and the failure
 * oracle of WORKLOADS.md in C. */
#ifndef METAFED_TEST_COMMON_H
#define METAFED_TEST_COMMON_H

#include "metafed.h"
#include <stdio.h>
#include <stdlib.h>

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);          \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* Calls a metafed function that must succeed. */
#define OK(call)                                                                              \
    do {                                                                                      \
        metafed_status s_ = (call);                                                           \
        if (s_ != METAFED_OK) {                                                               \
            fprintf(stderr, "%s:%d: %s returned %d (%s): %s\n", __FILE__, __LINE__, #call,   \
                    (int)s_, metafed_status_str(s_), metafed_last_error());                   \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* Calls a metafed function that must fail with `want`, leaving a message. */
#define FAILS(want, call)                                                                     \
    do {                                                                                      \
        metafed_status s_ = (call);                                                           \
        if (s_ != (want)) {                                                                   \
            fprintf(stderr, "%s:%d: %s returned %d (%s), expected %d (%s): %s\n", __FILE__,  \
                    __LINE__, #call, (int)s_, metafed_status_str(s_), (int)(want),            \
                    metafed_status_str(want), metafed_last_error());                          \
            exit(1);                                                                          \
        }                                                                                     \
        CHECK(metafed_last_error()[0] != '\0');                                               \
    } while (0)

/* Milliseconds as the nanoseconds every duration of the ABI is in. */
#define MS(n) ((uint64_t)(n) * 1000000u)

static inline uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* fails(task_id, attempt, p) = splitmix64(task_id * 31 + attempt) < floor(p * 2^64) */
static inline int oracle_fails(uint64_t task_id, uint64_t attempt, double p) {
    uint64_t threshold = p >= 1.0 ? UINT64_MAX : (uint64_t)(p * 18446744073709551616.0);
    return p >= 1.0 || splitmix64(task_id * 31u + attempt) < threshold;
}

#endif
