/* tests/unit/test_engine_util.c — engine/util.c: bounded buffers, hex, RFC 3339
 * time parsing and formatting, base64, UTF-8 validation, atomic file writes and
 * error prefixes. Exit 0 when every check passes; each failure prints a
 * "FAIL: ..." line on stderr. */
#define _XOPEN_SOURCE 700
#include "../../engine/util.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

static char tmpdir[] = "/tmp/cairn-test-engine-util-XXXXXX";
static int have_tmpdir;

static void cleanup(void)
{
    if (have_tmpdir)
        test_rm_tree(tmpdir);
}

/* ---- cairn_buf ---- */

static void test_buf(void)
{
    cairn_buf b;
    char big[64];
    void *p;
    size_t len = 12345;

    cairn_buf_init(&b, 10);
    CHECK(cairn_buf_append(&b, "0123456789", 10) == CAIRN_OK, "buf: append up to max refused");
    CHECK(b.len == 10, "buf: len %zu after 10 bytes", b.len);
    CHECK(cairn_buf_append(&b, "x", 1) != CAIRN_OK, "buf: append beyond max accepted");
    CHECK(b.len == 10, "buf: a refused append changed len to %zu", b.len);
    CHECK(cairn_buf_putc(&b, 'y') != CAIRN_OK, "buf: putc beyond max accepted");
    CHECK(cairn_buf_appendf(&b, "%d", 7) != CAIRN_OK, "buf: appendf beyond max accepted");
    CHECK(cairn_buf_reserve(&b, 1) != CAIRN_OK, "buf: reserve beyond max accepted");
    CHECK(b.len == 10 && memcmp(b.data, "0123456789", 10) == 0,
          "buf: refused operations damaged the content");
    CHECK(cairn_buf_cstr(&b) != NULL && strcmp(cairn_buf_cstr(&b), "0123456789") == 0,
          "buf: cstr of a full capped buffer wrong");
    cairn_buf_free(&b);
    CHECK(b.data == NULL && b.len == 0, "buf: free did not reset");

    /* a single large append beyond the cap */
    cairn_buf_init(&b, 16);
    memset(big, 'z', sizeof big);
    CHECK(cairn_buf_append(&b, big, sizeof big) != CAIRN_OK, "buf: 64-byte append into 16 accepted");
    CHECK(b.len == 0, "buf: failed append left len %zu", b.len);
    CHECK(cairn_buf_appendf(&b, "%s", "0123456789abcdef") == CAIRN_OK && b.len == 16,
          "buf: appendf exactly to max refused");
    CHECK(cairn_buf_appendf(&b, "%s", "") == CAIRN_OK, "buf: empty appendf at max refused");
    cairn_buf_free(&b);

    /* uncapped growth, appendf, reset, detach */
    cairn_buf_init(&b, 0);
    for (int i = 0; i < 100000; i++)
        if (cairn_buf_appendf(&b, "%05d", i % 100000) != CAIRN_OK) {
            CHECK(0, "buf: uncapped appendf failed at %d", i);
            break;
        }
    CHECK(b.len == 500000, "buf: uncapped len %zu, want 500000", b.len);
    CHECK(memcmp(b.data + 5 * 4242, "04242", 5) == 0, "buf: appendf content wrong");
    cairn_buf_reset(&b);
    CHECK(b.len == 0 && b.data != NULL, "buf: reset should keep memory and zero len");
    cairn_buf_append(&b, "hello", 5);
    p = cairn_buf_detach(&b, &len);
    CHECK(p != NULL && len == 5 && memcmp(p, "hello", 6) == 0,
          "buf: detach returned wrong data/len (len %zu)", len);
    CHECK(b.data == NULL && b.len == 0 && b.cap == 0, "buf: detach did not hand over ownership");
    free(p); /* ours now */
    cairn_buf_free(&b); /* must not double free */

    /* detach of an empty buffer gives an empty string, never NULL */
    cairn_buf_init(&b, 0);
    p = cairn_buf_detach(&b, &len);
    CHECK(p != NULL && len == 0 && ((char *)p)[0] == 0, "buf: detach of empty buffer");
    free(p);
}

/* ---- hex ---- */

static void test_hex(void)
{
    const uint8_t in[4] = {0x00, 0xab, 0xff, 0x10};
    char out[9];
    uint8_t back[4], b3[3];
    cairn_id id;
    char idhex[CAIRN_HEX_LEN + 1];

    cairn_hex(in, 4, out);
    CHECK(strcmp(out, "00abff10") == 0, "hex: got '%s', want 00abff10", out);
    CHECK(cairn_unhex("00abff10", back, 4) == CAIRN_OK && memcmp(back, in, 4) == 0,
          "unhex: round trip");
    CHECK(cairn_unhex("00ABFF10", back, 4) == CAIRN_OK && memcmp(back, in, 4) == 0,
          "unhex: uppercase not accepted");
    CHECK(cairn_unhex("00abfg10", back, 4) != CAIRN_OK, "unhex: 'g' accepted");
    CHECK(cairn_unhex("00ab f10", back, 4) != CAIRN_OK, "unhex: space accepted");
    CHECK(cairn_unhex("-0abff10", back, 4) != CAIRN_OK, "unhex: '-' accepted");
    CHECK(cairn_unhex("00abff1", back, 4) != CAIRN_OK, "unhex: 7 chars for 4 bytes accepted");
    CHECK(cairn_unhex("00abff", back, 4) != CAIRN_OK, "unhex: 6 chars for 4 bytes accepted");
    CHECK(cairn_unhex("00abff10", b3, 3) != CAIRN_OK, "unhex: 8 chars for 3 bytes accepted");
    CHECK(cairn_unhex("", b3, 3) != CAIRN_OK, "unhex: empty string for 3 bytes accepted");
    CHECK(cairn_unhex("", b3, 0) == CAIRN_OK, "unhex: empty string for 0 bytes refused");

    for (int i = 0; i < CAIRN_ID_LEN; i++)
        id.b[i] = (uint8_t)(i * 37 + 1);
    cairn_id_hex(&id, idhex);
    CHECK(strlen(idhex) == CAIRN_HEX_LEN, "id_hex: length %zu", strlen(idhex));
    {
        cairn_id back_id;
        memset(&back_id, 0, sizeof back_id);
        CHECK(cairn_id_parse(idhex, &back_id) == CAIRN_OK &&
                  memcmp(back_id.b, id.b, CAIRN_ID_LEN) == 0,
              "id_parse: round trip");
        CHECK(!cairn_id_is_zero(&back_id), "id_is_zero on a non-zero id");
        memset(&back_id, 0, sizeof back_id);
        CHECK(cairn_id_is_zero(&back_id), "id_is_zero on a zero id");
        idhex[10] = 'x';
        CHECK(cairn_id_parse(idhex, &back_id) != CAIRN_OK, "id_parse: bad char accepted");
        idhex[10] = '0';
        idhex[63] = 0;
        CHECK(cairn_id_parse(idhex, &back_id) != CAIRN_OK, "id_parse: 63 chars accepted");
    }
}

/* ---- time ---- */

#define T0 1795294901LL /* 2026-11-21T21:01:41Z */
#define NS 1000000000LL

static void expect_time(const char *s, int64_t want)
{
    int64_t got = -42;
    int rc = cairn_parse_time(s, &got);
    CHECK(rc == CAIRN_OK, "parse_time('%s') refused (rc %d)", s, rc);
    if (rc == CAIRN_OK)
        CHECK(got == want, "parse_time('%s') = %lld, want %lld", s, (long long)got,
              (long long)want);
}

static void expect_bad_time(const char *s)
{
    int64_t got = 0;
    int rc = cairn_parse_time(s, &got);
    CHECK(rc != CAIRN_OK, "parse_time('%s') accepted an invalid time (= %lld ns)", s,
          (long long)got);
}

static void test_time(void)
{
    static const int64_t samples[] = {
        0, 1, 999999999, T0 * NS, T0 * NS + 123456789, 951825600LL * NS + 5,
        -1, -14182940LL * NS, -14182940LL * NS - 1, 4102444800LL * NS + 999999999};
    char buf[64];

    expect_time("2026-11-21T21:01:41Z", T0 * NS);
    expect_time("2026-11-21t21:01:41z", T0 * NS);
    expect_time("2026-11-21T23:01:41+02:00", T0 * NS);
    expect_time("2026-11-21T15:31:41-05:30", T0 * NS);
    expect_time("2026-11-22T02:31:41+05:30", T0 * NS);
    expect_time("2026-11-21T21:01:41.123456789Z", T0 * NS + 123456789);
    expect_time("2026-11-21T21:01:41.5Z", T0 * NS + 500000000);
    expect_time("2026-11-21T21:01:41.000000001Z", T0 * NS + 1);
    expect_time("2026-11-21T23:01:41.25+02:00", T0 * NS + 250000000);
    expect_time("2026-11-21 21:01:41Z", T0 * NS);
    expect_time("2026-11-21 21:01:41 UTC", T0 * NS);
    expect_time("2026-11-21 21:01:41.5 UTC", T0 * NS + 500000000);
    expect_time("2000-02-29T12:00:00Z", 951825600LL * NS);
    expect_time("1969-07-20T20:17:40Z", -14182940LL * NS);
    expect_time("1970-01-01T00:00:00Z", 0);

    expect_bad_time("2026-13-01");
    expect_bad_time("2026-00-10");
    expect_bad_time("2026-11-32");
    expect_bad_time("2026-11-00");
    expect_bad_time("garbage");
    expect_bad_time("");
    expect_bad_time("2026-11-21T25:00");
    expect_bad_time("2026-11-21T24:00:00Z");
    expect_bad_time("2026-11-21T21:60:00Z");
    expect_bad_time("2026-11-21T21:01:61Z");
    expect_bad_time("2026-11-21T21:01:41.Z");
    expect_bad_time("2026-11-21T21:01:41Q");
    expect_bad_time("2026-11-21T21:01:41Zjunk");
    expect_bad_time("2026-11-21T21:01:41+2:00");
    expect_bad_time("2026-11-21T21");
    expect_bad_time("2026/11/21");
    expect_bad_time("26-11-21");
    /* a calendar date that does not exist must not roll over into March */
    expect_bad_time("2026-02-30T00:00:00Z");
    expect_bad_time("2026-04-31");
    expect_bad_time("2026-02-29");       /* not a leap year */
    expect_bad_time("1900-02-29");       /* century, not a leap year */
    expect_time("2024-02-29T00:00:00Z", 1709164800LL * NS);
    expect_time("2026-12-31T23:59:59Z", 1798761599LL * NS);
    /* offsets out of range */
    expect_bad_time("2026-11-21T21:01:41+02:99");
    /* " UTC" must be exactly that */
    expect_bad_time("2026-11-21 21:01:41 UXX");
    expect_bad_time("2026-11-21 21:01:41 Usomething");
    {
        /* " U" at the very end: the parser must not step over the terminating
         * NUL. The bytes after the string are NULs here, so a parser that
         * skips 4 bytes past " U" lands on a NUL and "accepts". */
        char s[40];
        memset(s, 0, sizeof s);
        strcpy(s, "2026-11-21 21:01:41 U");
        expect_bad_time(s);
    }

    for (size_t i = 0; i < sizeof samples / sizeof *samples; i++) {
        int64_t back = 0;
        cairn_format_time(samples[i], buf, sizeof buf);
        CHECK(strlen(buf) == 30 && buf[29] == 'Z' && buf[10] == 'T',
              "format_time(%lld) = '%s' not in the documented form", (long long)samples[i], buf);
        CHECK(cairn_parse_time(buf, &back) == CAIRN_OK && back == samples[i],
              "format/parse round trip of %lld: '%s' -> %lld", (long long)samples[i], buf,
              (long long)back);
    }
    cairn_format_time(0, buf, sizeof buf);
    CHECK(strcmp(buf, "1970-01-01T00:00:00.000000000Z") == 0, "format_time(0) = '%s'", buf);
    cairn_format_time(T0 * NS + 123456789, buf, sizeof buf);
    CHECK(strcmp(buf, "2026-11-21T21:01:41.123456789Z") == 0, "format_time(T0) = '%s'", buf);
    cairn_format_time(-1, buf, sizeof buf);
    CHECK(strcmp(buf, "1969-12-31T23:59:59.999999999Z") == 0, "format_time(-1) = '%s'", buf);
}

/* ---- base64 ---- */

static void b64_case(const uint8_t *in, size_t n, const char *want)
{
    char *e = cairn_b64_encode(in, n);
    cairn_buf b = CAIRN_BUF_INIT;
    CHECK(e != NULL, "b64_encode returned NULL for %zu bytes", n);
    if (!e)
        return;
    if (want)
        CHECK(strcmp(e, want) == 0, "b64_encode: got '%s', want '%s'", e, want);
    CHECK(cairn_b64_decode(e, &b) == CAIRN_OK, "b64_decode('%.40s') refused", e);
    CHECK(b.len == n && (n == 0 || memcmp(b.data, in, n) == 0),
          "b64 round trip of %zu bytes gave %zu bytes / different content", n, b.len);
    cairn_buf_free(&b);
    free(e);
}

static void test_b64(void)
{
    uint8_t all[256 * 3 + 1];
    cairn_buf b = CAIRN_BUF_INIT;
    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (uint8_t)(i * 7 + (i >> 8));
    b64_case((const uint8_t *)"", 0, "");
    b64_case((const uint8_t *)"f", 1, "Zg==");
    b64_case((const uint8_t *)"fo", 2, "Zm8=");
    b64_case((const uint8_t *)"foo", 3, "Zm9v");
    b64_case((const uint8_t *)"foobar", 6, "Zm9vYmFy");
    b64_case((const uint8_t *)"\0\0\0\0", 4, "AAAAAA==");
    b64_case((const uint8_t *)"a\0b\0\xff", 5, NULL);
    for (size_t n = 0; n <= 5; n++)
        b64_case(all, n, NULL);
    b64_case(all, sizeof all, NULL);

    /* the decoder reuses a buffer that already holds data */
    cairn_buf_append(&b, "stale stale stale", 17);
    CHECK(cairn_b64_decode("Zm9v", &b) == CAIRN_OK && b.len == 3 && memcmp(b.data, "foo", 3) == 0,
          "b64_decode into a used buffer");
    CHECK(cairn_b64_decode("Zm9v!A==", &b) != CAIRN_OK, "b64_decode accepted '!'");
    CHECK(cairn_b64_decode("Zm9vYmFy-_", &b) != CAIRN_OK, "b64_decode accepted url-safe chars");
    CHECK(cairn_b64_decode("Zg=", &b) != CAIRN_OK, "b64_decode accepted bad padding");
    CHECK(cairn_b64_decode("Zm9v\nYmFy", &b) != CAIRN_OK, "b64_decode accepted a newline");
    cairn_buf_free(&b);
}

/* ---- UTF-8 ---- */

static void utf8_case(const char *s, size_t n, int want, const char *what)
{
    int got = cairn_utf8_valid(s, n);
    CHECK(!!got == want, "utf8_valid(%s) = %d, want %d", what, got, want);
}

#define U8(lit, want) utf8_case(lit, sizeof(lit) - 1, want, #lit)

static void test_utf8(void)
{
    U8("", 1);
    U8("plain ascii", 1);
    U8("caf\xc3\xa9", 1);                 /* é */
    U8("\xe2\x82\xac", 1);                /* € */
    U8("\xf0\x9f\x98\x80", 1);            /* U+1F600 */
    U8("\xc2\x80", 1);                    /* U+0080, smallest 2-byte */
    U8("\xe0\xa0\x80", 1);                /* U+0800, smallest 3-byte */
    U8("\xf0\x90\x80\x80", 1);            /* U+10000, smallest 4-byte */
    U8("\xf4\x8f\xbf\xbf", 1);            /* U+10FFFF */
    U8("\xed\x9f\xbf", 1);                /* U+D7FF, just below surrogates */
    U8("\xee\x80\x80", 1);                /* U+E000, just above */
    U8("\xef\xbf\xbf", 1);                /* U+FFFF */
    /* overlong */
    U8("\xc0\xaf", 0);
    U8("\xc1\xbf", 0);
    U8("\xc0\x80", 0);                    /* overlong NUL */
    U8("\xe0\x80\xaf", 0);
    U8("\xe0\x9f\xbf", 0);
    U8("\xf0\x80\x80\xaf", 0);
    U8("\xf0\x8f\xbf\xbf", 0);
    /* surrogates */
    U8("\xed\xa0\x80", 0);
    U8("\xed\xbf\xbf", 0);
    U8("a\xed\xb2\x80z", 0);
    /* above U+10FFFF and invalid lead bytes */
    U8("\xf4\x90\x80\x80", 0);
    U8("\xf5\x80\x80\x80", 0);
    U8("\xf8\x88\x80\x80\x80", 0);
    U8("\xff", 0);
    U8("\xfe", 0);
    U8("\xff\xfe", 0);
    /* stray continuation bytes */
    U8("\x80", 0);
    U8("a\xbfz", 0);
    /* truncated sequences, at the end and in the middle */
    U8("\xc3", 0);
    U8("\xe2\x82", 0);
    U8("\xf0\x9f\x98", 0);
    U8("abc\xf0\x9f", 0);
    U8("\xe2\x82z", 0);
    U8("\xf0\x9f\x98z", 0);
    /* a NUL inside the range */
    utf8_case("ab\0cd", 5, 0, "\"ab\\0cd\"");
    /* n is honoured: a valid 2-byte char cut by n */
    utf8_case("\xc3\xa9", 1, 0, "first byte of \\xc3\\xa9");
    utf8_case("abc\xff", 3, 1, "abc with a bad byte beyond n");
}

/* ---- files ---- */

static void test_files(void)
{
    char path[512], path2[512];
    cairn_buf b = CAIRN_BUF_INIT;
    cairn_err err;
    struct stat st;
    uint8_t data[70000];
    DIR *d;
    struct dirent *de;
    int leftovers = 0;

    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 131 + 7);
    umask(022);
    snprintf(path, sizeof path, "%s/atomic.bin", tmpdir);
    cairn_err_clear(&err);
    CHECK(cairn_write_file_atomic(path, data, sizeof data, 0640, &err) == CAIRN_OK,
          "write_file_atomic failed: %s", err.msg);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0640 && st.st_size == sizeof data,
          "write_file_atomic: mode %o size %lld, want 0640 %zu", (unsigned)(st.st_mode & 07777),
          (long long)st.st_size, sizeof data);
    CHECK(cairn_read_file(path, &b, 0, &err) == CAIRN_OK && b.len == sizeof data &&
              memcmp(b.data, data, sizeof data) == 0,
          "write_file_atomic: content differs");
    /* replace: content and mode of the new file */
    CHECK(cairn_write_file_atomic(path, "short", 5, 0600, &err) == CAIRN_OK,
          "write_file_atomic (replace) failed: %s", err.msg);
    cairn_buf_reset(&b);
    CHECK(cairn_read_file(path, &b, 0, &err) == CAIRN_OK && b.len == 5 &&
              memcmp(b.data, "short", 5) == 0,
          "write_file_atomic: replaced content wrong");
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600,
          "write_file_atomic: replaced mode %o, want 0600", (unsigned)(st.st_mode & 07777));
    /* empty file */
    snprintf(path2, sizeof path2, "%s/empty", tmpdir);
    CHECK(cairn_write_file_atomic(path2, "", 0, 0644, &err) == CAIRN_OK &&
              stat(path2, &st) == 0 && st.st_size == 0 && (st.st_mode & 07777) == 0644,
          "write_file_atomic of an empty file");
    /* no temp files left behind */
    d = opendir(tmpdir);
    while (d && (de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".tmp."))
            leftovers++;
    if (d)
        closedir(d);
    CHECK(leftovers == 0, "write_file_atomic left %d temp file(s)", leftovers);
    /* a directory that does not exist */
    snprintf(path2, sizeof path2, "%s/no/such/dir/f", tmpdir);
    cairn_err_clear(&err);
    CHECK(cairn_write_file_atomic(path2, "x", 1, 0644, &err) != CAIRN_OK && err.msg[0],
          "write_file_atomic into a missing directory succeeded or gave no message");
    /* read_file cap and NOTFOUND */
    cairn_buf_reset(&b);
    CHECK(cairn_read_file(path, &b, 4, &err) != CAIRN_OK, "read_file ignored max");
    cairn_buf_reset(&b);
    snprintf(path2, sizeof path2, "%s/missing", tmpdir);
    CHECK(cairn_read_file(path2, &b, 0, &err) == CAIRN_NOTFOUND, "read_file of a missing file");
    cairn_buf_free(&b);
}

/* ---- errors ---- */

static void test_errors(void)
{
    cairn_err err;
    char longpre[3000];
    int rc;

    rc = cairn_error(&err, CAIRN_NOTFOUND, "inner %d", 5);
    CHECK(rc == CAIRN_NOTFOUND && err.code == CAIRN_NOTFOUND && strcmp(err.msg, "inner 5") == 0,
          "cairn_error: rc %d code %d msg '%s'", rc, err.code, err.msg);
    rc = cairn_error_prefix(&err, "outer '%s'", "x");
    CHECK(rc == CAIRN_NOTFOUND && err.code == CAIRN_NOTFOUND,
          "error_prefix changed the code: rc %d code %d", rc, err.code);
    CHECK(strcmp(err.msg, "outer 'x': inner 5") == 0, "error_prefix: msg '%s'", err.msg);
    rc = cairn_error_prefix(&err, "top");
    CHECK(strcmp(err.msg, "top: outer 'x': inner 5") == 0, "error_prefix twice: msg '%s'",
          err.msg);

    cairn_err_clear(&err);
    CHECK(err.code == CAIRN_OK && err.msg[0] == 0, "err_clear");
    rc = cairn_error_prefix(&err, "ctx");
    CHECK(rc == CAIRN_FAILED && err.code == CAIRN_FAILED,
          "error_prefix on a clear error should make it FAILED (rc %d)", rc);
    CHECK(strcmp(err.msg, "ctx: ") == 0, "error_prefix on an empty message: '%s'", err.msg);

    /* overlong prefix and message: truncated, NUL-terminated, no overflow */
    memset(longpre, 'p', sizeof longpre - 1);
    longpre[sizeof longpre - 1] = 0;
    cairn_error(&err, CAIRN_CORRUPT, "%s", longpre);
    rc = cairn_error_prefix(&err, "%s", longpre);
    CHECK(rc == CAIRN_CORRUPT, "error_prefix long: rc %d", rc);
    CHECK(memchr(err.msg, 0, sizeof err.msg) != NULL && strlen(err.msg) < CAIRN_ERRMSG_MAX,
          "error_prefix long: message not terminated inside the buffer");
    CHECK(cairn_error_prefix(NULL, "x") != CAIRN_OK, "error_prefix(NULL) returned OK");
    CHECK(cairn_error(NULL, CAIRN_RETRY, "x") == CAIRN_RETRY, "cairn_error(NULL) rc");
    CHECK(strcmp(cairn_rc_name(CAIRN_CORRUPT), "corrupt") == 0, "rc_name(CORRUPT) = '%s'",
          cairn_rc_name(CAIRN_CORRUPT));
    CHECK(strcmp(cairn_rc_name(12345), "unknown") == 0, "rc_name(12345)");
}

static void test_misc(void)
{
    char *p = cairn_path_join("/a/b/", "/c");
    char s[32];
    CHECK(p && strcmp(p, "/a/b/c") == 0, "path_join('/a/b/', '/c') = '%s'", p ? p : "(null)");
    free(p);
    p = cairn_path_join("/", "x");
    CHECK(p && strcmp(p, "/x") == 0, "path_join('/', 'x') = '%s'", p ? p : "(null)");
    free(p);
    cairn_format_size(512, s, sizeof s);
    CHECK(strcmp(s, "512 B") == 0, "format_size(512) = '%s'", s);
    cairn_format_size(3u << 29, s, sizeof s);
    CHECK(strcmp(s, "1.5 GiB") == 0, "format_size(1.5GiB) = '%s'", s);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "FAIL: mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    have_tmpdir = 1;
    test_buf();
    test_hex();
    test_time();
    test_b64();
    test_utf8();
    test_files();
    test_errors();
    test_misc();
    cleanup();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_engine_util: all checks passed\n");
    return 0;
}
