/* tests/unit/test_check_subset.c — cairn_check_parse_subset(): the values of
 * cairn check --read-data-subset, good and bad. */
#define _XOPEN_SOURCE 700
#include <string.h>

#include "../../engine/check.h"
#include "check.h"

static void good(const char *spec, enum cairn_check_subset kind, uint32_t n, uint32_t m,
                 double pct, uint64_t bytes)
{
    struct cairn_check_opts o;
    cairn_err err;
    memset(&o, 0x5a, sizeof o);
    cairn_err_clear(&err);
    REQUIRE(cairn_check_parse_subset(spec, &o, &err) == CAIRN_OK, "'%s' refused: %s", spec,
            err.msg);
    CHECK(o.read_data == 1, "'%s' does not read data", spec);
    CHECK(o.subset == kind, "'%s' kind %d, want %d", spec, (int)o.subset, (int)kind);
    if (kind == CAIRN_CHECK_BUCKET)
        CHECK(o.n == n && o.m == m, "'%s' parsed as %u/%u", spec, o.n, o.m);
    if (kind == CAIRN_CHECK_PERCENT)
        CHECK(o.percent == pct, "'%s' parsed as %g%%", spec, o.percent);
    if (kind == CAIRN_CHECK_BYTES)
        CHECK(o.bytes == bytes, "'%s' parsed as %llu bytes", spec, (unsigned long long)o.bytes);
}

static void bad(const char *spec, const char *says)
{
    struct cairn_check_opts o;
    cairn_err err;
    cairn_err_clear(&err);
    CHECK(cairn_check_parse_subset(spec, &o, &err) != CAIRN_OK, "'%s' accepted", spec);
    CHECK(strstr(err.msg, "--read-data-subset") && strstr(err.msg, says),
          "'%s': message '%s' lacks '%s'", spec, err.msg, says);
    CHECK(spec[0] == 0 || strstr(err.msg, spec), "'%s': the message does not quote it: %s",
          spec, err.msg);
}

int main(void)
{
    good("1/7", CAIRN_CHECK_BUCKET, 1, 7, 0, 0);
    good("7/7", CAIRN_CHECK_BUCKET, 7, 7, 0, 0);
    good("1/1", CAIRN_CHECK_BUCKET, 1, 1, 0, 0);
    good("1000000/1000000", CAIRN_CHECK_BUCKET, 1000000, 1000000, 0, 0);
    good("10%", CAIRN_CHECK_PERCENT, 0, 0, 10, 0);
    good("0.5%", CAIRN_CHECK_PERCENT, 0, 0, 0.5, 0);
    good("100%", CAIRN_CHECK_PERCENT, 0, 0, 100, 0);
    good("500M", CAIRN_CHECK_BYTES, 0, 0, 0, 500ull << 20);
    good("2GiB", CAIRN_CHECK_BYTES, 0, 0, 0, 2ull << 30);
    good("4096", CAIRN_CHECK_BYTES, 0, 0, 0, 4096);

    bad("0/7", "1 <= N <= M");
    bad("8/7", "1 <= N <= M");
    bad("1/0", "1 <= N <= M");
    bad("1/1000001", "1 <= N <= M");
    bad("1/", "is not N/M");
    bad("/7", "is not N/M");
    bad("1/7x", "is not N/M");
    bad("-1/7", "is not N/M");
    bad("1/-7", "is not N/M");
    bad("99999999999999999999/7", "is not N/M");
    bad("0%", "above 0");
    bad("100.5%", "at most 100");
    bad("%", "is not N/M");
    bad("x%", "is not N/M");
    bad("5%%", "is not N/M");
    bad("0", "above 0");
    bad("12Q", "is not N/M");
    bad("", "is not N/M");
    bad("M", "is not N/M");
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
