/* tests/unit/test_engine_chunker.c — engine/chunker.c: determinism, keyed cut
 * points, size bounds, average size, shift resistance, the "need more bytes"
 * contract, and throughput (printed, not asserted). Uses the repository
 * default parameters: min 256 KiB, avg 1 MiB, max 4 MiB. */
#define _XOPEN_SOURCE 700
#include "../../engine/chunker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)
#define CMIN (256 * KiB)
#define CAVG (1 * MiB)
#define CMAX (4 * MiB)
#define DATA_LEN (64 * MiB)
#define SHIFT_AT 1000   /* insertion point, near the start */
#define SHIFT_LEN 100
#define SKIP_BEFORE (4 * MiB) /* compare boundaries after the first few MiB */

#include "check.h"

static uint64_t rng_state;

static uint64_t splitmix64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    size_t i;
    rng_state = seed;
    for (i = 0; i + 8 <= n; i += 8) {
        uint64_t v = splitmix64();
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] = (uint8_t)splitmix64();
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Cut points (end offsets of chunks) over the whole buffer at once. */
struct cuts {
    size_t *v;
    size_t n, cap;
};

static void cuts_add(struct cuts *c, size_t off)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        c->v = realloc(c->v, c->cap * sizeof *c->v);
        if (!c->v) {
            fprintf(stderr, "FAIL: out of memory\n");
            exit(1);
        }
    }
    c->v[c->n++] = off;
}

static void chunk_all(const struct cairn_chunker *ch, const uint8_t *p, size_t n,
                      struct cuts *out)
{
    size_t off = 0;
    out->n = 0;
    while (off < n) {
        size_t cut = cairn_chunker_next(ch, p + off, n - off);
        if (cut == 0 || cut > n - off) {
            fprintf(stderr, "FAIL: chunker returned %zu with %zu bytes left\n", cut, n - off);
            failures++;
            return;
        }
        off += cut;
        cuts_add(out, off);
    }
}

/* The way a file reader drives it: read in blocks, cut only while at least
 * max bytes are buffered, cut the remainder at end of file. */
static void chunk_streaming(const struct cairn_chunker *ch, const uint8_t *p, size_t n,
                            size_t block, struct cuts *out)
{
    size_t base = 0, have = 0; /* buffered window: p[base .. base+have) */
    size_t pos = 0;
    out->n = 0;
    for (;;) {
        int eof;
        size_t want = n - pos < block ? n - pos : block;
        pos += want;
        have += want;
        eof = pos == n;
        while (have > 0 && (eof || have >= ch->max)) {
            size_t cut = cairn_chunker_next(ch, p + base, have);
            if (cut == 0 || cut > have) {
                fprintf(stderr, "FAIL: streaming chunker returned %zu of %zu\n", cut, have);
                failures++;
                return;
            }
            base += cut;
            have -= cut;
            cuts_add(out, base);
        }
        if (eof)
            break;
    }
}

static int cuts_equal(const struct cuts *a, const struct cuts *b)
{
    return a->n == b->n && memcmp(a->v, b->v, a->n * sizeof *a->v) == 0;
}

/* How many of a's cut points (> from) appear in b shifted by delta. */
static size_t common_cuts(const struct cuts *a, const struct cuts *b, size_t from, size_t delta,
                          size_t *considered)
{
    size_t i, j = 0, hits = 0;
    *considered = 0;
    for (i = 0; i < a->n; i++) {
        size_t want = a->v[i] + delta;
        if (a->v[i] <= from)
            continue;
        (*considered)++;
        while (j < b->n && b->v[j] < want)
            j++;
        if (j < b->n && b->v[j] == want)
            hits++;
    }
    return hits;
}

int main(void)
{
    uint8_t key1[32], key2[32];
    struct cairn_chunker c1, c1b, c2;
    uint8_t *data, *shifted;
    struct cuts a = {0}, a2 = {0}, b = {0}, s = {0}, st = {0};
    size_t i, considered, hits;
    double t0, t1;

    for (i = 0; i < 32; i++) {
        key1[i] = (uint8_t)(i + 1);
        key2[i] = (uint8_t)(i + 1);
    }
    key2[31] ^= 1; /* one bit different */

    data = malloc(DATA_LEN);
    shifted = malloc(DATA_LEN + SHIFT_LEN);
    if (!data || !shifted) {
        fprintf(stderr, "FAIL: out of memory\n");
        return 1;
    }
    fill_random(data, DATA_LEN, 0x1234567887654321ULL);

    cairn_chunker_init(&c1, key1, CMIN, CAVG, CMAX);
    cairn_chunker_init(&c1b, key1, CMIN, CAVG, CMAX);
    cairn_chunker_init(&c2, key2, CMIN, CAVG, CMAX);
    CHECK(memcmp(c1.gear, c1b.gear, sizeof c1.gear) == 0, "same key gave different gear tables");
    CHECK(memcmp(c1.gear, c2.gear, sizeof c1.gear) != 0, "different keys gave the same gear table");
    CHECK(c1.min == CMIN && c1.avg == CAVG && c1.max == CMAX, "init did not keep min/avg/max");

    /* small inputs: nothing to cut */
    CHECK(cairn_chunker_next(&c1, data, 0) == 0, "next(n=0) != 0");
    CHECK(cairn_chunker_next(&c1, data, 1) == 1, "next(n=1) != 1");
    CHECK(cairn_chunker_next(&c1, data, CMIN) == CMIN, "next(n=min) != min");

    /* pass 1, timed */
    t0 = now();
    chunk_all(&c1, data, DATA_LEN, &a);
    t1 = now();
    printf("chunker: %zu chunks over %zu MiB in %.3f s (%.0f MiB/s)\n", a.n, DATA_LEN / MiB,
           t1 - t0, (double)DATA_LEN / MiB / (t1 - t0 > 0 ? t1 - t0 : 1e-9));

    /* determinism: a second chunker with the same key, and a second pass */
    chunk_all(&c1b, data, DATA_LEN, &a2);
    CHECK(cuts_equal(&a, &a2), "same key + data gave different cut points (%zu vs %zu chunks)",
          a.n, a2.n);
    CHECK(a.n > 0 && a.v[a.n - 1] == DATA_LEN, "cut points do not cover the data");

    /* bounds: every chunk in [min, max] except the last, which is in (0, max] */
    {
        size_t prev = 0, bad = 0, smallest = SIZE_MAX, largest = 0, at_max = 0;
        for (i = 0; i < a.n; i++) {
            size_t len = a.v[i] - prev;
            int last = i == a.n - 1;
            if ((!last && (len < CMIN || len > CMAX)) || (last && (len == 0 || len > CMAX))) {
                if (bad++ < 5)
                    fprintf(stderr, "FAIL: chunk %zu has %zu bytes (outside [%zu, %zu])\n", i,
                            len, CMIN, CMAX);
            }
            if (!last && len < smallest)
                smallest = len;
            if (len > largest)
                largest = len;
            if (len == CMAX)
                at_max++;
            prev = a.v[i];
        }
        CHECK(bad == 0, "%zu chunk(s) outside the size bounds", bad);
        printf("chunker: smallest %zu, largest %zu, %zu at max\n", smallest, largest, at_max);
    }

    /* average size within 0.5x .. 2x of avg */
    {
        double mean = (double)DATA_LEN / (double)a.n;
        printf("chunker: mean chunk %.0f bytes (avg parameter %zu)\n", mean, CAVG);
        CHECK(mean >= 0.5 * CAVG && mean <= 2.0 * CAVG, "mean chunk size %.0f not within 0.5x..2x of %zu",
              mean, CAVG);
        /* content-defined, not fixed-size: the sizes must vary */
        CHECK(a.n > 8, "only %zu chunks for 64 MiB", a.n);
    }

    /* a different key gives different cut points */
    chunk_all(&c2, data, DATA_LEN, &b);
    hits = common_cuts(&a, &b, 0, 0, &considered);
    printf("chunker: other key: %zu chunks, %zu of %zu cut points coincide\n", b.n, hits,
           considered);
    CHECK(!cuts_equal(&a, &b), "a different key gave identical cut points");
    CHECK(hits * 10 < considered, "a different key shares %zu of %zu cut points (>= 10%%)", hits,
          considered);

    /* streaming in 1 MiB reads (and odd-sized reads) gives the same cut points */
    chunk_streaming(&c1, data, DATA_LEN, 1 * MiB, &st);
    CHECK(cuts_equal(&a, &st), "streaming (1 MiB reads) cut points differ from whole-buffer ones");
    chunk_streaming(&c1, data, DATA_LEN, 65537, &st);
    CHECK(cuts_equal(&a, &st), "streaming (65537-byte reads) cut points differ");

    /* the "supply more bytes" contract: a buffer that ends before the next
     * natural cut point (and is shorter than max) is returned whole */
    {
        size_t start = 0, tested = 0;
        for (i = 0; i < a.n && tested < 20; i++) {
            size_t len = a.v[i] - start;
            if (i + 1 < a.n && len > CMIN + 2) {
                size_t got = cairn_chunker_next(&c1, data + start, len - 1);
                size_t full = cairn_chunker_next(&c1, data + start, DATA_LEN - start);
                CHECK(full == len, "chunk %zu: recomputed cut %zu != %zu", i, full, len);
                CHECK(got == len - 1,
                      "chunk %zu: with %zu bytes (one short of the cut at %zu) got %zu, want %zu",
                      i, len - 1, len, got, len - 1);
                /* more than the cut but less than max: still the same cut */
                if (len < CMAX) {
                    size_t more = len + (CMAX - len) / 2;
                    if (start + more <= DATA_LEN)
                        CHECK(cairn_chunker_next(&c1, data + start, more) == len,
                              "chunk %zu: cut depends on how many bytes follow it", i);
                }
                tested++;
            }
            start = a.v[i];
        }
        CHECK(tested > 0, "no chunk suitable for the need-more-bytes test");
    }

    /* shift resistance: 100 bytes inserted near the start */
    memcpy(shifted, data, SHIFT_AT);
    fill_random(shifted + SHIFT_AT, SHIFT_LEN, 99);
    memcpy(shifted + SHIFT_AT + SHIFT_LEN, data + SHIFT_AT, DATA_LEN - SHIFT_AT);
    chunk_all(&c1, shifted, DATA_LEN + SHIFT_LEN, &s);
    hits = common_cuts(&a, &s, SKIP_BEFORE, SHIFT_LEN, &considered);
    printf("chunker: after inserting %d bytes at %d: %zu of %zu boundaries past %zu MiB kept\n",
           SHIFT_LEN, SHIFT_AT, hits, considered, SKIP_BEFORE / MiB);
    CHECK(considered > 10, "too few boundaries to judge shift resistance (%zu)", considered);
    CHECK(hits * 10 >= considered * 9,
          "shift resistance: only %zu of %zu boundaries survive a %d-byte insertion", hits,
          considered, SHIFT_LEN);

    /* all-zero data (a common real case): bounds still hold, and it is deterministic */
    {
        uint8_t *z = calloc(1, 16 * MiB);
        size_t prev = 0, bad = 0;
        struct cuts zc = {0};
        if (z) {
            chunk_all(&c1, z, 16 * MiB, &zc);
            for (i = 0; i + 1 < zc.n; i++) {
                size_t len = zc.v[i] - prev;
                if (len < CMIN || len > CMAX)
                    bad++;
                prev = zc.v[i];
            }
            CHECK(zc.n > 0 && bad == 0, "zero data: %zu chunk(s) out of bounds", bad);
            free(zc.v);
            free(z);
        }
    }

    free(a.v);
    free(a2.v);
    free(b.v);
    free(s.v);
    free(st.v);
    free(data);
    free(shifted);
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_engine_chunker: all checks passed\n");
    return 0;
}
