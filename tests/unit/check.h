/* tests/unit/check.h — what every unit test program shares: the failure
 * counter, CHECK (reports and counts, then goes on), REQUIRE (the same, then
 * returns from the calling test function) and removal of a temp tree.
 * Header-only: each test is one program that includes it once, after
 * defining _XOPEN_SOURCE 700 (for nftw). */
#ifndef CAIRN_TEST_CHECK_H
#define CAIRN_TEST_CHECK_H

#include <ftw.h>
#include <stdio.h>
#include <sys/stat.h>

static int failures;

#define CHECK(cond, ...)                                                                 \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "FAIL: %s:%d: ", __FILE__, __LINE__);                        \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "  [%s]\n", #cond);                                          \
            failures++;                                                                  \
        }                                                                                \
    } while (0)

/* A check the rest of the test cannot go on without. */
#define REQUIRE(cond, ...)                                                               \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            CHECK(cond, __VA_ARGS__);                                                    \
            return;                                                                      \
        }                                                                                \
    } while (0)

static inline int test_rm_entry_(const char *p, const struct stat *st, int flag,
                                 struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Removes dir and everything below it (symlinks are not followed). */
static inline void test_rm_tree(const char *dir)
{
    nftw(dir, test_rm_entry_, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
