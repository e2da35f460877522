/* uploaders/s3_xml.c — a small bounded XML reader for S3 responses, and the
 * readers of the few documents S3 sends (ListBucketResult, Error,
 * InitiateMultipartUploadResult, DeleteResult).
 *
 * S3 responses are plain: elements and text, no mixed content that matters, no
 * DTD. We build a small tree (one array of nodes) under hard caps on size,
 * depth and element count, and refuse anything that needs a DTD. */
#define _GNU_SOURCE
#include "s3.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XML_MAX_DEPTH 32
#define XML_MAX_NODES 200000
#define XML_MAX_NAME 256

struct parser {
    const char *p, *end, *start;
    s3_xml *doc;
    int stack[XML_MAX_DEPTH];
    int depth;
    int root_done;
    cairn_err *err;
};

static int fail(struct parser *x, const char *what)
{
    return cairn_error(x->err, CAIRN_CORRUPT, "malformed XML at byte %zu: %s",
                       (size_t)(x->p - x->start), what);
}

static int starts(struct parser *x, const char *s)
{
    size_t n = strlen(s);
    return (size_t)(x->end - x->p) >= n && memcmp(x->p, s, n) == 0;
}

/* Moves past the next occurrence of s; fails if there is none. */
static int skip_past(struct parser *x, const char *s, const char *what)
{
    size_t n = strlen(s);
    const char *q = memmem(x->p, (size_t)(x->end - x->p), s, n);
    if (!q)
        return fail(x, what);
    x->p = q + n;
    return CAIRN_OK;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int name_start(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' || c == ':' || c >= 0x80;
}

static int name_char(unsigned char c)
{
    return name_start(c) || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

static int read_name(struct parser *x, const char **name, size_t *len)
{
    const char *s = x->p;
    if (x->p >= x->end || !name_start((unsigned char)*x->p))
        return fail(x, "expected a name");
    while (x->p < x->end && name_char((unsigned char)*x->p))
        x->p++;
    if ((size_t)(x->p - s) > XML_MAX_NAME)
        return fail(x, "name too long");
    *name = s;
    *len = (size_t)(x->p - s);
    return CAIRN_OK;
}

static int text_append(struct parser *x, int node, const char *s, size_t n)
{
    struct s3_xml_node *nd = &x->doc->n[node];
    char *t;
    if (n == 0)
        return CAIRN_OK;
    t = realloc(nd->text, nd->text_len + n + 1);
    if (!t)
        return cairn_error(x->err, CAIRN_FAILED, "out of memory reading XML");
    memcpy(t + nd->text_len, s, n);
    nd->text_len += n;
    t[nd->text_len] = 0;
    nd->text = t;
    return CAIRN_OK;
}

static size_t utf8_put(unsigned long cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Text up to the next '<', entities decoded, into the open element. */
static int read_text(struct parser *x)
{
    int node = x->depth ? x->stack[x->depth - 1] : -1, rc;
    while (x->p < x->end && *x->p != '<') {
        const char *s = x->p;
        char buf[8];
        size_t n = 0;
        if (*x->p != '&') {
            while (x->p < x->end && *x->p != '<' && *x->p != '&')
                x->p++;
            if (node < 0) {
                const char *q;
                for (q = s; q < x->p; q++)
                    if (!is_space(*q))
                        return fail(x, "text outside the root element");
                continue;
            }
            if (memchr(s, 0, (size_t)(x->p - s)))
                return fail(x, "NUL byte in text");
            if ((rc = text_append(x, node, s, (size_t)(x->p - s))) != CAIRN_OK)
                return rc;
            continue;
        }
        /* an entity or character reference */
        {
            const char *semi = memchr(x->p, ';', (size_t)(x->end - x->p) < 12
                                                      ? (size_t)(x->end - x->p)
                                                      : 12);
            size_t elen;
            if (!semi)
                return fail(x, "unterminated entity");
            elen = (size_t)(semi - x->p - 1);
            if (elen == 3 && !memcmp(x->p + 1, "amp", 3))
                buf[n++] = '&';
            else if (elen == 2 && !memcmp(x->p + 1, "lt", 2))
                buf[n++] = '<';
            else if (elen == 2 && !memcmp(x->p + 1, "gt", 2))
                buf[n++] = '>';
            else if (elen == 4 && !memcmp(x->p + 1, "quot", 4))
                buf[n++] = '"';
            else if (elen == 4 && !memcmp(x->p + 1, "apos", 4))
                buf[n++] = '\'';
            else if (elen >= 2 && x->p[1] == '#') {
                unsigned long cp = 0;
                const char *d = x->p + 2;
                int hex = 0, digits = 0;
                if (*d == 'x') {
                    hex = 1;
                    d++;
                }
                for (; d < semi; d++, digits++) {
                    int v;
                    if (*d >= '0' && *d <= '9')
                        v = *d - '0';
                    else if (hex && *d >= 'a' && *d <= 'f')
                        v = *d - 'a' + 10;
                    else if (hex && *d >= 'A' && *d <= 'F')
                        v = *d - 'A' + 10;
                    else
                        return fail(x, "bad character reference");
                    cp = cp * (hex ? 16 : 10) + (unsigned long)v;
                    if (cp > 0x10FFFF)
                        return fail(x, "character reference out of range");
                }
                if (!digits || cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
                    return fail(x, "bad character reference");
                n = utf8_put(cp, buf);
            } else {
                return fail(x, "unknown entity");
            }
            x->p = semi + 1;
            if (node < 0)
                return fail(x, "text outside the root element");
            if ((rc = text_append(x, node, buf, n)) != CAIRN_OK)
                return rc;
        }
    }
    return CAIRN_OK;
}

static int new_node(struct parser *x, const char *name, size_t len)
{
    s3_xml *d = x->doc;
    struct s3_xml_node *nd;
    const char *colon = memchr(name, ':', len);
    int idx, parent = x->depth ? x->stack[x->depth - 1] : -1;
    if (colon) { /* drop a namespace prefix */
        len -= (size_t)(colon + 1 - name);
        name = colon + 1;
        if (!len)
            return fail(x, "empty name after prefix");
    }
    if (d->count >= XML_MAX_NODES)
        return fail(x, "too many elements");
    if (d->count == d->cap) {
        size_t ncap = d->cap ? d->cap * 2 : 64;
        struct s3_xml_node *nn = realloc(d->n, ncap * sizeof *nn);
        if (!nn)
            return cairn_error(x->err, CAIRN_FAILED, "out of memory reading XML");
        d->n = nn;
        d->cap = ncap;
    }
    idx = (int)d->count;
    nd = &d->n[idx];
    memset(nd, 0, sizeof *nd);
    nd->name = strndup(name, len);
    if (!nd->name)
        return cairn_error(x->err, CAIRN_FAILED, "out of memory reading XML");
    d->count++;
    nd->parent = parent;
    nd->child = nd->next = nd->last = -1;
    if (parent >= 0) {
        struct s3_xml_node *pn = &d->n[parent];
        if (pn->last >= 0)
            d->n[pn->last].next = idx;
        else
            pn->child = idx;
        pn->last = idx;
    }
    return idx;
}

static int read_start_tag(struct parser *x)
{
    const char *name;
    size_t len;
    int idx, rc;
    x->p++; /* '<' */
    if ((rc = read_name(x, &name, &len)) != CAIRN_OK)
        return rc;
    if (x->root_done)
        return fail(x, "more than one root element");
    idx = new_node(x, name, len);
    if (idx < 0)
        return idx;
    /* attributes: read and dropped */
    for (;;) {
        const char *an;
        size_t al;
        char q;
        while (x->p < x->end && is_space(*x->p))
            x->p++;
        if (x->p >= x->end)
            return fail(x, "unterminated start tag");
        if (*x->p == '>') {
            x->p++;
            break;
        }
        if (starts(x, "/>")) {
            x->p += 2;
            if (x->depth == 0)
                x->root_done = 1;
            return CAIRN_OK;
        }
        if ((rc = read_name(x, &an, &al)) != CAIRN_OK)
            return rc;
        while (x->p < x->end && is_space(*x->p))
            x->p++;
        if (x->p >= x->end || *x->p != '=')
            return fail(x, "attribute without a value");
        x->p++;
        while (x->p < x->end && is_space(*x->p))
            x->p++;
        if (x->p >= x->end || (*x->p != '"' && *x->p != '\''))
            return fail(x, "unquoted attribute value");
        q = *x->p++;
        while (x->p < x->end && *x->p != q) {
            if (*x->p == '<')
                return fail(x, "'<' in an attribute value");
            x->p++;
        }
        if (x->p >= x->end)
            return fail(x, "unterminated attribute value");
        x->p++;
    }
    if (x->depth >= XML_MAX_DEPTH)
        return fail(x, "elements nested too deeply");
    x->stack[x->depth++] = idx;
    return CAIRN_OK;
}

static int read_end_tag(struct parser *x)
{
    const char *name, *colon;
    size_t len;
    int rc;
    struct s3_xml_node *open;
    x->p += 2; /* "</" */
    if ((rc = read_name(x, &name, &len)) != CAIRN_OK)
        return rc;
    while (x->p < x->end && is_space(*x->p))
        x->p++;
    if (x->p >= x->end || *x->p != '>')
        return fail(x, "unterminated end tag");
    x->p++;
    if (x->depth == 0)
        return fail(x, "end tag without a start tag");
    if ((colon = memchr(name, ':', len)) != NULL) {
        len -= (size_t)(colon + 1 - name);
        name = colon + 1;
    }
    open = &x->doc->n[x->stack[x->depth - 1]];
    if (strlen(open->name) != len || memcmp(open->name, name, len) != 0)
        return fail(x, "end tag does not match its start tag");
    x->depth--;
    if (x->depth == 0)
        x->root_done = 1;
    return CAIRN_OK;
}

int s3_xml_parse(const char *data, size_t len, s3_xml *doc, cairn_err *err)
{
    struct parser x;
    int rc = CAIRN_OK;
    size_t i;
    memset(doc, 0, sizeof *doc);
    memset(&x, 0, sizeof x);
    x.p = x.start = data;
    x.end = data + len;
    x.doc = doc;
    x.err = err;
    if (len > S3_XML_MAX)
        return cairn_error(err, CAIRN_CORRUPT, "XML response too large (%zu bytes, at most %zu)",
                           len, S3_XML_MAX);
    if (len >= 3 && !memcmp(data, "\xEF\xBB\xBF", 3))
        x.p += 3;
    while (rc == CAIRN_OK && x.p < x.end) {
        if (*x.p != '<') {
            rc = read_text(&x);
        } else if (starts(&x, "<?")) {
            rc = skip_past(&x, "?>", "unterminated processing instruction");
        } else if (starts(&x, "<!--")) {
            x.p += 4;
            rc = skip_past(&x, "-->", "unterminated comment");
        } else if (starts(&x, "<![CDATA[")) {
            const char *s = x.p + 9, *q;
            if (x.depth == 0)
                rc = fail(&x, "CDATA outside the root element");
            else if (!(q = memmem(s, (size_t)(x.end - s), "]]>", 3)))
                rc = fail(&x, "unterminated CDATA section");
            else {
                if (memchr(s, 0, (size_t)(q - s)))
                    rc = fail(&x, "NUL byte in CDATA");
                else
                    rc = text_append(&x, x.stack[x.depth - 1], s, (size_t)(q - s));
                x.p = q + 3;
            }
        } else if (starts(&x, "<!")) {
            rc = fail(&x, "DOCTYPE and declarations are not accepted");
        } else if (starts(&x, "</")) {
            rc = read_end_tag(&x);
        } else {
            rc = read_start_tag(&x);
        }
    }
    if (rc == CAIRN_OK && x.depth)
        rc = fail(&x, "document ends inside an element");
    if (rc == CAIRN_OK && doc->count == 0)
        rc = fail(&x, "no root element");
    if (rc != CAIRN_OK) {
        s3_xml_free(doc);
        return rc;
    }
    for (i = 0; i < doc->count; i++)
        if (!doc->n[i].text) {
            doc->n[i].text = strdup("");
            if (!doc->n[i].text) {
                s3_xml_free(doc);
                return cairn_error(err, CAIRN_FAILED, "out of memory reading XML");
            }
        }
    return CAIRN_OK;
}

void s3_xml_free(s3_xml *doc)
{
    size_t i;
    if (!doc)
        return;
    for (i = 0; i < doc->count; i++) {
        free(doc->n[i].name);
        free(doc->n[i].text);
    }
    free(doc->n);
    memset(doc, 0, sizeof *doc);
}

int s3_xml_child(const s3_xml *doc, int node, const char *name)
{
    int c;
    if (node < 0 || (size_t)node >= doc->count)
        return -1;
    for (c = doc->n[node].child; c >= 0; c = doc->n[c].next)
        if (strcmp(doc->n[c].name, name) == 0)
            return c;
    return -1;
}

int s3_xml_next(const s3_xml *doc, int node, const char *name)
{
    int c;
    if (node < 0 || (size_t)node >= doc->count)
        return -1;
    for (c = doc->n[node].next; c >= 0; c = doc->n[c].next)
        if (strcmp(doc->n[c].name, name) == 0)
            return c;
    return -1;
}

const char *s3_xml_child_text(const s3_xml *doc, int node, const char *name)
{
    int c = s3_xml_child(doc, node, name);
    return c >= 0 ? doc->n[c].text : NULL;
}

int s3_xml_escape(cairn_buf *out, const char *s)
{
    for (; *s; s++) {
        int rc;
        switch (*s) {
        case '&': rc = cairn_buf_append(out, "&amp;", 5); break;
        case '<': rc = cairn_buf_append(out, "&lt;", 4); break;
        case '>': rc = cairn_buf_append(out, "&gt;", 4); break;
        case '"': rc = cairn_buf_append(out, "&quot;", 6); break;
        case '\'': rc = cairn_buf_append(out, "&apos;", 6); break;
        default: rc = cairn_buf_putc(out, *s); break;
        }
        if (rc != CAIRN_OK)
            return rc;
    }
    return CAIRN_OK;
}

/* ---- S3 documents ---- */

static int parse_u64(const char *s, uint64_t *v)
{
    uint64_t r = 0;
    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || r > (UINT64_MAX - 9) / 10)
            return -1;
        r = r * 10 + (uint64_t)(*s - '0');
    }
    *v = r;
    return 0;
}

void s3_list_page_free(struct s3_list_page *page)
{
    size_t i;
    if (!page)
        return;
    for (i = 0; i < page->n; i++)
        free(page->keys[i]);
    free(page->keys);
    free(page->sizes);
    free(page->next_token);
    memset(page, 0, sizeof *page);
}

int s3_parse_list(const char *xml, size_t len, struct s3_list_page *page, cairn_err *err)
{
    s3_xml d;
    int rc, c;
    size_t cap = 0;
    const char *t;
    memset(page, 0, sizeof *page);
    if ((rc = s3_xml_parse(xml, len, &d, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "bad ListObjectsV2 response");
    if (strcmp(d.n[0].name, "ListBucketResult") != 0) {
        rc = cairn_error(err, CAIRN_CORRUPT,
                         "bad ListObjectsV2 response: root element is <%.64s>, not "
                         "<ListBucketResult>",
                         d.n[0].name);
        goto out;
    }
    for (c = s3_xml_child(&d, 0, "Contents"); c >= 0; c = s3_xml_next(&d, c, "Contents")) {
        const char *key = s3_xml_child_text(&d, c, "Key");
        const char *size = s3_xml_child_text(&d, c, "Size");
        uint64_t sz;
        if (!key || !*key || parse_u64(size, &sz) != 0) {
            rc = cairn_error(err, CAIRN_CORRUPT,
                             "bad ListObjectsV2 response: an entry without a valid Key and Size");
            goto out;
        }
        if (page->n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **nk = realloc(page->keys, ncap * sizeof *nk);
            uint64_t *ns;
            if (nk)
                page->keys = nk;
            ns = nk ? realloc(page->sizes, ncap * sizeof *ns) : NULL;
            if (!ns) {
                rc = cairn_error(err, CAIRN_FAILED, "out of memory reading a listing");
                goto out;
            }
            page->sizes = ns;
            cap = ncap;
        }
        page->keys[page->n] = strdup(key);
        if (!page->keys[page->n]) {
            rc = cairn_error(err, CAIRN_FAILED, "out of memory reading a listing");
            goto out;
        }
        page->sizes[page->n++] = sz;
    }
    t = s3_xml_child_text(&d, 0, "IsTruncated");
    page->truncated = t && strcmp(t, "true") == 0;
    t = s3_xml_child_text(&d, 0, "NextContinuationToken");
    if (t && *t) {
        page->next_token = strdup(t);
        if (!page->next_token) {
            rc = cairn_error(err, CAIRN_FAILED, "out of memory reading a listing");
            goto out;
        }
    }
    if (page->truncated && !page->next_token)
        rc = cairn_error(err, CAIRN_CORRUPT,
                         "bad ListObjectsV2 response: truncated, but no NextContinuationToken");
out:
    s3_xml_free(&d);
    if (rc != CAIRN_OK)
        s3_list_page_free(page);
    return rc;
}

static void copy_field(char *dst, size_t n, const char *src)
{
    size_t i, j = 0;
    if (!src)
        src = "";
    /* printable ASCII and UTF-8 only: these end up in messages */
    for (i = 0; src[i] && j + 1 < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[j++] = (c < 0x20 || c == 0x7F) ? ' ' : (char)c;
    }
    dst[j] = 0;
}

static void fill_error(const s3_xml *d, int node, struct s3_error_info *e)
{
    copy_field(e->code, sizeof e->code, s3_xml_child_text(d, node, "Code"));
    copy_field(e->message, sizeof e->message, s3_xml_child_text(d, node, "Message"));
    copy_field(e->key, sizeof e->key, s3_xml_child_text(d, node, "Key"));
    copy_field(e->bucket, sizeof e->bucket, s3_xml_child_text(d, node, "BucketName"));
    copy_field(e->region, sizeof e->region, s3_xml_child_text(d, node, "Region"));
    copy_field(e->server_time, sizeof e->server_time, s3_xml_child_text(d, node, "ServerTime"));
    copy_field(e->request_time, sizeof e->request_time,
               s3_xml_child_text(d, node, "RequestTime"));
}

int s3_parse_error(const char *xml, size_t len, struct s3_error_info *e)
{
    s3_xml d;
    memset(e, 0, sizeof *e);
    if (s3_xml_parse(xml, len, &d, NULL) != CAIRN_OK)
        return CAIRN_CORRUPT;
    if (strcmp(d.n[0].name, "Error") != 0) {
        s3_xml_free(&d);
        return CAIRN_NOTFOUND;
    }
    fill_error(&d, 0, e);
    s3_xml_free(&d);
    return CAIRN_OK;
}

int s3_parse_upload_id(const char *xml, size_t len, char **upload_id, cairn_err *err)
{
    s3_xml d;
    const char *t;
    int rc;
    *upload_id = NULL;
    if ((rc = s3_xml_parse(xml, len, &d, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "bad CreateMultipartUpload response");
    t = strcmp(d.n[0].name, "InitiateMultipartUploadResult") == 0
            ? s3_xml_child_text(&d, 0, "UploadId")
            : NULL;
    if (!t || !*t)
        rc = cairn_error(err, CAIRN_CORRUPT, "bad CreateMultipartUpload response: no UploadId");
    else if (!(*upload_id = strdup(t)))
        rc = cairn_error(err, CAIRN_FAILED, "out of memory");
    s3_xml_free(&d);
    return rc;
}

int s3_parse_delete_result(const char *xml, size_t len, struct s3_error_info *e, cairn_err *err)
{
    s3_xml d;
    int rc, c;
    memset(e, 0, sizeof *e);
    if ((rc = s3_xml_parse(xml, len, &d, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "bad DeleteObjects response");
    if (strcmp(d.n[0].name, "DeleteResult") != 0) {
        s3_xml_free(&d);
        return cairn_error(err, CAIRN_CORRUPT,
                           "bad DeleteObjects response: root element is not <DeleteResult>");
    }
    c = s3_xml_child(&d, 0, "Error");
    if (c >= 0) {
        fill_error(&d, c, e);
        rc = cairn_error(err, CAIRN_FAILED, "cannot delete '%s': %s (%s)", e->key, e->code,
                         e->message);
    }
    s3_xml_free(&d);
    return rc;
}

/* <AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>
 * <Credentials>, or an STS <ErrorResponse><Error>. */
int s3_parse_sts_response(const char *xml, size_t len, struct s3_creds *out,
                          struct s3_error_info *e, cairn_err *err)
{
    s3_xml d;
    const char *ak, *sk, *tok, *exp;
    int rc, n;
    int64_t ns;
    memset(out, 0, sizeof *out);
    memset(e, 0, sizeof *e);
    if ((rc = s3_xml_parse(xml, len, &d, err)) != CAIRN_OK)
        return cairn_error_prefix(err, "bad STS response");
    if (!strcmp(d.n[0].name, "ErrorResponse") || !strcmp(d.n[0].name, "Error")) {
        n = strcmp(d.n[0].name, "Error") ? s3_xml_child(&d, 0, "Error") : 0;
        if (n >= 0)
            fill_error(&d, n, e);
        s3_xml_free(&d);
        return CAIRN_NOTFOUND;
    }
    n = -1;
    if (!strcmp(d.n[0].name, "AssumeRoleWithWebIdentityResponse")) {
        n = s3_xml_child(&d, 0, "AssumeRoleWithWebIdentityResult");
        if (n >= 0)
            n = s3_xml_child(&d, n, "Credentials");
    }
    if (n < 0) {
        rc = cairn_error(err, CAIRN_CORRUPT,
                         "bad STS response: no AssumeRoleWithWebIdentityResult/Credentials");
        goto out;
    }
    ak = s3_xml_child_text(&d, n, "AccessKeyId");
    sk = s3_xml_child_text(&d, n, "SecretAccessKey");
    tok = s3_xml_child_text(&d, n, "SessionToken");
    exp = s3_xml_child_text(&d, n, "Expiration");
    if (!ak || !sk || !tok || !exp || !*ak || !*sk || !*tok || !*exp) {
        rc = cairn_error(err, CAIRN_CORRUPT,
                         "bad STS response: Credentials lacks AccessKeyId, SecretAccessKey, "
                         "SessionToken or Expiration");
        goto out;
    }
    if (cairn_parse_time(exp, &ns) != CAIRN_OK || ns <= 0) {
        rc = cairn_error(err, CAIRN_CORRUPT, "bad STS response: Expiration '%.64s' is not a time",
                         exp);
        goto out;
    }
    out->expiration = ns / 1000000000;
    out->access_key = strdup(ak);
    out->secret_key = strdup(sk);
    out->session_token = strdup(tok);
    if (!out->access_key || !out->secret_key || !out->session_token)
        rc = cairn_error(err, CAIRN_FATAL, "out of memory");
    else
        rc = s3_creds_valid(out, "STS response", err);
out:
    s3_xml_free(&d);
    if (rc != CAIRN_OK)
        s3_creds_free(out);
    return rc;
}
