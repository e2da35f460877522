/* engine/util.c — see util.h. */
#define _GNU_SOURCE
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int cairn_error(cairn_err *err, int rc, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = rc;
    }
    return rc;
}

int cairn_error_prefix(cairn_err *err, const char *fmt, ...)
{
    char pre[CAIRN_ERRMSG_MAX], old[CAIRN_ERRMSG_MAX];
    va_list ap;
    if (!err)
        return CAIRN_FAILED;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    {
        size_t pl = strnlen(pre, sizeof err->msg - 3);
        memcpy(err->msg, pre, pl);
        memcpy(err->msg + pl, ": ", 2);
        snprintf(err->msg + pl + 2, sizeof err->msg - pl - 2, "%s", old);
    }
    if (err->code == CAIRN_OK)
        err->code = CAIRN_FAILED;
    return err->code;
}

void cairn_err_clear(cairn_err *err)
{
    if (err) {
        err->code = CAIRN_OK;
        err->msg[0] = 0;
    }
}

const char *cairn_rc_name(int rc)
{
    switch ((enum cairn_rc)rc) {
    case CAIRN_OK: return "ok";
    case CAIRN_NOTFOUND: return "not found";
    case CAIRN_EXISTS: return "exists";
    case CAIRN_RETRY: return "retry";
    case CAIRN_WARN: return "warning";
    case CAIRN_CORRUPT: return "corrupt";
    case CAIRN_FAILED: return "failed";
    case CAIRN_FATAL: return "fatal";
    }
    return "unknown";
}

/* ---- buffers ---- */

void cairn_buf_init(cairn_buf *b, size_t max)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->max = max;
}

int cairn_buf_reserve(cairn_buf *b, size_t extra)
{
    size_t need, ncap;
    uint8_t *p;
    if (extra > SIZE_MAX - b->len - 1)
        return CAIRN_FAILED;
    need = b->len + extra + 1; /* room for a NUL */
    if (b->max && need > b->max + 1)
        return CAIRN_FAILED;
    if (need <= b->cap)
        return CAIRN_OK;
    ncap = b->cap ? b->cap : 64;
    while (ncap < need)
        ncap = ncap > SIZE_MAX / 2 ? need : ncap * 2;
    if (b->max && ncap > b->max + 1)
        ncap = b->max + 1;
    p = realloc(b->data, ncap);
    if (!p)
        return CAIRN_FAILED;
    b->data = p;
    b->cap = ncap;
    return CAIRN_OK;
}

int cairn_buf_append(cairn_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return CAIRN_OK;
    if (cairn_buf_reserve(b, n) != CAIRN_OK)
        return CAIRN_FAILED;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return CAIRN_OK;
}

int cairn_buf_putc(cairn_buf *b, char c)
{
    return cairn_buf_append(b, &c, 1);
}

int cairn_buf_appendf(cairn_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || cairn_buf_reserve(b, (size_t)n) != CAIRN_OK)
        return CAIRN_FAILED;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return CAIRN_OK;
}

const char *cairn_buf_cstr(cairn_buf *b)
{
    if (cairn_buf_reserve(b, 0) != CAIRN_OK)
        return NULL;
    b->data[b->len] = 0;
    return (const char *)b->data;
}

void *cairn_buf_detach(cairn_buf *b, size_t *len)
{
    void *p;
    if (!b->data)
        cairn_buf_reserve(b, 0);
    if (b->data)
        b->data[b->len] = 0;
    p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void cairn_buf_reset(cairn_buf *b)
{
    b->len = 0;
}

void cairn_buf_free(cairn_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- ids and hex ---- */

void cairn_hex(const uint8_t *in, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = d[in[i] >> 4];
        out[2 * i + 1] = d[in[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int cairn_unhex(const char *in, uint8_t *out, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        int hi, lo;
        if (!in[2 * i] || !in[2 * i + 1])
            return CAIRN_FAILED;
        hi = hexval(in[2 * i]);
        lo = hexval(in[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return CAIRN_FAILED;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return in[2 * n] == 0 ? CAIRN_OK : CAIRN_FAILED;
}

void cairn_id_hex(const cairn_id *id, char out[CAIRN_HEX_LEN + 1])
{
    cairn_hex(id->b, CAIRN_ID_LEN, out);
}

int cairn_id_parse(const char *hex, cairn_id *id)
{
    return cairn_unhex(hex, id->b, CAIRN_ID_LEN);
}

int cairn_id_is_zero(const cairn_id *id)
{
    size_t i;
    for (i = 0; i < CAIRN_ID_LEN; i++)
        if (id->b[i])
            return 0;
    return 1;
}

void cairn_random(void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

/* ---- time ---- */

int64_t cairn_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

double cairn_mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

void cairn_format_time(int64_t ns, char *out, size_t outlen)
{
    time_t s = (time_t)(ns / 1000000000LL);
    long frac = (long)(ns % 1000000000LL);
    struct tm tm;
    if (frac < 0) {
        frac += 1000000000L;
        s -= 1;
    }
    gmtime_r(&s, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static int digits(const char **p, int n, int *out)
{
    int v = 0, i;
    for (i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

int cairn_parse_time(const char *s, int64_t *ns)
{
    struct tm tm;
    int y, mo, d, h = 0, mi = 0, sec = 0;
    int64_t frac = 0, off = 0;
    const char *p = s;
    time_t t;
    memset(&tm, 0, sizeof tm);
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d))
        return CAIRN_FAILED;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
            return CAIRN_FAILED;
        if (*p == ':') {
            p++;
            if (digits(&p, 2, &sec))
                return CAIRN_FAILED;
            if (*p == '.') {
                int64_t scale = 100000000;
                p++;
                if (*p < '0' || *p > '9')
                    return CAIRN_FAILED;
                while (*p >= '0' && *p <= '9') {
                    frac += (*p - '0') * scale;
                    scale /= 10;
                    p++;
                }
            }
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh, om = 0;
        p++;
        if (digits(&p, 2, &oh))
            return CAIRN_FAILED;
        if (*p == ':')
            p++;
        if (*p && digits(&p, 2, &om))
            return CAIRN_FAILED;
        if (oh > 23 || om > 59)
            return CAIRN_FAILED;
        off = sign * (int64_t)(oh * 3600 + om * 60);
    } else if (strcmp(p, " UTC") == 0 || strcmp(p, " utc") == 0) {
        p += 4;
    }
    if (*p)
        return CAIRN_FAILED;
    {
        static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
        int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || (mo == 2 && d == 29 && !leap) ||
            h > 23 || mi > 59 || sec > 60)
            return CAIRN_FAILED;
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = timegm(&tm);
    /* nanoseconds since the epoch fit int64 from 1677 to 2262 only */
    if ((int64_t)t - off > INT64_MAX / 1000000000LL - 1 ||
        (int64_t)t - off < INT64_MIN / 1000000000LL + 1)
        return CAIRN_FAILED;
    *ns = ((int64_t)t - off) * 1000000000LL + frac;
    return CAIRN_OK;
}

void cairn_format_size(uint64_t n, char *out, size_t outlen)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int i = 0;
    while (v >= 1024 && i < 5) {
        v /= 1024;
        i++;
    }
    if (i == 0)
        snprintf(out, outlen, "%llu B", (unsigned long long)n);
    else
        snprintf(out, outlen, "%.1f %s", v, u[i]);
}

/* ---- files ---- */

int cairn_read_file(const char *path, cairn_buf *out, size_t max, cairn_err *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char tmp[65536];
    if (fd < 0)
        return cairn_error(err, errno == ENOENT ? CAIRN_NOTFOUND : CAIRN_FAILED,
                           "cannot open '%s': %s", path, strerror(errno));
    for (;;) {
        ssize_t n = read(fd, tmp, sizeof tmp);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            close(fd);
            return cairn_error(err, CAIRN_FAILED, "cannot read '%s': %s", path,
                               strerror(errno));
        }
        if (n == 0)
            break;
        if ((max && out->len + (size_t)n > max) ||
            cairn_buf_append(out, tmp, (size_t)n) != CAIRN_OK) {
            close(fd);
            return cairn_error(err, CAIRN_FAILED, "'%s' is larger than %zu bytes", path, max);
        }
    }
    close(fd);
    return CAIRN_OK;
}

int cairn_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;
    if (fd < 0)
        return -1;
    rc = fsync(fd);
    close(fd);
    return rc;
}

int cairn_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int cairn_write_file_atomic(const char *path, const void *buf, size_t len, int mode,
                            cairn_err *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    char *slash;
    int fd;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        return cairn_error(err, CAIRN_FAILED, "path too long: '%s'", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return cairn_error(err, CAIRN_FAILED, "cannot create '%s': %s", tmp, strerror(errno));
    if (cairn_write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return cairn_error(err, CAIRN_FAILED, "cannot write '%s': %s", tmp, strerror(e));
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return cairn_error(err, CAIRN_FAILED, "cannot write '%s': %s", path, strerror(e));
    }
    snprintf(dir, sizeof dir, "%s", path);
    slash = strrchr(dir, '/');
    if (slash) {
        if (slash == dir)
            slash[1] = 0;
        else
            *slash = 0;
        cairn_fsync_dir(dir);
    } else {
        cairn_fsync_dir(".");
    }
    return CAIRN_OK;
}

int cairn_mkdir_p(const char *path, int mode, cairn_err *err)
{
    char tmp[PATH_MAX];
    size_t i, n = strlen(path);
    if (n == 0 || n >= sizeof tmp)
        return cairn_error(err, CAIRN_FAILED, "bad directory path '%s'", path);
    memcpy(tmp, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (tmp[i] == '/' || tmp[i] == 0) {
            char c = tmp[i];
            tmp[i] = 0;
            if (mkdir(tmp, (mode_t)mode) != 0 && errno != EEXIST)
                return cairn_error(err, CAIRN_FAILED, "cannot create directory '%s': %s", tmp,
                                   strerror(errno));
            tmp[i] = c;
        }
    }
    return CAIRN_OK;
}

char *cairn_path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p;
    while (la > 1 && a[la - 1] == '/')
        la--;
    while (lb && b[0] == '/') {
        b++;
        lb--;
    }
    p = malloc(la + lb + 2);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    if (la && a[la - 1] != '/')
        p[la++] = '/';
    memcpy(p + la, b, lb);
    p[la + lb] = 0;
    return p;
}

/* ---- base64 ---- */

char *cairn_b64_encode(const uint8_t *in, size_t n)
{
    size_t outlen = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(outlen);
    if (!out)
        return NULL;
    sodium_bin2base64(out, outlen, in, n, sodium_base64_VARIANT_ORIGINAL);
    return out;
}

int cairn_b64_decode(const char *in, cairn_buf *out)
{
    size_t inlen = strlen(in), binlen = 0;
    size_t maxlen = inlen / 4 * 3 + 3;
    cairn_buf_reset(out);
    if (cairn_buf_reserve(out, maxlen) != CAIRN_OK)
        return CAIRN_FAILED;
    if (sodium_base642bin(out->data, maxlen, in, inlen, NULL, &binlen, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0)
        return CAIRN_FAILED;
    out->len = binlen;
    return CAIRN_OK;
}

int cairn_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p;
        size_t k;
        uint32_t cp;
        if (c == 0)
            return 0;
        if (c < 0x80) {
            p++;
            continue;
        }
        if ((c & 0xE0) == 0xC0) {
            k = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if ((size_t)(e - p) <= k)
            return 0;
        for (size_t i = 1; i <= k; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (p[i] & 0x3F);
        }
        if ((k == 1 && cp < 0x80) || (k == 2 && cp < 0x800) || (k == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += k + 1;
    }
    return 1;
}
