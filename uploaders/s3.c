/* uploaders/s3.c — the S3 object store (s3://BUCKET/PREFIX) over libcurl, with
 * our own SigV4 signing (s3_sign.c), XML reading (s3_xml.c) and configuration
 * (s3_conf.c).
 *
 * Shape:
 * - Every request goes through s3_request(): it signs (x-amz-content-sha256 is
 *   the real SHA-256 of the body, so S3 verifies every upload), performs it on
 *   an easy handle borrowed from a small pool, classifies the outcome and
 *   retries transient failures with exponential backoff and full jitter
 *   (base 100 ms, cap 10 s, CAIRN_S3_RETRIES attempts, default 8). Each retry
 *   is reported once through opts->log.
 * - put_file() only queues: a pool of opts->connections threads (default 8)
 *   uploads spool files (single PUT, or multipart above the threshold) and
 *   deletes them. put_file blocks while 2 x connections uploads are waiting,
 *   so the spool stays bounded. flush() waits for all of them and returns the
 *   first error (it is then cleared). After a failure, queued uploads are
 *   dropped and put_file refuses until flush() has reported it.
 * - free() without flush() abandons what is queued or in flight (transfers
 *   are aborted, multipart uploads aborted): only flush() makes data durable.
 * - Synchronous operations (put, get, get_range, stat, list, del, del_many)
 *   run in the calling thread; any number of threads may call them at once.
 * - The easy handles share DNS and TLS sessions through a CURLSH. Each handle
 *   keeps its own connection cache: libcurl does not support sharing one
 *   connection cache between concurrent threads.
 * - Bandwidth limits are token buckets shared by every transfer of the store.
 *
 * Messages name the store URL and the key, never a credential. */
#define _GNU_SOURCE
#include "curl_dl.h"
#include "s3.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S3_ERRBODY_MAX ((size_t)64 << 10)
#define S3_MIN_PART ((uint64_t)5 << 20)
#define S3_DEFAULT_PART ((uint64_t)16 << 20)
#define S3_MAX_PARTS 10000
#define S3_DELETE_BATCH 1000
#define APPEND_LIT(b, lit) cairn_buf_append((b), (lit), sizeof(lit) - 1)

struct tbucket {
    pthread_mutex_t mu;
    double rate; /* bytes per second; 0 = unlimited */
    double next; /* monotonic time at which the bucket is next free */
};

/* Read-ahead for ranged reads of packs: restore and check read a pack's blobs
 * in order, one small range at a time. Fetching aligned blocks and serving
 * the ranges from them turns thousands of GETs into a few. Packs are
 * immutable, so a cached block never goes stale (del drops it anyway). */
struct rblock {
    char *key;
    uint64_t idx;
    cairn_buf data;
    int state; /* RB_EMPTY, RB_LOADING, RB_READY */
    uint64_t used;
};
enum { RB_EMPTY = 0, RB_LOADING, RB_READY };

struct rcache {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct rblock *b;
    size_t n;
    size_t bsize;
    uint64_t tick;
};

struct job {
    struct job *next;
    char *key;
    char *path;
};

struct s3_store {
    struct s3_conf conf;
    struct s3_provider *prov; /* the keys every request signs with */
    char *url;
    char *spool;
    int own_spool;
    int connections;
    int attempts;
    long stall_seconds;
    long low_speed;
    uint64_t mp_threshold;
    char *ca_file, *storage_class, *sse, *sse_kms_key;
    void (*log)(void *arg, const char *msg);
    void *log_arg;
    pthread_mutex_t log_mu;

    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
    pthread_mutex_t pool_mu;
    CURL **idle;
    size_t nidle, idle_max;

    struct tbucket up, down;
    struct rcache rc;

    pthread_mutex_t q_mu;
    pthread_cond_t q_work, q_space, q_idle;
    struct job *head, *tail;
    size_t queued, active;
    pthread_t *threads;
    int nthreads;
    int stop;
    int have_err;
    cairn_err first_err;
    atomic_int closing;
};

/* ---- small helpers ---- */

static void s3_log(struct s3_store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prov_log(void *arg, const char *msg)
{
    s3_log(arg, "%s", msg);
}

static const char *env_get(const char *name)
{
    return getenv(name);
}

static long env_long(const char *name, long def, long lo, long hi)
{
    const char *v = getenv(name);
    char *end;
    long r;
    if (!v || !*v)
        return def;
    errno = 0;
    r = strtol(v, &end, 10);
    if (errno || *end || r < lo || r > hi)
        return def;
    return r;
}

static void sleep_seconds(double s)
{
    struct timespec ts;
    if (s <= 0)
        return;
    ts.tv_sec = (time_t)s;
    ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void tb_init(struct tbucket *b, double mbps)
{
    pthread_mutex_init(&b->mu, NULL);
    b->rate = mbps > 0 ? mbps * 1e6 : 0;
    b->next = 0;
}

/* Takes n bytes from the bucket, sleeping as long as the rate requires. A
 * bucket idle for a while grants at most 0.25 s worth of burst. */
static void tb_take(struct tbucket *b, size_t n)
{
    double now, wait;
    if (b->rate <= 0 || n == 0)
        return;
    pthread_mutex_lock(&b->mu);
    now = cairn_mono();
    if (b->next < now - 0.25)
        b->next = now - 0.25;
    b->next += (double)n / b->rate;
    wait = b->next - now;
    pthread_mutex_unlock(&b->mu);
    sleep_seconds(wait);
}

static void s3_log(struct s3_store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s3_log(struct s3_store *st, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    if (!st->log)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&st->log_mu);
    st->log(st->log_arg, msg);
    pthread_mutex_unlock(&st->log_mu);
}

static int bad_key(const char *key)
{
    const unsigned char *p;
    if (!key || !*key || key[0] == '/' || strstr(key, "..") || strlen(key) > 512)
        return 1;
    for (p = (const unsigned char *)key; *p; p++)
        if (*p < 0x20 || *p == 0x7F)
            return 1;
    return 0;
}

/* PREFIX/key into a malloc'd string. */
static char *full_key(struct s3_store *st, const char *key)
{
    char *s;
    if (!*st->conf.prefix)
        return strdup(key);
    if (asprintf(&s, "%s/%s", st->conf.prefix, key) < 0)
        return NULL;
    return s;
}

/* ---- the handle pool ---- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
    struct s3_store *st = arg;
    (void)h;
    (void)access;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&st->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
    struct s3_store *st = arg;
    (void)h;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&st->share_mu[data]);
}

static CURL *pool_get(struct s3_store *st)
{
    CURL *h = NULL;
    pthread_mutex_lock(&st->pool_mu);
    if (st->nidle)
        h = st->idle[--st->nidle];
    pthread_mutex_unlock(&st->pool_mu);
    return h ? h : curl_easy_init();
}

static void pool_put(struct s3_store *st, CURL *h)
{
    if (!h)
        return;
    pthread_mutex_lock(&st->pool_mu);
    if (st->nidle < st->idle_max) {
        st->idle[st->nidle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&st->pool_mu);
    if (h)
        curl_easy_cleanup(h);
}

/* ---- one request ---- */

/* Where a request body comes from: memory, or a range of a file. */
struct body {
    const uint8_t *mem;
    int fd;
    uint64_t off, len, pos;
    int read_errno;
};

struct call {
    const char *method;
    const char *verb;       /* for messages: "read", "store", ... */
    const char *key;        /* relative key (or list prefix) for messages */
    const char *path_key;   /* full object key for the URL; NULL = the bucket */
    const struct s3_param *query;
    size_t nquery;
    struct s3_header extra[8]; /* further signed headers */
    size_t nextra;
    int has_body;
    struct body body;
    const char *payload_hash; /* NULL = empty body */
    const char *content_type;
    int head;
    /* response */
    cairn_buf *out;         /* 2xx body sink (NULL = discard) */
    size_t out_max;         /* cap for the 2xx body */
    int whole_get;          /* content-length checked against out_max; ETag MD5 checked */
    int ranged;
    uint64_t range_off;
    size_t range_len;
    int force;              /* not aborted when the store closes (multipart abort) */
    int allow_short;        /* ranged: fewer bytes are fine at the end of the object */
    uint64_t obj_total;     /* ranged: the object's size, when the answer told (else 0) */
};

/* A zeroed call for method on path_key (NULL = the bucket); verb and key name
 * the operation and object in messages. */
static void call_init(struct call *c, const char *method, const char *verb, const char *key,
                      const char *path_key)
{
    memset(c, 0, sizeof *c);
    c->method = method;
    c->verb = verb;
    c->key = key;
    c->path_key = path_key;
}

struct xfer {
    struct s3_store *st;
    struct call *c;
    long status;
    uint64_t clen;
    int have_clen;
    char etag[130];
    char date[64];
    char bucket_region[64];
    char content_range[128];
    char sse[40];
    int ssec;
    cairn_buf errbody;
    int too_large;
    int sink_failed;
    /* ranged */
    uint64_t skip;
    size_t got;
    int range_started;
    int done_early;
    /* credentials */
    unsigned cred_gen;    /* which keys signed the request */
    int expired_token;    /* the server said ExpiredToken */
};

static void hdr_value(const char *line, size_t n, size_t namelen, char *out, size_t outlen)
{
    const char *v = line + namelen;
    size_t m = n - namelen;
    while (m && (*v == ' ' || *v == '\t')) {
        v++;
        m--;
    }
    while (m && (v[m - 1] == '\r' || v[m - 1] == '\n' || v[m - 1] == ' '))
        m--;
    if (m >= outlen)
        m = outlen - 1;
    memcpy(out, v, m);
    out[m] = 0;
}

static int hdr_is(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k && strncasecmp(line, name, k) == 0;
}

static size_t on_header(char *line, size_t size, size_t nitems, void *arg)
{
    struct xfer *x = arg;
    size_t n = size * nitems;
    char v[128];
    if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        const char *sp = memchr(line, ' ', n);
        x->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        x->have_clen = 0;
        x->etag[0] = x->date[0] = x->bucket_region[0] = x->content_range[0] = x->sse[0] = 0;
        x->ssec = 0;
        return n;
    }
    if (hdr_is(line, n, "content-length:")) {
        hdr_value(line, n, 15, v, sizeof v);
        x->clen = strtoull(v, NULL, 10);
        x->have_clen = 1;
    } else if (hdr_is(line, n, "etag:")) {
        hdr_value(line, n, 5, x->etag, sizeof x->etag);
    } else if (hdr_is(line, n, "date:")) {
        hdr_value(line, n, 5, x->date, sizeof x->date);
    } else if (hdr_is(line, n, "x-amz-bucket-region:")) {
        hdr_value(line, n, 20, x->bucket_region, sizeof x->bucket_region);
    } else if (hdr_is(line, n, "content-range:")) {
        hdr_value(line, n, 14, x->content_range, sizeof x->content_range);
    } else if (hdr_is(line, n, "x-amz-server-side-encryption-customer-algorithm:")) {
        x->ssec = 1;
    } else if (hdr_is(line, n, "x-amz-server-side-encryption:")) {
        hdr_value(line, n, 29, x->sse, sizeof x->sse);
    } else if ((n == 2 && line[0] == '\r') || (n == 1 && line[0] == '\n')) {
        /* end of this response's headers */
        if (x->status >= 200 && x->status < 300 && x->c->whole_get && x->have_clen) {
            if (x->clen > x->c->out_max) {
                x->too_large = 1;
                return 0; /* abort before reading the body */
            }
            if (x->c->out && cairn_buf_reserve(x->c->out, (size_t)x->clen) != CAIRN_OK) {
                x->sink_failed = 1;
                return 0;
            }
        }
    }
    return n;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *arg)
{
    struct xfer *x = arg;
    struct call *c = x->c;
    size_t n = size * nmemb;
    tb_take(&x->st->down, n);
    if (x->status < 200 || x->status >= 300) {
        /* an error document: keep the start of it */
        size_t room = S3_ERRBODY_MAX - x->errbody.len;
        if (room)
            cairn_buf_append(&x->errbody, data, n < room ? n : room);
        return n;
    }
    if (c->ranged) {
        size_t take, skip = 0;
        if (!x->range_started) {
            x->range_started = 1;
            x->skip = x->status == 206 ? 0 : c->range_off; /* 200: range ignored */
        }
        if (x->skip) {
            skip = x->skip < n ? (size_t)x->skip : n;
            x->skip -= skip;
        }
        take = n - skip;
        if (take > c->range_len - x->got)
            take = c->range_len - x->got;
        if (take && cairn_buf_append(c->out, data + skip, take) != CAIRN_OK) {
            x->sink_failed = 1;
            return 0;
        }
        x->got += take;
        if (x->got == c->range_len && skip + take < n) {
            x->done_early = 1; /* we have what we asked for */
            return 0;
        }
        return n;
    }
    if (!c->out)
        return n;
    if (c->out->len + n > c->out_max) {
        x->too_large = 1;
        return 0;
    }
    if (cairn_buf_append(c->out, data, n) != CAIRN_OK) {
        x->sink_failed = 1;
        return 0;
    }
    return n;
}

static size_t on_read(char *buf, size_t size, size_t nitems, void *arg)
{
    struct xfer *x = arg;
    struct body *b = &x->c->body;
    size_t n = size * nitems;
    if (b->pos >= b->len)
        return 0;
    if (n > b->len - b->pos)
        n = (size_t)(b->len - b->pos);
    if (b->mem) {
        memcpy(buf, b->mem + b->pos, n);
    } else {
        ssize_t r;
        do
            r = pread(b->fd, buf, n, (off_t)(b->off + b->pos));
        while (r < 0 && errno == EINTR);
        if (r <= 0) {
            b->read_errno = r < 0 ? errno : EIO;
            return CURL_READFUNC_ABORT;
        }
        n = (size_t)r;
    }
    b->pos += n;
    tb_take(&x->st->up, n);
    return n;
}

static int on_seek(void *arg, curl_off_t offset, int origin)
{
    struct xfer *x = arg;
    struct body *b = &x->c->body;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > b->len)
        return CURL_SEEKFUNC_CANTSEEK;
    b->pos = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static int on_progress(void *arg, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    struct xfer *x = arg;
    (void)dt;
    (void)dn;
    (void)ut;
    (void)un;
    return atomic_load(&x->st->closing) && !x->c->force ? 1 : 0;
}

/* Builds the URL path: "/bucket/enc(key)" (path-style) or "/enc(key)". */
static int build_path(struct s3_store *st, const char *full, cairn_buf *path)
{
    cairn_buf_reset(path);
    if (cairn_buf_append(path, st->conf.base_path, strlen(st->conf.base_path)) != CAIRN_OK)
        return CAIRN_FAILED;
    if (full) {
        if (cairn_buf_putc(path, '/') != CAIRN_OK ||
            s3_uri_encode(path, full, strlen(full), 1) != CAIRN_OK)
            return CAIRN_FAILED;
    } else if (path->len == 0 && cairn_buf_putc(path, '/') != CAIRN_OK) {
        return CAIRN_FAILED;
    }
    return cairn_buf_cstr(path) ? CAIRN_OK : CAIRN_FAILED;
}

static int is_retryable_code(const char *code)
{
    return !strcmp(code, "SlowDown") || !strcmp(code, "RequestTimeout") ||
           !strcmp(code, "InternalError") || !strcmp(code, "ServiceUnavailable") ||
           !strcmp(code, "Throttling") || !strcmp(code, "ThrottlingException") ||
           !strcmp(code, "RequestTimeoutException") || !strcmp(code, "TooManyRequests") ||
           !strcmp(code, "OperationAborted");
}

/* Seconds this clock is ahead of the server's (positive = we are ahead). */
static int clock_skew(const struct xfer *x, const struct s3_error_info *e, double *skew)
{
    time_t server = -1;
    int64_t ns;
    if (x->date[0])
        server = curl_getdate(x->date, NULL);
    if (server < 0 && e->server_time[0] && cairn_parse_time(e->server_time, &ns) == CAIRN_OK)
        server = (time_t)(ns / 1000000000);
    if (server < 0)
        return -1;
    *skew = difftime(time(NULL), server);
    return 0;
}

/* "'key'" for messages, or "the bucket" for bucket-level requests. */
static void describe(const struct call *c, char *out, size_t n)
{
    if (c->key && *c->key)
        snprintf(out, n, "'%.500s'", c->key);
    else
        snprintf(out, n, "the bucket");
}

/* Turns a finished transfer into a return code and message. *retry says
 * whether trying again may help; reason is the short text for the log. */
static int classify(struct s3_store *st, struct call *c, struct xfer *x, CURLcode cres,
                    const char *curlmsg, int *retry, char *reason, size_t rlen, cairn_err *err)
{
    struct s3_error_info e;
    const char *key = c->key ? c->key : "";
    char what[600];
    int have_e = 0;
    describe(c, what, sizeof what);
    *retry = 0;
    reason[0] = 0;
    if (cres == CURLE_WRITE_ERROR && x->done_early)
        cres = CURLE_OK;
    if (cres != CURLE_OK) {
        if (x->too_large)
            return cairn_error(err, CAIRN_CORRUPT,
                               "object '%s' in %s is %llu bytes or more, more than the %zu allowed",
                               key, st->url,
                               (unsigned long long)(x->have_clen ? x->clen : c->out_max + 1),
                               c->out_max);
        if (x->sink_failed)
            return cairn_error(err, CAIRN_FAILED, "out of memory reading '%s' from %s", key,
                               st->url);
        if (c->has_body && c->body.read_errno)
            return cairn_error(err, CAIRN_FAILED, "cannot read the local file for '%s': %s", key,
                               strerror(c->body.read_errno));
        if (cres == CURLE_ABORTED_BY_CALLBACK && atomic_load(&st->closing))
            return cairn_error(err, CAIRN_FATAL, "cannot %s %s: the store was closed",
                               c->verb, what);
        switch (cres) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
            *retry = 1;
            snprintf(reason, rlen, "cannot connect: %s", curlmsg);
            return cairn_error(err, CAIRN_FATAL,
                               "cannot reach %s: %s (check AWS_ENDPOINT_URL_S3 / network)",
                               st->conf.endpoint, curlmsg);
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_ISSUER_ERROR:
            return cairn_error(err, CAIRN_FATAL,
                               "TLS verification of %s failed: %s (for a private CA, pass "
                               "--ca-file)",
                               st->conf.endpoint, curlmsg);
        case CURLE_OPERATION_TIMEDOUT:
            *retry = 1;
            snprintf(reason, rlen, "timed out: %s", curlmsg);
            break;
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SEND_FAIL_REWIND:
        case CURLE_WEIRD_SERVER_REPLY:
            *retry = 1;
            snprintf(reason, rlen, "%s: %s",
                     cres == CURLE_PARTIAL_FILE ? "truncated body" : "connection failed",
                     curlmsg);
            break;
        default:
            break;
        }
        return cairn_error(err, CAIRN_FATAL, "cannot %s %s in %s: %s", c->verb, what, st->url,
                           *reason ? reason : curlmsg);
    }

    if (x->status >= 200 && x->status < 300) {
        if (c->ranged) {
            /* the object's size: Content-Range "bytes a-b/total", or the
             * whole body of a 200 that ignored the Range header */
            unsigned long long total = 0;
            const char *slash = strchr(x->content_range, '/');
            if (x->status == 206 && slash && slash[1] != '*')
                total = strtoull(slash + 1, NULL, 10);
            else if (x->status == 200 && x->have_clen)
                total = x->clen;
            c->obj_total = total;
            if (x->got < c->range_len) {
                /* short: the object is smaller, or the body was cut */
                if (c->allow_short && total && total == c->range_off + x->got)
                    return CAIRN_OK;
                if (total && total < c->range_off + c->range_len)
                    return cairn_error(err, CAIRN_CORRUPT,
                                       "object '%s' in %s is truncated (%llu bytes, wanted "
                                       "%llu..%llu)",
                                       key, st->url, total, (unsigned long long)c->range_off,
                                       (unsigned long long)(c->range_off + c->range_len));
                *retry = 1;
                snprintf(reason, rlen, "truncated body (%zu of %zu bytes)", x->got, c->range_len);
                return cairn_error(err, CAIRN_FATAL, "cannot %s %s in %s: %s", c->verb, what,
                                   st->url, reason);
            }
            if (x->status == 206 && x->content_range[0]) {
                unsigned long long a = 0;
                if (sscanf(x->content_range, "bytes %llu-", &a) != 1 ||
                    a != (unsigned long long)c->range_off)
                    return cairn_error(err, CAIRN_CORRUPT,
                                       "reading '%s' in %s: the server sent range '%.60s', not "
                                       "from %llu",
                                       key, st->url, x->content_range,
                                       (unsigned long long)c->range_off);
            }
        } else if (c->out && !c->head && x->have_clen && c->out->len != x->clen) {
            *retry = 1;
            snprintf(reason, rlen, "truncated body (%zu of %llu bytes)", c->out->len,
                     (unsigned long long)x->clen);
            return cairn_error(err, CAIRN_FATAL, "cannot %s %s in %s: %s", c->verb, what,
                               st->url, reason);
        }
        return CAIRN_OK;
    }

    /* an HTTP error */
    if (x->errbody.len && s3_parse_error((const char *)x->errbody.data, x->errbody.len, &e) ==
                              CAIRN_OK)
        have_e = 1;
    else
        memset(&e, 0, sizeof e);
    if (x->status == 404 && (!have_e || strcmp(e.code, "NoSuchBucket") != 0) &&
        (!have_e || !strcmp(e.code, "NoSuchKey") || !strcmp(e.code, "NotFound") ||
         !e.code[0]))
        return cairn_error(err, CAIRN_NOTFOUND, "object '%s' does not exist in %s", key,
                           st->url);
    if (!strcmp(e.code, "NoSuchBucket"))
        return cairn_error(err, CAIRN_FATAL,
                           "bucket '%s' does not exist at %s (check the bucket name in the "
                           "repository URL, AWS_ENDPOINT_URL_S3 and AWS_REGION)",
                           st->conf.bucket, st->conf.endpoint);
    if ((!strcmp(e.code, "InvalidAccessKeyId") || !strcmp(e.code, "SignatureDoesNotMatch")) &&
        (st->conf.cred_kind == S3_CRED_WEB_IDENTITY || st->conf.cred_kind == S3_CRED_CONTAINER ||
         st->conf.cred_kind == S3_CRED_IMDS))
        return cairn_error(err, CAIRN_FATAL,
                           "wrong credentials for s3://%s: the temporary credentials from %s "
                           "were refused (the server said %s; check the endpoint and region)",
                           st->conf.bucket, st->conf.cred_source, e.code);
    if (!strcmp(e.code, "InvalidAccessKeyId") || !strcmp(e.code, "SignatureDoesNotMatch"))
        return cairn_error(err, CAIRN_FATAL,
                           "wrong credentials for s3://%s (check AWS_ACCESS_KEY_ID / "
                           "AWS_SECRET_ACCESS_KEY; they came from %s; the server said %s)",
                           st->conf.bucket, st->conf.cred_source, e.code);
    if (!strcmp(e.code, "RequestTimeTooSkewed")) {
        double skew;
        if (clock_skew(x, &e, &skew) == 0)
            return cairn_error(err, CAIRN_FATAL,
                               "clock skew: this machine's clock differs from the server's by "
                               "%.0f s (%s); set the clock (NTP): S3 accepts 15 minutes",
                               fabs(skew), skew > 0 ? "ahead" : "behind");
        return cairn_error(err, CAIRN_FATAL,
                           "clock skew: this machine's clock differs from the server's by more "
                           "than S3 accepts (15 minutes); set the clock (NTP)");
    }
    if (!strcmp(e.code, "ExpiredToken") || !strcmp(e.code, "TokenRefreshRequired")) {
        x->expired_token = 1;
        switch (st->conf.cred_kind) {
        case S3_CRED_ENV:
            break;
        case S3_CRED_FILE:
            return cairn_error(err, CAIRN_FATAL,
                               "the session token for s3://%s has expired, and so has the one "
                               "in the credentials file '%s' read again (renew its "
                               "aws_session_token)",
                               st->conf.bucket, st->conf.cred_file);
        case S3_CRED_WEB_IDENTITY:
        case S3_CRED_CONTAINER:
        case S3_CRED_IMDS:
            return cairn_error(err, CAIRN_FATAL,
                               "the session token for s3://%s has expired, and so have fresh "
                               "credentials from %s (is this machine's clock right?)",
                               st->conf.bucket, st->conf.cred_source);
        }
        return cairn_error(err, CAIRN_FATAL,
                           "the session token for s3://%s has expired (renew "
                           "AWS_SESSION_TOKEN)",
                           st->conf.bucket);
    }
    if (!strcmp(e.code, "InvalidToken"))
        return cairn_error(err, CAIRN_FATAL,
                           "the session token for s3://%s is not valid (check "
                           "AWS_SESSION_TOKEN)",
                           st->conf.bucket);
    if (!strcmp(e.code, "AuthorizationHeaderMalformed") || !strcmp(e.code, "PermanentRedirect") ||
        x->status == 301) {
        const char *r = e.region[0] ? e.region : x->bucket_region;
        if (*r)
            return cairn_error(err, CAIRN_FATAL,
                               "bucket '%s' is in region '%s', not '%s' (set AWS_REGION=%s)",
                               st->conf.bucket, r, st->conf.region, r);
    }
    if (!strcmp(e.code, "AccessDenied") || (x->status == 403 && !have_e))
        return cairn_error(err, CAIRN_FATAL,
                           "access denied to %s in %s (check the IAM and bucket policies for "
                           "this %s%s)",
                           what, st->url, c->key && *c->key ? "key" : "bucket",
                           have_e ? "" : "; or wrong credentials: AWS_ACCESS_KEY_ID / "
                                         "AWS_SECRET_ACCESS_KEY");
    if (x->status == 416 || !strcmp(e.code, "InvalidRange"))
        return cairn_error(err, CAIRN_CORRUPT,
                           "object '%s' in %s is truncated (wanted %llu..%llu)", key, st->url,
                           (unsigned long long)c->range_off,
                           (unsigned long long)(c->range_off + c->range_len));
    if (x->status >= 500 || x->status == 429 || is_retryable_code(e.code)) {
        *retry = 1;
        snprintf(reason, rlen, "HTTP %ld%s%s", x->status, e.code[0] ? " " : "", e.code);
        return cairn_error(err, CAIRN_FATAL, "cannot %s %s in %s: HTTP %ld %s%s%s%s", c->verb,
                           what, st->url, x->status, e.code, e.message[0] ? " (" : "",
                           e.message, e.message[0] ? ")" : "");
    }
    return cairn_error(err, CAIRN_FAILED, "cannot %s %s in %s: HTTP %ld %s%s%s%s", c->verb, what,
                       st->url, x->status, e.code[0] ? e.code : "(no error document)",
                       e.message[0] ? " (" : "", e.message, e.message[0] ? ")" : "");
}

static int md5_matches_etag(const struct xfer *x, const cairn_buf *b)
{
    char want[33];
    unsigned char md[16];
    unsigned int mdlen = 0;
    static const char h[] = "0123456789abcdef";
    const char *e = x->etag;
    size_t n, i;
    if (*e == '"')
        e++;
    n = strcspn(e, "\"");
    if (n != 32 || x->ssec || strncasecmp(x->sse, "aws:kms", 7) == 0)
        return 1; /* not a plain MD5 ETag: nothing to check */
    for (i = 0; i < 32; i++) {
        char ch = e[i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F')))
            return 1;
        want[i] = (char)((ch >= 'A' && ch <= 'F') ? ch - 'A' + 'a' : ch);
    }
    want[32] = 0;
    EVP_Digest(b->data ? (const void *)b->data : (const void *)"", b->len, md, &mdlen, EVP_md5(),
               NULL);
    for (i = 0; i < 16; i++)
        if (want[2 * i] != h[md[i] >> 4] || want[2 * i + 1] != h[md[i] & 15])
            return 0;
    return 1;
}

static int attempt_once(struct s3_store *st, CURL *h, struct call *c, struct xfer *x,
                        int *retry, char *reason, size_t rlen, cairn_err *err)
{
    cairn_buf path = CAIRN_BUF_INIT, query = CAIRN_BUF_INIT, url = CAIRN_BUF_INIT;
    cairn_buf auth = CAIRN_BUF_INIT, line = CAIRN_BUF_INIT;
    struct s3_header hdrs[16];
    size_t nh = 0, i;
    struct curl_slist *list = NULL, *nl;
    char amz_date[17], curlmsg[CURL_ERROR_SIZE];
    struct s3_sign_input si;
    struct s3_creds cr;
    const char *payload = c->payload_hash ? c->payload_hash : S3_EMPTY_SHA256;
    CURLcode cres;
    int rc;

    *retry = 0;
    memset(x, 0, sizeof *x);
    memset(&cr, 0, sizeof cr);
    x->st = st;
    x->c = c;
    cairn_buf_init(&x->errbody, S3_ERRBODY_MAX + 1);
    c->body.pos = 0;
    c->body.read_errno = 0;
    if (c->out)
        cairn_buf_reset(c->out);
    curlmsg[0] = 0;

    if (build_path(st, c->path_key, &path) != CAIRN_OK ||
        s3_canonical_query(c->query, c->nquery, &query) != CAIRN_OK ||
        cairn_buf_appendf(&url, "%s%s%s%s", st->conf.endpoint, (const char *)path.data,
                          query.len ? "?" : "", query.len ? (const char *)query.data : "") !=
            CAIRN_OK ||
        !cairn_buf_cstr(&url)) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto out;
    }
    /* a copy of the current keys: another thread may refresh them meanwhile */
    if ((rc = s3_provider_get(st->prov, &cr, &x->cred_gen, err)) != CAIRN_OK)
        goto out;
    s3_amz_date((int64_t)time(NULL), amz_date);
    hdrs[nh++] = (struct s3_header){"host", st->conf.host};
    hdrs[nh++] = (struct s3_header){"x-amz-content-sha256", payload};
    hdrs[nh++] = (struct s3_header){"x-amz-date", amz_date};
    if (cr.session_token)
        hdrs[nh++] = (struct s3_header){"x-amz-security-token", cr.session_token};
    for (i = 0; i < c->nextra && nh < sizeof hdrs / sizeof hdrs[0]; i++)
        hdrs[nh++] = c->extra[i];
    memset(&si, 0, sizeof si);
    si.method = c->method;
    si.path = (const char *)path.data;
    si.query = query.len ? (const char *)query.data : "";
    si.headers = hdrs;
    si.nheaders = nh;
    si.payload_hash = payload;
    si.amz_date = amz_date;
    si.region = st->conf.region;
    si.service = "s3";
    si.access_key = cr.access_key;
    si.secret_key = cr.secret_key;
    if (s3_sign(&si, NULL, NULL, NULL, &auth) != CAIRN_OK) {
        rc = cairn_error(err, CAIRN_FATAL, "cannot sign a request for '%s'", c->key);
        goto out;
    }
    for (i = 0; i < nh; i++) {
        cairn_buf_reset(&line);
        if (cairn_buf_appendf(&line, "%s: %s", hdrs[i].name, hdrs[i].value) != CAIRN_OK ||
            !(nl = curl_slist_append(list, cairn_buf_cstr(&line))))
            goto oom;
        list = nl;
    }
    cairn_buf_reset(&line);
    if (cairn_buf_appendf(&line, "Authorization: %s", (const char *)auth.data) != CAIRN_OK ||
        !(nl = curl_slist_append(list, cairn_buf_cstr(&line))))
        goto oom;
    list = nl;
    if (!(nl = curl_slist_append(list, "Expect:")))
        goto oom;
    list = nl;
    if (c->content_type) {
        cairn_buf_reset(&line);
        if (cairn_buf_appendf(&line, "Content-Type: %s", c->content_type) != CAIRN_OK ||
            !(nl = curl_slist_append(list, cairn_buf_cstr(&line))))
            goto oom;
        list = nl;
    }

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, (const char *)url.data);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curlmsg);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, st->low_speed);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, st->stall_seconds);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (st->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, st->ca_file);
    curl_easy_setopt(h, CURLOPT_SHARE, st->share);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024);
    curl_easy_setopt(h, CURLOPT_UPLOAD_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, x);
    if (c->head) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (!strcmp(c->method, "PUT")) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)c->body.len);
    } else if (!strcmp(c->method, "POST")) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body.len);
    } else if (strcmp(c->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
    }
    if (c->has_body) {
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, x);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, x);
    }

    cres = curl_easy_perform(h);
    if (!curlmsg[0])
        snprintf(curlmsg, sizeof curlmsg, "%s", curl_easy_strerror(cres));
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    rc = classify(st, c, x, cres, curlmsg, retry, reason, rlen, err);
    if (rc == CAIRN_OK && c->whole_get && c->out && !md5_matches_etag(x, c->out)) {
        *retry = 1;
        snprintf(reason, rlen, "the body does not match its ETag (MD5)");
        rc = cairn_error(err, CAIRN_CORRUPT, "object '%s' in %s does not match its ETag (MD5)",
                         c->key, st->url);
    }
    goto out;
oom:
    rc = cairn_error(err, CAIRN_FATAL, "out of memory");
out:
    s3_creds_free(&cr);
    if (list) {
        struct curl_slist *l;
        for (l = list; l; l = l->next) /* the security token header */
            OPENSSL_cleanse(l->data, strlen(l->data));
    }
    curl_slist_free_all(list);
    cairn_buf_free(&path);
    cairn_buf_free(&query);
    cairn_buf_free(&url);
    if (auth.data)
        memset(auth.data, 0, auth.len);
    cairn_buf_free(&auth);
    if (line.data)
        memset(line.data, 0, line.cap);
    cairn_buf_free(&line);
    return rc;
}

/* Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))). */
static double backoff(int attempt)
{
    double ceiling = 0.1 * pow(2.0, attempt - 1), r;
    uint32_t u;
    if (ceiling > 10.0)
        ceiling = 10.0;
    cairn_random(&u, sizeof u);
    r = (double)u / 4294967296.0;
    return ceiling * r;
}

/* Performs c with retries. On success x holds the last response's headers;
 * the caller frees x->errbody (s3_request does it when x is NULL). */
static int s3_request_x(struct s3_store *st, struct call *c, struct xfer *x, cairn_err *err)
{
    int attempt, rc, refreshed = 0;
    for (attempt = 1;; attempt++) {
        CURL *h = pool_get(st);
        int retry = 0;
        char reason[512], what[600];
        double d;
        if (!h)
            return cairn_error(err, CAIRN_FATAL, "cannot create a curl handle");
        rc = attempt_once(st, h, c, x, &retry, reason, sizeof reason, err);
        pool_put(st, h);
        if (rc == CAIRN_OK)
            return CAIRN_OK;
        cairn_buf_free(&x->errbody);
        if (x->expired_token && !refreshed && !(atomic_load(&st->closing) && !c->force)) {
            /* new keys, then the same request once more, at once */
            refreshed = 1;
            describe(c, what, sizeof what);
            s3_log(st, "s3: the credentials expired (%s %s in %s answered ExpiredToken): "
                       "refreshing them and retrying",
                   c->method, what, st->url);
            s3_provider_expired(st->prov, x->cred_gen);
            attempt--;
            continue;
        }
        if (!retry || (atomic_load(&st->closing) && !c->force))
            return rc;
        if (attempt >= st->attempts || (c->force && atomic_load(&st->closing) && attempt >= 2)) {
            if (attempt > 1 && err) {
                size_t n = strlen(err->msg);
                snprintf(err->msg + n, sizeof err->msg - n, " (gave up after %d attempts)",
                         attempt);
            }
            return rc;
        }
        d = backoff(attempt);
        describe(c, what, sizeof what);
        s3_log(st, "s3: retrying %s %s in %s (attempt %d of %d, in %.2fs): %s", c->method, what,
               st->url, attempt + 1, st->attempts, d, reason);
        sleep_seconds(d);
    }
}

static int s3_request(struct s3_store *st, struct call *c, cairn_err *err)
{
    struct xfer x;
    int rc = s3_request_x(st, c, &x, err);
    if (rc == CAIRN_OK)
        cairn_buf_free(&x.errbody);
    return rc;
}

/* ---- operations ---- */

static void add_put_headers(struct s3_store *st, struct call *c, const char *key)
{
    if (st->storage_class && strncmp(key, "data/", 5) == 0)
        c->extra[c->nextra++] = (struct s3_header){"x-amz-storage-class", st->storage_class};
    if (st->sse) {
        c->extra[c->nextra++] = (struct s3_header){"x-amz-server-side-encryption", st->sse};
        if (st->sse_kms_key)
            c->extra[c->nextra++] =
                (struct s3_header){"x-amz-server-side-encryption-aws-kms-key-id", st->sse_kms_key};
    }
}

static int check_key(struct s3_store *st, const char *key, char **full, cairn_err *err)
{
    if (bad_key(key))
        return cairn_error(err, CAIRN_FATAL, "invalid object key '%.600s'", key ? key : "");
    if (!(*full = full_key(st, key)))
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    return CAIRN_OK;
}

static int head_object(struct s3_store *st, const char *key, const char *full, uint64_t *size,
                       cairn_err *err)
{
    struct call c;
    struct xfer x;
    int rc;
    call_init(&c, "HEAD", "stat", key, full);
    c.head = 1;
    rc = s3_request_x(st, &c, &x, err);
    if (rc == CAIRN_OK) {
        cairn_buf_free(&x.errbody);
        if (size)
            *size = x.have_clen ? x.clen : 0;
        return CAIRN_OK;
    }
    if (rc != CAIRN_NOTFOUND && err && !strstr(err->msg, "cannot reach") &&
        !strstr(err->msg, "TLS ") && !strstr(err->msg, "gave up after")) {
        /* HEAD has no error document: ask again with a 1-byte GET to learn why */
        struct call g;
        cairn_buf tmp = CAIRN_BUF_INIT;
        cairn_err e2;
        memset(&g, 0, sizeof g);
        g.method = "GET";
        g.verb = "stat";
        g.key = key;
        g.path_key = full;
        g.extra[g.nextra++] = (struct s3_header){"range", "bytes=0-0"};
        g.out = &tmp;
        g.ranged = 1;
        g.range_len = 1;
        g.allow_short = 1;
        cairn_err_clear(&e2);
        if (s3_request(st, &g, &e2) != CAIRN_OK &&
            (e2.code == CAIRN_FATAL || e2.code == CAIRN_FAILED)) {
            *err = e2;
            rc = e2.code;
        }
        cairn_buf_free(&tmp);
    }
    return rc;
}

static int s3_stat(void *ctx, const char *key, uint64_t *size, cairn_err *err)
{
    struct s3_store *st = ctx;
    char *full;
    int rc;
    if ((rc = check_key(st, key, &full, err)) != CAIRN_OK)
        return rc;
    rc = head_object(st, key, full, size, err);
    free(full);
    return rc;
}

static int put_mem(struct s3_store *st, const char *key, const char *full, const void *buf,
                   size_t len, cairn_err *err)
{
    struct call c;
    char sha[65];
    s3_sha256_hex(len ? buf : "", len, sha);
    call_init(&c, "PUT", "store", key, full);
    c.has_body = 1;
    c.body.mem = len ? buf : (const uint8_t *)"";
    c.body.fd = -1;
    c.body.len = len;
    c.payload_hash = sha;
    add_put_headers(st, &c, key);
    return s3_request(st, &c, err);
}

/* Keys named by a hash of their content: a second PUT writes the same bytes. */
static int content_addressed(const char *key)
{
    return !strncmp(key, "data/", 5) || !strncmp(key, "index/", 6) ||
           !strncmp(key, "snapshots/", 10);
}

static int s3_put(void *ctx, const char *key, const void *buf, size_t len, int overwrite,
                  cairn_err *err)
{
    struct s3_store *st = ctx;
    char *full;
    int rc;
    if ((rc = check_key(st, key, &full, err)) != CAIRN_OK)
        return rc;
    if (!overwrite && !content_addressed(key)) {
        /* S3 has no portable create-if-absent: HEAD first ("config", WAL
         * objects, ...). Two writers at the same moment can both pass this
         * check; the last PUT wins. Content-addressed keys skip the check:
         * writing the same bytes again is harmless. */
        rc = head_object(st, key, full, NULL, err);
        if (rc == CAIRN_OK)
            rc = cairn_error(err, CAIRN_EXISTS, "object '%s' already exists in %s", key,
                             st->url);
        else if (rc == CAIRN_NOTFOUND)
            rc = CAIRN_OK;
    }
    if (rc == CAIRN_OK)
        rc = put_mem(st, key, full, buf, len, err);
    free(full);
    return rc;
}

static int get_common(struct s3_store *st, const char *key, int whole, uint64_t off, size_t len,
                      size_t max, cairn_buf *out, cairn_err *err)
{
    struct call c;
    char *full, range[64];
    int rc;
    if ((rc = check_key(st, key, &full, err)) != CAIRN_OK)
        return rc;
    call_init(&c, "GET", "read", key, full);
    c.out = out;
    if (whole) {
        c.whole_get = 1;
        c.out_max = max;
    } else {
        snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)off,
                 (unsigned long long)(off + len - 1));
        c.extra[c.nextra++] = (struct s3_header){"range", range};
        c.ranged = 1;
        c.range_off = off;
        c.range_len = len;
        c.out_max = len;
    }
    rc = s3_request(st, &c, err);
    free(full);
    return rc;
}

static int s3_get(void *ctx, const char *key, cairn_buf *out, size_t max, cairn_err *err)
{
    return get_common(ctx, key, 1, 0, 0, max, out, err);
}

/* Fetches block idx of key into blk->data (the caller marked it loading). */
static int fetch_block(struct s3_store *st, const char *key, struct rblock *blk,
                       cairn_err *err)
{
    struct call c;
    char *full, range[64];
    uint64_t off = blk->idx * st->rc.bsize;
    int rc;
    if ((rc = check_key(st, key, &full, err)) != CAIRN_OK)
        return rc;
    snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)off,
             (unsigned long long)(off + st->rc.bsize - 1));
    call_init(&c, "GET", "read", key, full);
    c.out = &blk->data;
    c.out_max = st->rc.bsize;
    c.extra[c.nextra++] = (struct s3_header){"range", range};
    c.ranged = 1;
    c.range_off = off;
    c.range_len = st->rc.bsize;
    c.allow_short = 1;
    rc = s3_request(st, &c, err);
    free(full);
    return rc;
}

/* Copies the part of [off, off+len) that block idx holds into out (at its
 * place). 1 = the cache could not take it (no free slot): read directly. */
static int cached_part(struct s3_store *st, const char *key, uint64_t idx, uint64_t off,
                       size_t len, cairn_buf *out, cairn_err *err)
{
    struct rcache *rc = &st->rc;
    uint64_t bstart = idx * rc->bsize;
    size_t i;
    int r;
    pthread_mutex_lock(&rc->mu);
    for (;;) {
        struct rblock *hit = NULL, *victim = NULL;
        for (i = 0; i < rc->n; i++) {
            struct rblock *b = &rc->b[i];
            if (b->state != RB_EMPTY && b->idx == idx && strcmp(b->key, key) == 0)
                hit = b;
            else if (b->state == RB_EMPTY && !victim)
                victim = b;
        }
        if (hit && hit->state == RB_LOADING) {
            pthread_cond_wait(&rc->cv, &rc->mu);
            continue;
        }
        if (hit) {
            uint64_t from = off > bstart ? off : bstart;
            uint64_t to = off + len < bstart + rc->bsize ? off + len : bstart + rc->bsize;
            hit->used = ++rc->tick;
            if (to > bstart + hit->data.len) {
                pthread_mutex_unlock(&rc->mu);
                return cairn_error(err, CAIRN_CORRUPT,
                                   "object '%s' in %s is truncated (%llu bytes, wanted "
                                   "%llu..%llu)",
                                   key, st->url, (unsigned long long)(bstart + hit->data.len),
                                   (unsigned long long)off, (unsigned long long)(off + len));
            }
            memcpy(out->data + (from - off), hit->data.data + (from - bstart), (size_t)(to - from));
            pthread_mutex_unlock(&rc->mu);
            return CAIRN_OK;
        }
        if (!victim)
            for (i = 0; i < rc->n; i++)
                if (rc->b[i].state == RB_READY && (!victim || rc->b[i].used < victim->used))
                    victim = &rc->b[i];
        if (!victim) {
            pthread_mutex_unlock(&rc->mu);
            return 1;
        }
        free(victim->key);
        victim->key = strdup(key);
        if (!victim->key) {
            victim->state = RB_EMPTY;
            pthread_mutex_unlock(&rc->mu);
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        }
        victim->idx = idx;
        victim->state = RB_LOADING;
        cairn_buf_reset(&victim->data);
        pthread_mutex_unlock(&rc->mu);
        r = fetch_block(st, key, victim, err);
        pthread_mutex_lock(&rc->mu);
        victim->state = r == CAIRN_OK ? RB_READY : RB_EMPTY;
        victim->used = ++rc->tick;
        if (r != CAIRN_OK)
            cairn_buf_free(&victim->data);
        pthread_cond_broadcast(&rc->cv);
        if (r != CAIRN_OK) {
            pthread_mutex_unlock(&rc->mu);
            return r;
        }
    }
}

static void cache_drop(struct s3_store *st, const char *key)
{
    size_t i;
    if (!st->rc.n)
        return;
    pthread_mutex_lock(&st->rc.mu);
    for (i = 0; i < st->rc.n; i++) {
        struct rblock *b = &st->rc.b[i];
        if (b->state == RB_READY && strcmp(b->key, key) == 0) {
            b->state = RB_EMPTY;
            cairn_buf_free(&b->data);
        }
    }
    pthread_mutex_unlock(&st->rc.mu);
}

static int s3_get_range(void *ctx, const char *key, uint64_t off, size_t len, cairn_buf *out,
                        cairn_err *err)
{
    struct s3_store *st = ctx;
    uint64_t first, last, i;
    int rc = CAIRN_OK;
    if (len == 0) {
        cairn_buf_reset(out);
        return s3_stat(ctx, key, NULL, err);
    }
    if (!st->rc.n || strncmp(key, "data/", 5) != 0 || len > 2 * st->rc.bsize || bad_key(key))
        return get_common(ctx, key, 0, off, len, len, out, err);
    cairn_buf_reset(out);
    if (cairn_buf_reserve(out, len) != CAIRN_OK)
        return cairn_error(err, CAIRN_FAILED, "out of memory reading '%s'", key);
    first = off / st->rc.bsize;
    last = (off + len - 1) / st->rc.bsize;
    for (i = first; i <= last && rc == CAIRN_OK; i++)
        rc = cached_part(st, key, i, off, len, out, err);
    if (rc == 1)
        return get_common(ctx, key, 0, off, len, len, out, err);
    if (rc == CAIRN_OK)
        out->len = len;
    return rc;
}

static int s3_list(void *ctx, const char *prefix, cairn_list_cb cb, void *arg, cairn_err *err)
{
    struct s3_store *st = ctx;
    char *full_prefix = NULL, *token = NULL;
    size_t strip = *st->conf.prefix ? strlen(st->conf.prefix) + 1 : 0, i;
    cairn_buf body = CAIRN_BUF_INIT;
    int rc = CAIRN_OK, stop = 0;
    if (!prefix)
        prefix = "";
    if (strstr(prefix, "..") || prefix[0] == '/')
        return cairn_error(err, CAIRN_FATAL, "invalid list prefix '%s'", prefix);
    if (*st->conf.prefix) {
        if (asprintf(&full_prefix, "%s/%s", st->conf.prefix, prefix) < 0)
            full_prefix = NULL;
    } else {
        full_prefix = strdup(prefix);
    }
    if (!full_prefix)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    while (!stop) {
        struct s3_param q[3];
        struct s3_list_page page;
        struct call c;
        size_t nq = 0;
        q[nq++] = (struct s3_param){"list-type", "2"};
        q[nq++] = (struct s3_param){"prefix", full_prefix};
        if (token)
            q[nq++] = (struct s3_param){"continuation-token", token};
        call_init(&c, "GET", "list", prefix, NULL);
        c.query = q;
        c.nquery = nq;
        c.out = &body;
        c.out_max = S3_XML_MAX;
        if ((rc = s3_request(st, &c, err)) != CAIRN_OK)
            break;
        if ((rc = s3_parse_list((const char *)body.data, body.len, &page, err)) != CAIRN_OK) {
            cairn_error_prefix(err, "listing '%s' in %s", prefix, st->url);
            break;
        }
        for (i = 0; i < page.n && !stop; i++) {
            const char *k = page.keys[i];
            if (strip && (strncmp(k, st->conf.prefix, strip - 1) != 0 || k[strip - 1] != '/'))
                continue;
            if (cb(arg, k + strip, page.sizes[i]))
                stop = 1;
        }
        if (!page.truncated) {
            s3_list_page_free(&page);
            break;
        }
        if (token && strcmp(token, page.next_token) == 0) {
            s3_list_page_free(&page);
            rc = cairn_error(err, CAIRN_CORRUPT,
                             "listing '%s' in %s: the server repeated a continuation token",
                             prefix, st->url);
            break;
        }
        free(token);
        token = page.next_token;
        page.next_token = NULL;
        s3_list_page_free(&page);
    }
    free(token);
    free(full_prefix);
    cairn_buf_free(&body);
    return rc;
}

static int s3_del(void *ctx, const char *key, cairn_err *err)
{
    struct s3_store *st = ctx;
    struct call c;
    char *full;
    int rc;
    if ((rc = check_key(st, key, &full, err)) != CAIRN_OK)
        return rc;
    call_init(&c, "DELETE", "delete", key, full);
    cache_drop(st, key);
    rc = s3_request(st, &c, err);
    free(full);
    return rc;
}

/* A full key as the caller knows it (PREFIX/ removed), for messages. */
static const char *strip_prefix_for_msg(struct s3_store *st, const char *full)
{
    size_t n = strlen(st->conf.prefix);
    if (n && strncmp(full, st->conf.prefix, n) == 0 && full[n] == '/')
        return full + n + 1;
    return full;
}

static int del_batch(struct s3_store *st, const char *const *keys, size_t n, cairn_err *err)
{
    cairn_buf body = CAIRN_BUF_INIT, resp = CAIRN_BUF_INIT;
    struct s3_param q[1] = {{"delete", NULL}};
    struct s3_error_info e;
    struct call c;
    char sha[65], md5[32];
    size_t i;
    int rc = CAIRN_OK;
    if (APPEND_LIT(&body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete "
                                "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true"
                                "</Quiet>") != CAIRN_OK)
        rc = CAIRN_FATAL;
    for (i = 0; i < n && rc == CAIRN_OK; i++) {
        char *full = NULL;
        if ((rc = check_key(st, keys[i], &full, err)) != CAIRN_OK)
            break;
        if (APPEND_LIT(&body, "<Object><Key>") != CAIRN_OK ||
            s3_xml_escape(&body, full) != CAIRN_OK ||
            APPEND_LIT(&body, "</Key></Object>") != CAIRN_OK)
            rc = CAIRN_FATAL;
        free(full);
    }
    if (rc == CAIRN_OK && APPEND_LIT(&body, "</Delete>") != CAIRN_OK)
        rc = CAIRN_FATAL;
    if (rc != CAIRN_OK) {
        cairn_buf_free(&body);
        return rc == CAIRN_FATAL && (!err || err->code != CAIRN_FATAL)
                   ? cairn_error(err, CAIRN_FATAL, "out of memory")
                   : rc;
    }
    s3_sha256_hex(body.data, body.len, sha);
    s3_md5_b64(body.data, body.len, md5);
    call_init(&c, "POST", "delete", keys[0], NULL);
    c.query = q;
    c.nquery = 1;
    c.has_body = 1;
    c.body.mem = body.data;
    c.body.fd = -1;
    c.body.len = body.len;
    c.payload_hash = sha;
    c.content_type = "application/xml";
    c.extra[c.nextra++] = (struct s3_header){"content-md5", md5};
    c.out = &resp;
    c.out_max = S3_XML_MAX;
    rc = s3_request(st, &c, err);
    if (rc == CAIRN_OK) {
        rc = s3_parse_delete_result((const char *)resp.data, resp.len, &e, err);
        if (rc != CAIRN_OK && e.code[0] && !strcmp(e.code, "NoSuchKey"))
            rc = CAIRN_OK;
        else if (rc != CAIRN_OK && e.code[0])
            cairn_error(err, CAIRN_FAILED, "cannot delete '%s' in %s: %s (%s)",
                        strip_prefix_for_msg(st, e.key), st->url, e.code, e.message);
    }
    cairn_buf_free(&body);
    cairn_buf_free(&resp);
    return rc;
}

static int s3_del_many(void *ctx, const char *const *keys, size_t n, cairn_err *err)
{
    struct s3_store *st = ctx;
    size_t i;
    for (i = 0; i < n; i += S3_DELETE_BATCH) {
        size_t m = n - i < S3_DELETE_BATCH ? n - i : S3_DELETE_BATCH;
        size_t k;
        int rc;
        for (k = 0; k < m; k++)
            cache_drop(st, keys[i + k]);
        rc = del_batch(st, keys + i, m, err);
        if (rc != CAIRN_OK)
            return rc;
    }
    return CAIRN_OK;
}

/* ---- uploads of spool files ---- */

static int sha256_file_range(int fd, uint64_t off, uint64_t len, char out[65], int *eno)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[1 << 16], dig[32];
    unsigned int dlen = 0;
    static const char h[] = "0123456789abcdef";
    uint64_t done = 0;
    int i;
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(md);
        *eno = ENOMEM;
        return -1;
    }
    while (done < len) {
        size_t want = len - done < sizeof buf ? (size_t)(len - done) : sizeof buf;
        ssize_t r = pread(fd, buf, want, (off_t)(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            *eno = r < 0 ? errno : EIO;
            EVP_MD_CTX_free(md);
            return -1;
        }
        EVP_DigestUpdate(md, buf, (size_t)r);
        done += (uint64_t)r;
    }
    EVP_DigestFinal_ex(md, dig, &dlen);
    EVP_MD_CTX_free(md);
    for (i = 0; i < 32; i++) {
        out[2 * i] = h[dig[i] >> 4];
        out[2 * i + 1] = h[dig[i] & 15];
    }
    out[64] = 0;
    return 0;
}

static int put_file_range(struct s3_store *st, const char *key, const char *full, int fd,
                          uint64_t off, uint64_t len, const struct s3_param *q, size_t nq,
                          int headers, char *etag_out, size_t etag_len, cairn_err *err)
{
    struct call c;
    struct xfer x;
    char sha[65];
    int eno = 0, rc;
    if (sha256_file_range(fd, off, len, sha, &eno) != 0)
        return cairn_error(err, CAIRN_FAILED, "cannot read the spool file for '%s': %s", key,
                           strerror(eno));
    call_init(&c, "PUT", q ? "upload a part of" : "store", key, full);
    c.query = q;
    c.nquery = nq;
    c.has_body = 1;
    c.body.fd = fd;
    c.body.off = off;
    c.body.len = len;
    c.payload_hash = sha;
    if (headers)
        add_put_headers(st, &c, key);
    rc = s3_request_x(st, &c, &x, err);
    if (rc != CAIRN_OK)
        return rc;
    cairn_buf_free(&x.errbody);
    if (etag_out) {
        if (!x.etag[0])
            return cairn_error(err, CAIRN_FAILED,
                               "uploading a part of '%s' to %s: no ETag in the answer", key,
                               st->url);
        snprintf(etag_out, etag_len, "%s", x.etag);
    }
    return CAIRN_OK;
}

static void abort_multipart(struct s3_store *st, const char *key, const char *full,
                            const char *upload_id)
{
    struct s3_param q[1] = {{"uploadId", upload_id}};
    struct call c;
    cairn_err e;
    call_init(&c, "DELETE", "abort the multipart upload of", key, full);
    c.query = q;
    c.nquery = 1;
    c.force = 1; /* an abort goes out even while the store closes */
    if (s3_request(st, &c, &e) != CAIRN_OK)
        s3_log(st, "s3: cannot abort the multipart upload of '%s' (%s); a lifecycle rule for "
                   "incomplete multipart uploads will clean it up",
               key, e.msg);
}

static int put_multipart(struct s3_store *st, const char *key, const char *full, int fd,
                         uint64_t size, cairn_err *err)
{
    struct s3_param q2[2];
    struct s3_param qc[1] = {{"uploads", NULL}};
    cairn_buf resp = CAIRN_BUF_INIT, body = CAIRN_BUF_INIT;
    char *upload_id = NULL, (*etags)[130] = NULL, sha[65], pn[24];
    uint64_t part = S3_DEFAULT_PART, nparts, i;
    struct call c;
    int rc;
    if (st->mp_threshold < part)
        part = st->mp_threshold < S3_MIN_PART ? S3_MIN_PART : st->mp_threshold;
    if ((size + part - 1) / part > S3_MAX_PARTS)
        part = (size + S3_MAX_PARTS - 1) / S3_MAX_PARTS;
    nparts = (size + part - 1) / part;
    if (nparts == 0)
        nparts = 1;

    call_init(&c, "POST", "start a multipart upload of", key, full);
    c.query = qc;
    c.nquery = 1;
    c.out = &resp;
    c.out_max = S3_ERRBODY_MAX;
    add_put_headers(st, &c, key);
    if ((rc = s3_request(st, &c, err)) != CAIRN_OK)
        goto out;
    if ((rc = s3_parse_upload_id((const char *)resp.data, resp.len, &upload_id, err)) !=
        CAIRN_OK) {
        cairn_error_prefix(err, "uploading '%s' to %s", key, st->url);
        goto out;
    }
    etags = calloc((size_t)nparts, sizeof *etags);
    if (!etags) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto abort;
    }
    for (i = 0; i < nparts; i++) {
        uint64_t off = i * part, len = size - off < part ? size - off : part;
        snprintf(pn, sizeof pn, "%llu", (unsigned long long)(i + 1));
        q2[0] = (struct s3_param){"partNumber", pn};
        q2[1] = (struct s3_param){"uploadId", upload_id};
        rc = put_file_range(st, key, full, fd, off, len, q2, 2, 0, etags[i], sizeof etags[i],
                            err);
        if (rc != CAIRN_OK)
            goto abort;
    }
    /* complete */
    rc = APPEND_LIT(&body, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/"
                                 "2006-03-01/\">");
    for (i = 0; i < nparts && rc == CAIRN_OK; i++) {
        rc = cairn_buf_appendf(&body, "<Part><PartNumber>%llu</PartNumber><ETag>",
                               (unsigned long long)(i + 1));
        if (rc == CAIRN_OK)
            rc = s3_xml_escape(&body, etags[i]);
        if (rc == CAIRN_OK)
            rc = APPEND_LIT(&body, "</ETag></Part>");
    }
    if (rc == CAIRN_OK)
        rc = APPEND_LIT(&body, "</CompleteMultipartUpload>");
    if (rc != CAIRN_OK) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto abort;
    }
    s3_sha256_hex(body.data, body.len, sha);
    q2[0] = (struct s3_param){"uploadId", upload_id};
    for (i = 0;; i++) {
        struct s3_error_info e;
        call_init(&c, "POST", "complete the multipart upload of", key, full);
        c.query = q2;
        c.nquery = 1;
        c.has_body = 1;
        c.body.mem = body.data;
        c.body.fd = -1;
        c.body.len = body.len;
        c.payload_hash = sha;
        c.content_type = "application/xml";
        c.out = &resp;
        c.out_max = S3_ERRBODY_MAX;
        if ((rc = s3_request(st, &c, err)) != CAIRN_OK)
            goto abort;
        /* S3 may answer 200 and put an <Error> in the body */
        if (s3_parse_error((const char *)resp.data, resp.len, &e) != CAIRN_OK)
            break;
        if (!is_retryable_code(e.code) || (int)i + 1 >= st->attempts) {
            rc = cairn_error(err, CAIRN_FATAL,
                             "cannot complete the multipart upload of '%s' in %s: %s (%s)", key,
                             st->url, e.code, e.message);
            goto abort;
        }
        s3_log(st, "s3: retrying POST '%s' in %s (attempt %d of %d): %s", key, st->url,
               (int)i + 2, st->attempts, e.code);
        sleep_seconds(backoff((int)i + 1));
    }
    rc = CAIRN_OK;
    goto out;
abort:
    abort_multipart(st, key, full, upload_id);
out:
    free(upload_id);
    free(etags);
    cairn_buf_free(&resp);
    cairn_buf_free(&body);
    return rc;
}

static int upload_file(struct s3_store *st, const char *key, const char *path, cairn_err *err)
{
    struct stat sb;
    char *full;
    int fd, rc;
    if ((rc = check_key(st, key, &full, err)) != CAIRN_OK)
        return rc;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) != 0) {
        rc = cairn_error(err, CAIRN_FAILED, "cannot open '%s' to upload '%s': %s", path, key,
                         strerror(errno));
        if (fd >= 0)
            close(fd);
        free(full);
        return rc;
    }
    if ((uint64_t)sb.st_size >= st->mp_threshold && sb.st_size > 0)
        rc = put_multipart(st, key, full, fd, (uint64_t)sb.st_size, err);
    else
        rc = put_file_range(st, key, full, fd, 0, (uint64_t)sb.st_size, NULL, 0, 1, NULL, 0,
                            err);
    close(fd);
    free(full);
    return rc;
}

static void *worker(void *arg)
{
    struct s3_store *st = arg;
    for (;;) {
        struct job *j;
        cairn_err e;
        int rc = CAIRN_OK, skip;
        pthread_mutex_lock(&st->q_mu);
        while (!st->head && !st->stop)
            pthread_cond_wait(&st->q_work, &st->q_mu);
        if (!st->head) {
            pthread_mutex_unlock(&st->q_mu);
            break;
        }
        j = st->head;
        st->head = j->next;
        if (!st->head)
            st->tail = NULL;
        st->queued--;
        st->active++;
        skip = st->have_err || st->stop;
        pthread_cond_broadcast(&st->q_space);
        pthread_mutex_unlock(&st->q_mu);

        cairn_err_clear(&e);
        if (!skip)
            rc = upload_file(st, j->key, j->path, &e);
        unlink(j->path);

        pthread_mutex_lock(&st->q_mu);
        st->active--;
        if (rc != CAIRN_OK && !st->have_err) {
            st->have_err = 1;
            st->first_err = e;
        }
        if (!st->queued && !st->active)
            pthread_cond_broadcast(&st->q_idle);
        pthread_cond_broadcast(&st->q_space);
        pthread_mutex_unlock(&st->q_mu);
        free(j->key);
        free(j->path);
        free(j);
    }
    return NULL;
}

/* Called with q_mu held. */
static int start_workers(struct s3_store *st, cairn_err *err)
{
    int i;
    if (st->threads)
        return CAIRN_OK;
    st->threads = calloc((size_t)st->connections, sizeof *st->threads);
    if (!st->threads)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    for (i = 0; i < st->connections; i++) {
        if (pthread_create(&st->threads[i], NULL, worker, st) != 0)
            break;
        st->nthreads++;
    }
    if (st->nthreads == 0) {
        free(st->threads);
        st->threads = NULL;
        return cairn_error(err, CAIRN_FATAL, "cannot start upload threads: %s",
                           strerror(errno));
    }
    return CAIRN_OK;
}

static int s3_put_file(void *ctx, const char *key, const char *path, cairn_err *err)
{
    struct s3_store *st = ctx;
    struct job *j;
    int rc;
    if (bad_key(key))
        return cairn_error(err, CAIRN_FATAL, "invalid object key '%.600s'", key ? key : "");
    j = calloc(1, sizeof *j);
    if (!j || !(j->key = strdup(key)) || !(j->path = strdup(path))) {
        if (j)
            free(j->key);
        free(j);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    pthread_mutex_lock(&st->q_mu);
    if ((rc = start_workers(st, err)) != CAIRN_OK)
        goto refuse;
    while (!st->have_err && st->queued >= (size_t)(2 * st->connections))
        pthread_cond_wait(&st->q_space, &st->q_mu);
    if (st->have_err) {
        rc = st->first_err.code;
        if (err) {
            *err = st->first_err;
            cairn_error_prefix(err, "an earlier upload failed");
        }
        goto refuse;
    }
    if (st->tail)
        st->tail->next = j;
    else
        st->head = j;
    st->tail = j;
    st->queued++;
    pthread_cond_signal(&st->q_work);
    pthread_mutex_unlock(&st->q_mu);
    return CAIRN_OK;
refuse:
    pthread_mutex_unlock(&st->q_mu);
    free(j->key);
    free(j->path);
    free(j);
    return rc;
}

static int s3_flush(void *ctx, cairn_err *err)
{
    struct s3_store *st = ctx;
    int rc = CAIRN_OK;
    pthread_mutex_lock(&st->q_mu);
    while (st->queued || st->active)
        pthread_cond_wait(&st->q_idle, &st->q_mu);
    if (st->have_err) {
        rc = st->first_err.code ? st->first_err.code : CAIRN_FAILED;
        if (err) {
            *err = st->first_err;
            err->code = rc;
        }
        st->have_err = 0;
        cairn_err_clear(&st->first_err);
    }
    pthread_mutex_unlock(&st->q_mu);
    return rc;
}

static void remove_spool(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (d) {
        while ((de = readdir(d)) != NULL) {
            char *p;
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            if (asprintf(&p, "%s/%s", dir, de->d_name) >= 0) {
                unlink(p);
                free(p);
            }
        }
        closedir(d);
    }
    rmdir(dir);
}

static void s3_free(void *ctx)
{
    struct s3_store *st = ctx;
    int i;
    if (!st)
        return;
    atomic_store(&st->closing, 1);
    pthread_mutex_lock(&st->q_mu);
    st->stop = 1;
    pthread_cond_broadcast(&st->q_work);
    pthread_mutex_unlock(&st->q_mu);
    for (i = 0; i < st->nthreads; i++)
        pthread_join(st->threads[i], NULL);
    free(st->threads);
    while (st->head) { /* never started (no threads could run) */
        struct job *j = st->head;
        st->head = j->next;
        unlink(j->path);
        free(j->key);
        free(j->path);
        free(j);
    }
    for (i = 0; i < (int)st->rc.n; i++) {
        free(st->rc.b[i].key);
        cairn_buf_free(&st->rc.b[i].data);
    }
    free(st->rc.b);
    pthread_mutex_destroy(&st->rc.mu);
    pthread_cond_destroy(&st->rc.cv);
    while (st->nidle)
        curl_easy_cleanup(st->idle[--st->nidle]);
    free(st->idle);
    if (st->share)
        curl_share_cleanup(st->share);
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&st->share_mu[i]);
    pthread_mutex_destroy(&st->pool_mu);
    pthread_mutex_destroy(&st->log_mu);
    pthread_mutex_destroy(&st->q_mu);
    pthread_cond_destroy(&st->q_work);
    pthread_cond_destroy(&st->q_space);
    pthread_cond_destroy(&st->q_idle);
    pthread_mutex_destroy(&st->up.mu);
    pthread_mutex_destroy(&st->down.mu);
    if (st->spool && st->own_spool)
        remove_spool(st->spool);
    free(st->spool);
    free(st->url);
    free(st->ca_file);
    free(st->storage_class);
    free(st->sse);
    free(st->sse_kms_key);
    s3_provider_free(st->prov);
    s3_conf_free(&st->conf);
    free(st);
}

static const struct cairn_store_ops s3_ops = {
    "s3",     s3_put,  s3_put_file, s3_get, s3_get_range, s3_stat, s3_list,
    s3_del,   s3_flush, s3_free,    s3_del_many,
};

/* ---- opening ---- */

static int make_spool(struct s3_store *st, cairn_err *err)
{
    const char *sp = getenv("CAIRN_SPOOL"), *tmp = getenv("TMPDIR");
    char *tpl;
    if (sp && *sp) {
        int rc = cairn_mkdir_p(sp, 0700, err);
        if (rc != CAIRN_OK)
            return cairn_error_prefix(err, "CAIRN_SPOOL");
        st->spool = strdup(sp);
        st->own_spool = 0;
        return st->spool ? CAIRN_OK : cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (asprintf(&tpl, "%s/cairn-s3-XXXXXX", tmp) < 0)
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    if (!mkdtemp(tpl)) {
        int e = errno;
        free(tpl);
        return cairn_error(err, CAIRN_FATAL,
                           "cannot create a spool directory in '%s': %s (set CAIRN_SPOOL or "
                           "TMPDIR to a writable local directory)",
                           tmp, strerror(e));
    }
    chmod(tpl, 0700);
    st->spool = tpl;
    st->own_spool = 1;
    return CAIRN_OK;
}

static int check_opts(const struct cairn_store_opts *o, cairn_err *err)
{
    const char *p;
    if (!o)
        return CAIRN_OK;
    if (o->sse && *o->sse && strcmp(o->sse, "AES256") != 0 && strcmp(o->sse, "aws:kms") != 0 &&
        strcmp(o->sse, "aws:kms:dsse") != 0)
        return cairn_error(err, CAIRN_FATAL,
                           "--sse takes AES256, aws:kms or aws:kms:dsse, not '%.64s'", o->sse);
    if (o->sse_kms_key && *o->sse_kms_key && (!o->sse || strncmp(o->sse, "aws:kms", 7) != 0))
        return cairn_error(err, CAIRN_FATAL, "--sse-kms-key needs --sse aws:kms");
    if (o->storage_class)
        for (p = o->storage_class; *p; p++)
            if (!((*p >= 'A' && *p <= 'Z') || *p == '_'))
                return cairn_error(err, CAIRN_FATAL,
                                   "--storage-class takes a name like STANDARD_IA or "
                                   "INTELLIGENT_TIERING, not '%.64s'",
                                   o->storage_class);
    if (o->sse_kms_key)
        for (p = o->sse_kms_key; *p; p++)
            if ((unsigned char)*p < 0x21 || *p == 0x7F)
                return cairn_error(err, CAIRN_FATAL, "--sse-kms-key has spaces or control "
                                                     "characters");
    return CAIRN_OK;
}

/* For init: the bucket must exist (or be created on request). */
static int probe_bucket(struct s3_store *st, cairn_err *err)
{
    struct call c;
    struct xfer x;
    const char *create = getenv("CAIRN_S3_CREATE_BUCKET");
    int rc;
    call_init(&c, "HEAD", "check", NULL, NULL);
    c.head = 1;
    rc = s3_request_x(st, &c, &x, err);
    if (rc == CAIRN_OK) {
        cairn_buf_free(&x.errbody);
        return CAIRN_OK;
    }
    if (rc == CAIRN_NOTFOUND) {
        cairn_buf body = CAIRN_BUF_INIT;
        char sha[65];
        if (!create || strcmp(create, "1") != 0)
            return cairn_error(err, CAIRN_FATAL,
                               "bucket '%s' does not exist at %s (create it, or set "
                               "CAIRN_S3_CREATE_BUCKET=1 to let cairn init create it)",
                               st->conf.bucket, st->conf.endpoint);
        call_init(&c, "PUT", "create", NULL, NULL);
        c.has_body = 1;
        c.body.fd = -1;
        if (strcmp(st->conf.region, "us-east-1") != 0 &&
            cairn_buf_appendf(&body,
                              "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/"
                              "2006-03-01/\"><LocationConstraint>%s</LocationConstraint>"
                              "</CreateBucketConfiguration>",
                              st->conf.region) != CAIRN_OK) {
            cairn_buf_free(&body);
            return cairn_error(err, CAIRN_FATAL, "out of memory");
        }
        c.body.mem = body.len ? body.data : (const uint8_t *)"";
        c.body.len = body.len;
        s3_sha256_hex(c.body.mem, body.len, sha);
        c.payload_hash = sha;
        rc = s3_request(st, &c, err);
        cairn_buf_free(&body);
        if (rc == CAIRN_OK)
            s3_log(st, "s3: created bucket '%s' at %s", st->conf.bucket, st->conf.endpoint);
        return rc;
    }
    if (strstr(err->msg, "cannot reach") || strstr(err->msg, "TLS ") ||
        strstr(err->msg, "gave up after"))
        return rc;
    {
        /* HEAD has no error document: a one-key listing says why */
        struct s3_param q[3] = {{"list-type", "2"}, {"max-keys", "1"}, {"prefix", ""}};
        cairn_buf tmp = CAIRN_BUF_INIT;
        cairn_err e2;
        call_init(&c, "GET", "list", NULL, NULL);
        c.query = q;
        c.nquery = 3;
        c.out = &tmp;
        c.out_max = S3_XML_MAX;
        cairn_err_clear(&e2);
        if (s3_request(st, &c, &e2) != CAIRN_OK)
            *err = e2;
        cairn_buf_free(&tmp);
    }
    return rc;
}

int cairn_s3_store_open(const char *url, const struct cairn_store_opts *opts, int create,
                        cairn_store **out, cairn_err *err)
{
    struct s3_store *st;
    cairn_store *s;
    int rc, i, conns;
    size_t fair;
    *out = NULL;
    if ((rc = cairn_curl_load(err)) != CAIRN_OK)
        return rc;
    if ((rc = check_opts(opts, err)) != CAIRN_OK)
        return rc;
    st = calloc(1, sizeof *st);
    s = calloc(1, sizeof *s);
    if (!st || !s) {
        free(st);
        free(s);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    pthread_mutex_init(&st->pool_mu, NULL);
    pthread_mutex_init(&st->log_mu, NULL);
    pthread_mutex_init(&st->q_mu, NULL);
    pthread_cond_init(&st->q_work, NULL);
    pthread_cond_init(&st->q_space, NULL);
    pthread_cond_init(&st->q_idle, NULL);
    for (i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&st->share_mu[i], NULL);
    tb_init(&st->up, opts ? opts->limit_upload_mbps : 0);
    tb_init(&st->down, opts ? opts->limit_download_mbps : 0);
    pthread_mutex_init(&st->rc.mu, NULL);
    pthread_cond_init(&st->rc.cv, NULL);
    atomic_init(&st->closing, 0);
    s->ops = &s3_ops;
    s->ctx = st;

    if ((rc = s3_conf_load(url, env_get, &st->conf, err)) != CAIRN_OK)
        goto fail;
    conns = opts && opts->connections > 0 ? opts->connections : 8;
    if (conns > 256)
        conns = 256;
    st->connections = conns;
    st->attempts = (int)env_long("CAIRN_S3_RETRIES", 8, 1, 100);
    st->stall_seconds = env_long("CAIRN_S3_STALL_SECONDS", 30, 1, 3600);
    st->mp_threshold = (uint64_t)env_long("CAIRN_S3_MULTIPART_THRESHOLD", 64L << 20, 1,
                                          (long)5 << 30);
    /* a bandwidth limit must not look like a stall */
    st->low_speed = 1024;
    fair = 0;
    if (opts && opts->limit_upload_mbps > 0)
        fair = (size_t)(opts->limit_upload_mbps * 1e6 / (2.0 * conns));
    if (opts && opts->limit_download_mbps > 0) {
        size_t f2 = (size_t)(opts->limit_download_mbps * 1e6 / (2.0 * conns));
        if (!fair || f2 < fair)
            fair = f2;
    }
    if (fair && (long)fair < st->low_speed)
        st->low_speed = fair > 1 ? (long)fair : 1;
    st->log = opts ? opts->log : NULL;
    st->log_arg = opts ? opts->log_arg : NULL;
    if ((opts && opts->ca_file && !(st->ca_file = strdup(opts->ca_file))) ||
        (opts && opts->storage_class && *opts->storage_class &&
         !(st->storage_class = strdup(opts->storage_class))) ||
        (opts && opts->sse && *opts->sse && !(st->sse = strdup(opts->sse))) ||
        (opts && opts->sse_kms_key && *opts->sse_kms_key &&
         !(st->sse_kms_key = strdup(opts->sse_kms_key)))) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto fail;
    }
    if (st->ca_file && access(st->ca_file, R_OK) != 0) {
        rc = cairn_error(err, CAIRN_FATAL, "cannot read the CA file '%s' (--ca-file): %s",
                         st->ca_file, strerror(errno));
        goto fail;
    }
    st->rc.bsize = (size_t)env_long("CAIRN_S3_READ_BLOCK", 2L << 20, 0, 64L << 20);
    st->rc.n = st->rc.bsize ? (size_t)env_long("CAIRN_S3_READ_CACHE", 8, 0, 1024) : 0;
    if (st->rc.n && !(st->rc.b = calloc(st->rc.n, sizeof *st->rc.b))) {
        st->rc.n = 0;
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto fail;
    }
    st->idle_max = (size_t)conns * 2 + 4;
    st->idle = calloc(st->idle_max, sizeof *st->idle);
    st->share = curl_share_init();
    st->url = strdup(url);
    if (!st->idle || !st->share || !st->url) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto fail;
    }
    curl_share_setopt(st->share, CURLSHOPT_LOCKFUNC, share_lock);
    curl_share_setopt(st->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
    curl_share_setopt(st->share, CURLSHOPT_USERDATA, st);
    curl_share_setopt(st->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    curl_share_setopt(st->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    {
        struct s3_provider_opts po;
        memset(&po, 0, sizeof po);
        po.ca_file = st->ca_file;
        po.attempts = st->attempts < 4 ? st->attempts : 4;
        po.log = st->log ? prov_log : NULL;
        po.log_arg = st;
        if ((rc = s3_provider_new(&st->conf, &po, &st->prov, err)) != CAIRN_OK)
            goto fail;
    }
    if (create && (rc = probe_bucket(st, err)) != CAIRN_OK)
        goto fail;
    if ((rc = make_spool(st, err)) != CAIRN_OK)
        goto fail;
    s->url = strdup(url);
    s->tmpdir = strdup(st->spool);
    if (!s->url || !s->tmpdir) {
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
        goto fail;
    }
    *out = s;
    return CAIRN_OK;
fail:
    cairn_store_free(s);
    return rc;
}
