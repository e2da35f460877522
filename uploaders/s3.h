/* uploaders/s3.h — internals of the S3 backend, shared by its files and its unit
 * tests: SigV4 signing (s3_sign.c), the bounded XML reader (s3_xml.c), the
 * configuration reader (s3_conf.c) and the credential provider (s3_creds.c:
 * web identity, container credentials, IMDSv2, refresh). The store itself is
 * uploaders/s3.c; the public entry point is cairn_s3_store_open() in store.h.
 *
 * Ownership: every cairn_buf and struct filled here belongs to the caller, who
 * releases it with the matching _free(). Threading: all functions are
 * reentrant; nothing here keeps global state; a provider (struct s3_provider)
 * may be shared by any number of threads (it has its own mutex). Nothing here
 * prints. */
#ifndef CAIRN_S3_H
#define CAIRN_S3_H

#include <stddef.h>
#include <stdint.h>

#include "../engine/util.h"

/* ---- SigV4 (s3_sign.c) ---- */

/* SHA-256 of the empty body, the payload hash of GET/HEAD/DELETE. */
#define S3_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Appends s[0..n) encoded the SigV4 way: A-Z a-z 0-9 - _ . ~ as they are, every
 * other byte as %XX (upper-case hex). With keep_slash, '/' stays (object paths). */
int s3_uri_encode(cairn_buf *out, const char *s, size_t n, int keep_slash);

/* One query parameter, not yet encoded. value NULL or "" gives "name=". */
struct s3_param {
    const char *name;
    const char *value;
};
/* The canonical query string: each name and value encoded, pairs sorted by
 * encoded name (then value), joined with '&'; a bare name is written "name=".
 * The same string is sent on the wire, so what is signed is what is sent. */
int s3_canonical_query(const struct s3_param *p, size_t n, cairn_buf *out);

/* One request header; name in lower case. */
struct s3_header {
    const char *name;
    const char *value;
};

struct s3_sign_input {
    const char *method;       /* "GET", "PUT", ... */
    const char *path;         /* canonical (already encoded) URI path, "/bucket/key" */
    const char *query;        /* canonical query (s3_canonical_query), "" if none */
    const struct s3_header *headers; /* every signed header, host included */
    size_t nheaders;
    const char *payload_hash; /* hex SHA-256 of the body (x-amz-content-sha256) */
    const char *amz_date;     /* "20261121T210141Z" (x-amz-date) */
    const char *region;
    const char *service;      /* "s3" */
    const char *access_key;
    const char *secret_key;
};

/* Builds the canonical request, the string to sign, the signature and the
 * Authorization header value. Any of the out buffers may be NULL except auth.
 * sig_hex gets 65 bytes. CAIRN_FAILED on out of memory or bad input. */
int s3_sign(const struct s3_sign_input *in, cairn_buf *canonical, cairn_buf *string_to_sign,
            char sig_hex[65], cairn_buf *auth);

/* "YYYYMMDDTHHMMSSZ" for t (UTC) into out (>= 17 bytes). */
void s3_amz_date(int64_t t, char out[17]);
/* Hex SHA-256 of a buffer into out (65 bytes). */
void s3_sha256_hex(const void *p, size_t n, char out[65]);
/* Base64 MD5 of a buffer into out (>= 25 bytes), for Content-MD5. */
void s3_md5_b64(const void *p, size_t n, char out[32]);

/* ---- XML (s3_xml.c) ---- */

/* A small, bounded XML reader for S3 responses: elements, attributes (read and
 * dropped), text with the five predefined entities and numeric references,
 * comments, the <?xml?> declaration and CDATA. DOCTYPE and entity declarations
 * are rejected (no expansion, so no billion laughs). Nesting is capped at 32,
 * the document at S3_XML_MAX bytes and 200 000 elements. Element names lose any
 * "prefix:". */
#define S3_XML_MAX ((size_t)16 << 20)

struct s3_xml_node {
    char *name;
    char *text;   /* the element's own text, concatenated; "" if none */
    size_t text_len;
    int parent;   /* -1 for the root */
    int child;    /* first child, -1 if none */
    int next;     /* next sibling, -1 if none */
    int last;     /* last child (while building) */
};

typedef struct s3_xml {
    struct s3_xml_node *n;
    size_t count, cap;
} s3_xml;

/* Parses data[0..len); on error fills err (CAIRN_CORRUPT, "malformed XML ...")
 * and leaves doc empty. The root element is node 0. Free with s3_xml_free(). */
int s3_xml_parse(const char *data, size_t len, s3_xml *doc, cairn_err *err);
void s3_xml_free(s3_xml *doc);
/* First child of node named name (-1 if none); next sibling named name. */
int s3_xml_child(const s3_xml *doc, int node, const char *name);
int s3_xml_next(const s3_xml *doc, int node, const char *name);
/* Text of the child named name, or NULL. */
const char *s3_xml_child_text(const s3_xml *doc, int node, const char *name);

/* One page of ListObjectsV2. keys[i] are full keys as stored (prefix included). */
struct s3_list_page {
    char **keys;
    uint64_t *sizes;
    size_t n;
    int truncated;
    char *next_token; /* NextContinuationToken, NULL if none */
};
int s3_parse_list(const char *xml, size_t len, struct s3_list_page *page, cairn_err *err);
void s3_list_page_free(struct s3_list_page *page);

/* An <Error> document. Fields are "" when absent. */
struct s3_error_info {
    char code[64];
    char message[256];
    char key[512];
    char bucket[256];
    char region[64];       /* AuthorizationHeaderMalformed: the bucket's region */
    char server_time[64];  /* RequestTimeTooSkewed */
    char request_time[64];
};
/* CAIRN_OK if xml is an <Error> document (fields filled), CAIRN_NOTFOUND if it
 * is some other well-formed document, CAIRN_CORRUPT if it is malformed. */
int s3_parse_error(const char *xml, size_t len, struct s3_error_info *e);

/* <InitiateMultipartUploadResult><UploadId>: malloc'd into *upload_id. */
int s3_parse_upload_id(const char *xml, size_t len, char **upload_id, cairn_err *err);

/* <DeleteResult>: the first <Error> entry, if any, into e (CAIRN_FAILED then);
 * CAIRN_OK when every key was deleted. */
int s3_parse_delete_result(const char *xml, size_t len, struct s3_error_info *e,
                           cairn_err *err);

/* Appends s with & < > " ' escaped, for request bodies. */
int s3_xml_escape(cairn_buf *out, const char *s);

/* ---- configuration (s3_conf.c) ---- */

/* Where the credentials come from (s3_conf.c picks one, first match wins:
 * environment keys, web identity, the shared credentials file, container
 * credentials, instance metadata). */
enum s3_cred_kind {
    S3_CRED_ENV = 0,      /* AWS_ACCESS_KEY_ID/SECRET(_FILE): re-read on ExpiredToken */
    S3_CRED_WEB_IDENTITY, /* STS AssumeRoleWithWebIdentity (IRSA) */
    S3_CRED_FILE,         /* the shared credentials file: re-read on ExpiredToken */
    S3_CRED_CONTAINER,    /* AWS_CONTAINER_CREDENTIALS_* (EKS Pod Identity, ECS) */
    S3_CRED_IMDS          /* the EC2 instance role, IMDSv2 (unless AWS_EC2_METADATA_DISABLED) */
};

/* Environment lookup, replaceable in tests (getenv by default). */
typedef const char *(*s3_getenv_fn)(const char *name);

struct s3_conf {
    char *bucket;
    char *prefix;        /* without a trailing '/'; "" for the bucket root */
    char *region;
    char *access_key;
    char *secret_key;
    char *session_token; /* NULL if none */
    char *endpoint;      /* "https://host[:port]", for messages and URLs */
    char *host;          /* the Host header value */
    char *base_path;     /* "" (virtual-hosted) or "/bucket" (path-style), unencoded */
    int path_style;
    int custom_endpoint;
    const char *cred_source; /* "the environment", ..., for messages */
    /* where the credentials come from, and what a refresh needs */
    enum s3_cred_kind cred_kind;
    /* S3_CRED_ENV: the files AWS_ACCESS_KEY_ID_FILE, AWS_SECRET_ACCESS_KEY_FILE
     * and AWS_SESSION_TOKEN_FILE named at load (NULL where the variable itself
     * was set: a process's environment does not change), read again on a
     * refresh. Kept as paths, not as the variables, so a refresh never reads
     * another store's settings (cairn copy opens its destination with its own). */
    char *key_files[3];
    char *cred_file;     /* S3_CRED_FILE: the file and the profile */
    char *profile;
    char *role_arn;      /* S3_CRED_WEB_IDENTITY */
    char *token_file;    /* AWS_WEB_IDENTITY_TOKEN_FILE, read at every refresh */
    char *session_name;  /* AWS_ROLE_SESSION_NAME or "cairn-HOST-PID" */
    char *sts_endpoint;  /* "https://sts.amazonaws.com" or AWS_ENDPOINT_URL_STS */
    long duration;       /* DurationSeconds; 0 = the role's default */
    char *container_uri; /* S3_CRED_CONTAINER: the full URI */
    char *container_auth_file; /* AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, read each time */
    char *container_auth;      /* AWS_CONTAINER_AUTHORIZATION_TOKEN (a secret) */
    char *imds_endpoint; /* S3_CRED_IMDS: "http://169.254.169.254" or the override */
};

/* Reads NAME, or NAME_FILE (the file's content with trailing whitespace
 * trimmed, at most 64 KiB). *out is NULL when neither is set. Errors name the
 * variable and the file, never the value. */
int s3_env_or_file(s3_getenv_fn env, const char *name, char **out, cairn_err *err);

/* Parses "s3://bucket/prefix" and the AWS_* configuration into conf. For
 * S3_CRED_ENV and S3_CRED_FILE the keys are read here (access_key ...); for
 * web identity and container credentials only the settings are checked: the
 * provider (s3_creds.c) fetches the keys. */
int s3_conf_load(const char *url, s3_getenv_fn env, struct s3_conf *conf, cairn_err *err);
void s3_conf_free(struct s3_conf *conf);

/* ---- credentials (s3_creds.c) ---- */

/* One set of keys. Strings are malloc'd and owned by the struct; free with
 * s3_creds_free(), which wipes them. */
struct s3_creds {
    char *access_key;
    char *secret_key;
    char *session_token; /* NULL if none */
    int64_t expiration;  /* Unix seconds; 0 = does not expire */
};
void s3_creds_free(struct s3_creds *c);
/* Whether keys received from what (for the message) can go into headers:
 * printable ASCII, no spaces, sane lengths. Never echoes them. */
int s3_creds_valid(const struct s3_creds *c, const char *what, cairn_err *err);
/* A deep copy of src into dst (CAIRN_FATAL on out of memory). */
int s3_creds_copy(struct s3_creds *dst, const struct s3_creds *src, cairn_err *err);

/* Reads the static keys again (S3_CRED_ENV: the variables and their _FILE
 * files; S3_CRED_FILE: the profile in the shared credentials file), for a
 * refresh after ExpiredToken. Lives in s3_conf.c. */
int s3_conf_read_static(const struct s3_conf *conf, struct s3_creds *out, cairn_err *err);

/* Checks a container-credentials URI the way the AWS SDKs do: https to any
 * host; http only to a loopback address (127.0.0.0/8, [::1], localhost) or
 * the ECS / EKS Pod Identity agents (169.254.170.2, 169.254.170.23,
 * [fd00:ec2::23]). var names the variable in the message. */
int s3_container_uri_check(const char *var, const char *uri, cairn_err *err);

/* An STS answer to AssumeRoleWithWebIdentity. CAIRN_OK: the credentials are
 * in out (Expiration required). CAIRN_NOTFOUND: an <ErrorResponse> (or
 * <Error>) document; its code and message are in e. CAIRN_CORRUPT: anything
 * else (err says why; never echoes a secret). */
int s3_parse_sts_response(const char *xml, size_t len, struct s3_creds *out,
                          struct s3_error_info *e, cairn_err *err);

/* A container-credentials answer: JSON {AccessKeyId, SecretAccessKey, Token,
 * Expiration}, also the shape of an IMDS answer (whose "Code" must then be
 * "Success"). CAIRN_OK or CAIRN_CORRUPT (err names the missing field). */
int s3_parse_container_creds(const char *json, size_t len, struct s3_creds *out,
                             cairn_err *err);

/* The credential provider of one store: holds the current keys, fetches or
 * re-reads them when needed. Thread-safe: any number of threads may call
 * s3_provider_get() and s3_provider_expired() at once; a mutex guards the
 * keys and only one thread refreshes at a time (the others wait for it).
 * Temporary keys are refreshed when less than 5 minutes remain (or half
 * their lifetime, when that is shorter); after an ExpiredToken answer the
 * caller reports it with s3_provider_expired() and the next get refreshes. */
struct s3_provider;
struct s3_provider_opts {
    const char *ca_file;   /* for https endpoints; NULL = system CAs */
    int attempts;          /* tries per fetch for transient failures (>= 1) */
    void (*log)(void *arg, const char *msg); /* refreshes, retries; may be NULL */
    void *log_arg;
};
/* Creates the provider and gets the first keys (so a wrong token fails at
 * open). conf must outlive the provider. libcurl must be loaded. */
int s3_provider_new(const struct s3_conf *conf, const struct s3_provider_opts *opts,
                    struct s3_provider **out, cairn_err *err);
void s3_provider_free(struct s3_provider *p); /* NULL is fine */
/* A copy of the current keys into out (the caller frees it with
 * s3_creds_free), refreshed first when they are about to expire; *gen says
 * which keys they were (for s3_provider_expired). */
int s3_provider_get(struct s3_provider *p, struct s3_creds *out, unsigned *gen,
                    cairn_err *err);
/* The server said the keys of generation gen have expired: the next get
 * refreshes them (once, however many threads report the same keys). */
void s3_provider_expired(struct s3_provider *p, unsigned gen);

#endif
