/* engine/util.h — the base layer every module uses: return codes, error values,
 * bounded growable buffers, hex, and small file helpers.
 *
 * Ownership: a cairn_buf owns its memory; cairn_buf_free() releases it and
 * cairn_buf_detach() hands it to the caller (who then free()s it).
 * Threading: everything here is reentrant; a cairn_err belongs to one thread.
 * Library code never prints or exits: it fills a cairn_err and returns a code. */
#ifndef CAIRN_UTIL_H
#define CAIRN_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

/* Return codes, graded by what the caller should do. */
enum cairn_rc {
    CAIRN_OK = 0,
    CAIRN_NOTFOUND = -5,  /* the object / row does not exist */
    CAIRN_EXISTS = -6,    /* refused: would overwrite */
    CAIRN_RETRY = -10,    /* transient: 503, SQLITE_BUSY, timeouts */
    CAIRN_WARN = -20,     /* this item skipped, reported, the job goes on */
    CAIRN_CORRUPT = -24,  /* data failed verification */
    CAIRN_FAILED = -25,   /* this object failed */
    CAIRN_FATAL = -30     /* the job cannot go on */
};

#define CAIRN_ERRMSG_MAX 1024

typedef struct cairn_err {
    int code;
    char msg[CAIRN_ERRMSG_MAX];
} cairn_err;

/* Sets err (if not NULL) and returns rc, so callers write
 *   return cairn_error(err, CAIRN_FAILED, "cannot open '%s': %s", p, strerror(errno)); */
int cairn_error(cairn_err *err, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes an existing message: "context: old message". Returns err->code. */
int cairn_error_prefix(cairn_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void cairn_err_clear(cairn_err *err);
const char *cairn_rc_name(int rc);

/* A growable byte buffer with a hard cap (0 = no cap, only for data we made). */
typedef struct cairn_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    size_t max; /* refuse to grow beyond this; 0 = unlimited */
} cairn_buf;

#define CAIRN_BUF_INIT {NULL, 0, 0, 0}
void cairn_buf_init(cairn_buf *b, size_t max);
int cairn_buf_reserve(cairn_buf *b, size_t extra);   /* CAIRN_FAILED if over max / OOM */
int cairn_buf_append(cairn_buf *b, const void *p, size_t n);
int cairn_buf_appendf(cairn_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int cairn_buf_putc(cairn_buf *b, char c);
/* NUL-terminates (not counted in len) and returns data; never NULL on success. */
const char *cairn_buf_cstr(cairn_buf *b);
void *cairn_buf_detach(cairn_buf *b, size_t *len);  /* caller frees */
void cairn_buf_reset(cairn_buf *b);                   /* len = 0, keeps memory */
void cairn_buf_free(cairn_buf *b);

/* 32-byte ids (chunk ids, pack ids, object ids) and their 64-char hex names. */
#define CAIRN_ID_LEN 32
#define CAIRN_HEX_LEN 64
typedef struct cairn_id {
    uint8_t b[CAIRN_ID_LEN];
} cairn_id;

void cairn_hex(const uint8_t *in, size_t n, char *out); /* out: 2n+1 bytes */
int cairn_unhex(const char *in, uint8_t *out, size_t n); /* exact 2n hex chars */
void cairn_id_hex(const cairn_id *id, char out[CAIRN_HEX_LEN + 1]);
int cairn_id_parse(const char *hex, cairn_id *id);
int cairn_id_is_zero(const cairn_id *id);
void cairn_random(void *buf, size_t n); /* cryptographic randomness */

/* Wall clock as nanoseconds since the epoch, and monotonic seconds. */
int64_t cairn_now_ns(void);
double cairn_mono(void);
/* "2026-11-21T21:01:41.123456789Z" into out (>= 40 bytes). */
void cairn_format_time(int64_t ns, char *out, size_t outlen);
/* Parses RFC 3339 ("2026-11-21T21:01:41Z", fractional and +hh:mm offsets,
 * a space instead of T). */
int cairn_parse_time(const char *s, int64_t *ns);
/* "1.5 GiB" style. */
void cairn_format_size(uint64_t n, char *out, size_t outlen);

/* Files. Paths are plain C strings. */
int cairn_read_file(const char *path, cairn_buf *out, size_t max, cairn_err *err);
/* Atomic replace: path.tmp.PID, fsync, rename, fsync the directory. */
int cairn_write_file_atomic(const char *path, const void *buf, size_t len, int mode,
                            cairn_err *err);
int cairn_mkdir_p(const char *path, int mode, cairn_err *err);
int cairn_fsync_dir(const char *dir);
/* write(2) until done (retrying EINTR); 0 or -1 with errno set. */
int cairn_write_all(int fd, const void *buf, size_t len);
/* Joins a and b with one '/', into a malloc'd string (caller frees). */
char *cairn_path_join(const char *a, const char *b);

/* Base64 (standard alphabet, padded). */
char *cairn_b64_encode(const uint8_t *in, size_t n); /* caller frees */
int cairn_b64_decode(const char *in, cairn_buf *out);

/* Whether s is valid UTF-8 with no NUL. */
int cairn_utf8_valid(const char *s, size_t n);

#endif
