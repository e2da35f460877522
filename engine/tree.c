/* engine/tree.c — tree objects: JSON encoding and libarchive entry conversion. */
#define _GNU_SOURCE
#include "tree.h"
#include "archive_dl.h"
#include "internal.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *type_names[] = {"file", "dir", "symlink", "fifo", "chr", "blk", "sock"};

const char *cairn_ftype_name(enum cairn_ftype t)
{
    if ((unsigned)t < sizeof type_names / sizeof *type_names)
        return type_names[t];
    return "unknown";
}

void cairn_node_free(struct cairn_node *n)
{
    size_t i;
    if (!n)
        return;
    free(n->name);
    free(n->user);
    free(n->group);
    free(n->target);
    free(n->hardlink);
    for (i = 0; i < n->n_xattrs; i++) {
        free(n->xattrs[i].name);
        free(n->xattrs[i].value);
    }
    free(n->xattrs);
    free(n->acl);
    free(n->fflags);
    free(n->sparse);
    free(n->chunks);
    memset(n, 0, sizeof *n);
}

void cairn_tree_free(struct cairn_tree *t)
{
    size_t i;
    if (!t)
        return;
    for (i = 0; i < t->n; i++)
        cairn_node_free(&t->nodes[i]);
    free(t->nodes);
    memset(t, 0, sizeof *t);
}

int cairn_tree_add(struct cairn_tree *t, struct cairn_node *n)
{
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        struct cairn_node *p = realloc(t->nodes, ncap * sizeof *p);
        if (!p)
            return CAIRN_FAILED;
        t->nodes = p;
        t->cap = ncap;
    }
    t->nodes[t->n++] = *n;
    memset(n, 0, sizeof *n);
    return CAIRN_OK;
}

static int node_cmp(const void *a, const void *b)
{
    return strcmp(((const struct cairn_node *)a)->name, ((const struct cairn_node *)b)->name);
}

void cairn_tree_sort(struct cairn_tree *t)
{
    if (t->n > 1)
        qsort(t->nodes, t->n, sizeof *t->nodes, node_cmp);
}

const struct cairn_node *cairn_tree_find(const struct cairn_tree *t, const char *name)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(t->nodes[mid].name, name);
        if (c == 0)
            return &t->nodes[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

int cairn_node_copy(struct cairn_node *dst, const struct cairn_node *src)
{
    size_t i;
    *dst = *src;
    dst->name = xstrdup(src->name);
    dst->user = xstrdup(src->user);
    dst->group = xstrdup(src->group);
    dst->target = xstrdup(src->target);
    dst->hardlink = xstrdup(src->hardlink);
    dst->acl = xstrdup(src->acl);
    dst->fflags = xstrdup(src->fflags);
    dst->xattrs = NULL;
    dst->sparse = NULL;
    dst->chunks = NULL;
    if (src->n_xattrs) {
        dst->xattrs = calloc(src->n_xattrs, sizeof *dst->xattrs);
        if (!dst->xattrs)
            goto oom;
        for (i = 0; i < src->n_xattrs; i++) {
            dst->xattrs[i].name = strdup(src->xattrs[i].name);
            dst->xattrs[i].value = malloc(src->xattrs[i].len ? src->xattrs[i].len : 1);
            dst->xattrs[i].len = src->xattrs[i].len;
            if (!dst->xattrs[i].name || !dst->xattrs[i].value)
                goto oom;
            memcpy(dst->xattrs[i].value, src->xattrs[i].value, src->xattrs[i].len);
        }
    }
    if (src->n_sparse) {
        dst->sparse = malloc(src->n_sparse * sizeof *dst->sparse);
        if (!dst->sparse)
            goto oom;
        memcpy(dst->sparse, src->sparse, src->n_sparse * sizeof *dst->sparse);
    }
    if (src->n_chunks) {
        dst->chunks = malloc(src->n_chunks * sizeof *dst->chunks);
        if (!dst->chunks)
            goto oom;
        memcpy(dst->chunks, src->chunks, src->n_chunks * sizeof *dst->chunks);
    }
    return CAIRN_OK;
oom:
    cairn_node_free(dst);
    return CAIRN_FAILED;
}

/* ---- JSON ---- */

/* Strings that may not be UTF-8 (names, link targets) are written as "key" when
 * valid UTF-8, else as "key_b64". */
static int set_bytes(json_t *o, const char *key, const char *s)
{
    size_t n = strlen(s);
    if (cairn_utf8_valid(s, n))
        return json_object_set_new(o, key, json_stringn(s, n));
    {
        char k[64];
        char *b = cairn_b64_encode((const uint8_t *)s, n);
        int rc;
        if (!b)
            return -1;
        snprintf(k, sizeof k, "%s_b64", key);
        rc = json_object_set_new(o, k, json_string(b));
        free(b);
        return rc;
    }
}

json_t *cairn_node_to_json(const struct cairn_node *n)
{
    json_t *o = json_object();
    size_t i;
    char hex[CAIRN_HEX_LEN + 1];
    if (!o)
        return NULL;
    set_bytes(o, "name", n->name);
    json_object_set_new(o, "type", json_string(cairn_ftype_name(n->type)));
    json_object_set_new(o, "mode", json_integer(n->mode));
    json_object_set_new(o, "uid", json_integer(n->uid));
    json_object_set_new(o, "gid", json_integer(n->gid));
    if (n->user)
        set_bytes(o, "user", n->user);
    if (n->group)
        set_bytes(o, "group", n->group);
    json_object_set_new(o, "mtime", json_integer(n->mtime_ns));
    json_object_set_new(o, "atime", json_integer(n->atime_ns));
    json_object_set_new(o, "ctime", json_integer(n->ctime_ns));
    json_object_set_new(o, "size", json_integer((json_int_t)n->size));
    json_object_set_new(o, "dev", json_integer((json_int_t)n->dev));
    json_object_set_new(o, "ino", json_integer((json_int_t)n->ino));
    json_object_set_new(o, "nlink", json_integer(n->nlink));
    if (n->type == CAIRN_T_CHR || n->type == CAIRN_T_BLK)
        json_object_set_new(o, "rdev", json_integer((json_int_t)n->rdev));
    if (n->target)
        set_bytes(o, "target", n->target);
    if (n->hardlink)
        set_bytes(o, "hardlink", n->hardlink);
    if (n->n_xattrs) {
        json_t *a = json_array();
        for (i = 0; i < n->n_xattrs; i++) {
            json_t *x = json_object();
            char *b = cairn_b64_encode(n->xattrs[i].value, n->xattrs[i].len);
            set_bytes(x, "name", n->xattrs[i].name);
            json_object_set_new(x, "value", json_string(b ? b : ""));
            free(b);
            json_array_append_new(a, x);
        }
        json_object_set_new(o, "xattrs", a);
    }
    if (n->acl)
        set_bytes(o, "acl", n->acl);
    if (n->fflags)
        set_bytes(o, "fflags", n->fflags);
    if (n->sparse) {
        json_t *a = json_array();
        for (i = 0; i < n->n_sparse; i++)
            json_array_append_new(a, json_pack("[II]", (json_int_t)n->sparse[i].off,
                                               (json_int_t)n->sparse[i].len));
        json_object_set_new(o, "sparse", a);
    }
    if (n->type == CAIRN_T_FILE && !n->hardlink) {
        json_t *a = json_array();
        for (i = 0; i < n->n_chunks; i++) {
            cairn_id_hex(&n->chunks[i], hex);
            json_array_append_new(a, json_string(hex));
        }
        json_object_set_new(o, "chunks", a);
    }
    if (n->type == CAIRN_T_DIR) {
        cairn_id_hex(&n->subtree, hex);
        json_object_set_new(o, "subtree", json_string(hex));
    }
    return o;
}

int cairn_tree_encode(const struct cairn_tree *t, cairn_buf *out)
{
    json_t *root = json_object(), *arr = json_array();
    char *s;
    size_t i;
    int rc;
    if (!root || !arr) {
        json_decref(root);
        json_decref(arr);
        return CAIRN_FAILED;
    }
    for (i = 0; i < t->n; i++) {
        json_t *o = cairn_node_to_json(&t->nodes[i]);
        if (!o || json_array_append_new(arr, o) != 0) {
            json_decref(root);
            json_decref(arr);
            return CAIRN_FAILED;
        }
    }
    json_object_set_new(root, "nodes", arr);
    s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!s)
        return CAIRN_FAILED;
    cairn_buf_reset(out);
    rc = cairn_buf_append(out, s, strlen(s));
    free(s);
    return rc;
}

/* Reads "key" or "key_b64" into a malloc'd NUL-terminated string without NULs. */
static int get_bytes(json_t *o, const char *key, char **out, int required, cairn_err *err)
{
    json_t *v = json_object_get(o, key);
    char k[64];
    *out = NULL;
    if (v) {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
            return cairn_error(err, CAIRN_CORRUPT, "tree: field '%s' is not a string", key);
        *out = strdup(json_string_value(v));
        return *out ? CAIRN_OK : CAIRN_FAILED;
    }
    snprintf(k, sizeof k, "%s_b64", key);
    v = json_object_get(o, k);
    if (v) {
        cairn_buf b = CAIRN_BUF_INIT;
        if (!json_is_string(v) || cairn_b64_decode(json_string_value(v), &b) != CAIRN_OK ||
            memchr(b.data, 0, b.len)) {
            cairn_buf_free(&b);
            return cairn_error(err, CAIRN_CORRUPT, "tree: field '%s' is not valid base64", k);
        }
        *out = cairn_buf_detach(&b, NULL);
        return *out ? CAIRN_OK : CAIRN_FAILED;
    }
    if (required)
        return cairn_error(err, CAIRN_CORRUPT, "tree: entry without '%s'", key);
    return CAIRN_OK;
}

static int get_int(json_t *o, const char *key, json_int_t *out, json_int_t lo, json_int_t hi,
                   cairn_err *err)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = 0;
        return CAIRN_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return cairn_error(err, CAIRN_CORRUPT, "tree: field '%s' is not an integer in range",
                           key);
    *out = json_integer_value(v);
    return CAIRN_OK;
}

int cairn_node_from_json(json_t *o, struct cairn_node *n, cairn_err *err)
{
    json_t *v;
    json_int_t x;
    const char *ts;
    size_t i;
    int rc;
    memset(n, 0, sizeof *n);
    if (!json_is_object(o))
        return cairn_error(err, CAIRN_CORRUPT, "tree: entry is not an object");
    if ((rc = get_bytes(o, "name", &n->name, 1, err)) != CAIRN_OK)
        return rc;
    if (!n->name[0] || strchr(n->name, '/') || strlen(n->name) > CAIRN_TREE_MAX_NAME ||
        strcmp(n->name, ".") == 0 || strcmp(n->name, "..") == 0)
        return cairn_error(err, CAIRN_CORRUPT, "tree: invalid entry name '%.200s'", n->name);
    ts = json_string_value(json_object_get(o, "type"));
    if (!ts)
        return cairn_error(err, CAIRN_CORRUPT, "tree: entry '%.200s' has no type", n->name);
    for (i = 0; i < sizeof type_names / sizeof *type_names; i++)
        if (strcmp(ts, type_names[i]) == 0)
            break;
    if (i == sizeof type_names / sizeof *type_names)
        return cairn_error(err, CAIRN_CORRUPT, "tree: entry '%.200s' has unknown type '%.40s'",
                           n->name, ts);
    n->type = (enum cairn_ftype)i;
#define INT_FIELD(key, dst, lo, hi)                                                         \
    do {                                                                                    \
        if ((rc = get_int(o, key, &x, lo, hi, err)) != CAIRN_OK)                            \
            return rc;                                                                      \
        dst = x;                                                                            \
    } while (0)
    INT_FIELD("mode", n->mode, 0, 07777);
    INT_FIELD("uid", n->uid, 0, 0xFFFFFFFFLL);
    INT_FIELD("gid", n->gid, 0, 0xFFFFFFFFLL);
    INT_FIELD("mtime", n->mtime_ns, INT64_MIN, INT64_MAX);
    INT_FIELD("atime", n->atime_ns, INT64_MIN, INT64_MAX);
    INT_FIELD("ctime", n->ctime_ns, INT64_MIN, INT64_MAX);
    INT_FIELD("size", n->size, 0, INT64_MAX);
    INT_FIELD("dev", n->dev, INT64_MIN, INT64_MAX);
    INT_FIELD("ino", n->ino, INT64_MIN, INT64_MAX);
    INT_FIELD("nlink", n->nlink, 0, 0xFFFFFFFFLL);
    INT_FIELD("rdev", n->rdev, INT64_MIN, INT64_MAX);
#undef INT_FIELD
    if ((rc = get_bytes(o, "user", &n->user, 0, err)) != CAIRN_OK ||
        (rc = get_bytes(o, "group", &n->group, 0, err)) != CAIRN_OK ||
        (rc = get_bytes(o, "acl", &n->acl, 0, err)) != CAIRN_OK ||
        (rc = get_bytes(o, "fflags", &n->fflags, 0, err)) != CAIRN_OK)
        return rc;
    if ((rc = get_bytes(o, "target", &n->target, n->type == CAIRN_T_SYMLINK, err)) != CAIRN_OK)
        return rc;
    if ((rc = get_bytes(o, "hardlink", &n->hardlink, 0, err)) != CAIRN_OK)
        return rc;
    if ((v = json_object_get(o, "xattrs"))) {
        size_t cnt = json_array_size(v);
        if (!json_is_array(v) || cnt > CAIRN_NODE_MAX_XATTRS)
            return cairn_error(err, CAIRN_CORRUPT, "tree: bad xattrs on '%.200s'", n->name);
        n->xattrs = calloc(cnt ? cnt : 1, sizeof *n->xattrs);
        if (!n->xattrs)
            return CAIRN_FAILED;
        for (i = 0; i < cnt; i++) {
            json_t *xo = json_array_get(v, i);
            const char *val = json_string_value(json_object_get(xo, "value"));
            cairn_buf b = CAIRN_BUF_INIT;
            n->n_xattrs = i + 1;
            if ((rc = get_bytes(xo, "name", &n->xattrs[i].name, 1, err)) != CAIRN_OK)
                return rc;
            if (!val || cairn_b64_decode(val, &b) != CAIRN_OK) {
                cairn_buf_free(&b);
                return cairn_error(err, CAIRN_CORRUPT, "tree: bad xattr value on '%.200s'",
                                   n->name);
            }
            n->xattrs[i].len = b.len;
            n->xattrs[i].value = cairn_buf_detach(&b, NULL);
        }
    }
    if ((v = json_object_get(o, "sparse"))) {
        size_t cnt = json_array_size(v);
        uint64_t end = 0;
        if (!json_is_array(v))
            return cairn_error(err, CAIRN_CORRUPT, "tree: bad sparse map on '%.200s'", n->name);
        n->sparse = calloc(cnt ? cnt : 1, sizeof *n->sparse);
        if (!n->sparse)
            return CAIRN_FAILED;
        n->n_sparse = cnt;
        for (i = 0; i < cnt; i++) {
            json_t *e = json_array_get(v, i);
            json_t *a = json_array_get(e, 0), *b = json_array_get(e, 1);
            if (!json_is_integer(a) || !json_is_integer(b) || json_integer_value(a) < 0 ||
                json_integer_value(b) < 0 || (uint64_t)json_integer_value(a) < end ||
                (uint64_t)json_integer_value(a) + (uint64_t)json_integer_value(b) > n->size)
                return cairn_error(err, CAIRN_CORRUPT, "tree: bad sparse extent on '%.200s'",
                                   n->name);
            n->sparse[i].off = (uint64_t)json_integer_value(a);
            n->sparse[i].len = (uint64_t)json_integer_value(b);
            end = n->sparse[i].off + n->sparse[i].len;
        }
    }
    if ((v = json_object_get(o, "chunks"))) {
        size_t cnt = json_array_size(v);
        if (!json_is_array(v))
            return cairn_error(err, CAIRN_CORRUPT, "tree: bad chunk list on '%.200s'", n->name);
        n->chunks = calloc(cnt ? cnt : 1, sizeof *n->chunks);
        if (!n->chunks)
            return CAIRN_FAILED;
        n->n_chunks = cnt;
        for (i = 0; i < cnt; i++) {
            const char *h = json_string_value(json_array_get(v, i));
            if (!h || cairn_id_parse(h, &n->chunks[i]) != CAIRN_OK)
                return cairn_error(err, CAIRN_CORRUPT, "tree: bad chunk id on '%.200s'",
                                   n->name);
        }
    }
    if (n->type == CAIRN_T_DIR) {
        const char *h = json_string_value(json_object_get(o, "subtree"));
        if (!h || cairn_id_parse(h, &n->subtree) != CAIRN_OK)
            return cairn_error(err, CAIRN_CORRUPT, "tree: directory '%.200s' has no subtree",
                               n->name);
    }
    return CAIRN_OK;
}

int cairn_tree_decode(const uint8_t *data, size_t len, struct cairn_tree *t, cairn_err *err)
{
    json_error_t je;
    json_t *root, *arr;
    size_t i, cnt;
    memset(t, 0, sizeof *t);
    if (len > CAIRN_TREE_MAX_BYTES)
        return cairn_error(err, CAIRN_CORRUPT, "tree object too large (%zu bytes)", len);
    root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return cairn_error(err, CAIRN_CORRUPT, "tree object is not valid JSON: %s", je.text);
    arr = json_object_get(root, "nodes");
    if (!json_is_array(arr)) {
        json_decref(root);
        return cairn_error(err, CAIRN_CORRUPT, "tree object has no 'nodes' array");
    }
    cnt = json_array_size(arr);
    t->nodes = calloc(cnt ? cnt : 1, sizeof *t->nodes);
    if (!t->nodes) {
        json_decref(root);
        return cairn_error(err, CAIRN_FAILED, "out of memory decoding a tree");
    }
    t->cap = cnt ? cnt : 1;
    for (i = 0; i < cnt; i++) {
        int rc = cairn_node_from_json(json_array_get(arr, i), &t->nodes[i], err);
        t->n = i + 1;
        if (rc == CAIRN_OK && i > 0 && strcmp(t->nodes[i - 1].name, t->nodes[i].name) >= 0)
            rc = cairn_error(err, CAIRN_CORRUPT, "tree: entries not sorted or duplicated at '%.200s'",
                             t->nodes[i].name);
        if (rc != CAIRN_OK) {
            json_decref(root);
            cairn_tree_free(t);
            return rc == CAIRN_FAILED && err && !err->msg[0]
                       ? cairn_error(err, rc, "out of memory decoding a tree")
                       : rc;
        }
    }
    json_decref(root);
    return CAIRN_OK;
}

/* ---- libarchive entries ---- */

int cairn_node_from_entry(struct cairn_node *n, struct archive_entry *e, cairn_err *err)
{
    const char *s;
    const char *xname;
    const void *xval;
    size_t xsize;
    int cnt, i;
    la_int64_t off, len;

    switch (archive_entry_filetype(e)) {
    case AE_IFREG: n->type = CAIRN_T_FILE; break;
    case AE_IFDIR: n->type = CAIRN_T_DIR; break;
    case AE_IFLNK: n->type = CAIRN_T_SYMLINK; break;
    case AE_IFIFO: n->type = CAIRN_T_FIFO; break;
    case AE_IFCHR: n->type = CAIRN_T_CHR; break;
    case AE_IFBLK: n->type = CAIRN_T_BLK; break;
    case AE_IFSOCK: n->type = CAIRN_T_SOCK; break;
    default:
        return cairn_error(err, CAIRN_WARN, "unsupported file type");
    }
    n->mode = (uint32_t)archive_entry_perm(e) & 07777;
    n->uid = (uint32_t)archive_entry_uid(e);
    n->gid = (uint32_t)archive_entry_gid(e);
    if ((s = archive_entry_uname(e)) && *s)
        n->user = strdup(s);
    if ((s = archive_entry_gname(e)) && *s)
        n->group = strdup(s);
    n->mtime_ns = (int64_t)archive_entry_mtime(e) * 1000000000LL + archive_entry_mtime_nsec(e);
    /* atime is not kept: reading a tree changes it, so keeping it would make
     * every backup rewrite every directory listing */
    n->atime_ns = 0;
    n->ctime_ns = (int64_t)archive_entry_ctime(e) * 1000000000LL + archive_entry_ctime_nsec(e);
    n->size = n->type == CAIRN_T_FILE ? (uint64_t)archive_entry_size(e) : 0;
    n->dev = (uint64_t)archive_entry_dev(e);
    n->ino = (uint64_t)archive_entry_ino64(e);
    n->nlink = archive_entry_nlink(e);
    n->rdev = (uint64_t)archive_entry_rdev(e);
    if (n->type == CAIRN_T_SYMLINK) {
        s = archive_entry_symlink(e);
        n->target = strdup(s ? s : "");
    }
    cnt = archive_entry_xattr_reset(e);
    if (cnt > 0) {
        n->xattrs = calloc((size_t)cnt, sizeof *n->xattrs);
        if (!n->xattrs)
            return cairn_error(err, CAIRN_FAILED, "out of memory");
        for (i = 0; i < cnt && archive_entry_xattr_next(e, &xname, &xval, &xsize) == ARCHIVE_OK;
             i++) {
            n->xattrs[i].name = strdup(xname);
            n->xattrs[i].value = malloc(xsize ? xsize : 1);
            if (!n->xattrs[i].name || !n->xattrs[i].value)
                return cairn_error(err, CAIRN_FAILED, "out of memory");
            memcpy(n->xattrs[i].value, xval, xsize);
            n->xattrs[i].len = xsize;
            n->n_xattrs++;
        }
    }
    if (archive_entry_acl_count(e, ARCHIVE_ENTRY_ACL_TYPE_POSIX1E) > 0) {
        char *t = archive_entry_acl_to_text(e, NULL,
                                            ARCHIVE_ENTRY_ACL_TYPE_ACCESS |
                                                ARCHIVE_ENTRY_ACL_TYPE_DEFAULT |
                                                ARCHIVE_ENTRY_ACL_STYLE_EXTRA_ID |
                                                ARCHIVE_ENTRY_ACL_STYLE_MARK_DEFAULT);
        if (t && *t)
            n->acl = t;
        else
            free(t);
    }
    if ((s = archive_entry_fflags_text(e)) && *s)
        n->fflags = strdup(s);
    if (n->type == CAIRN_T_FILE) {
        cnt = archive_entry_sparse_reset(e);
        if (cnt > 0) {
            n->sparse = calloc((size_t)cnt, sizeof *n->sparse);
            if (!n->sparse)
                return cairn_error(err, CAIRN_FAILED, "out of memory");
            while (archive_entry_sparse_next(e, &off, &len) == ARCHIVE_OK) {
                struct cairn_extent *last;
                if (len <= 0 || off < 0 || (uint64_t)(off + len) > n->size)
                    continue;
                last = n->n_sparse ? &n->sparse[n->n_sparse - 1] : NULL;
                if (last && last->off + last->len > (uint64_t)off)
                    continue; /* overlapping or out of order: ignore */
                if (last && last->off + last->len == (uint64_t)off) {
                    last->len += (uint64_t)len; /* adjacent extents merge */
                    continue;
                }
                if ((int)n->n_sparse >= cnt)
                    break;
                n->sparse[n->n_sparse].off = (uint64_t)off;
                n->sparse[n->n_sparse].len = (uint64_t)len;
                n->n_sparse++;
            }
            /* one extent covering everything is just a dense file; an empty
             * map (non-NULL, n_sparse 0) is a file that is all hole */
            if (n->n_sparse == 1 && n->sparse[0].off == 0 && n->sparse[0].len == n->size) {
                free(n->sparse);
                n->sparse = NULL;
                n->n_sparse = 0;
            }
        }
    }
    return CAIRN_OK;
}

int cairn_node_to_entry(const struct cairn_node *n, struct archive_entry *e, cairn_err *err)
{
    size_t i;
    static const unsigned types[] = {AE_IFREG, AE_IFDIR, AE_IFLNK, AE_IFIFO,
                                     AE_IFCHR, AE_IFBLK, AE_IFSOCK};
    if ((unsigned)n->type >= sizeof types / sizeof *types)
        return cairn_error(err, CAIRN_CORRUPT, "unknown node type");
    archive_entry_set_filetype(e, types[n->type]);
    archive_entry_set_perm(e, n->mode & 07777);
    archive_entry_set_uid(e, n->uid);
    archive_entry_set_gid(e, n->gid);
    if (n->user)
        archive_entry_copy_uname(e, n->user);
    if (n->group)
        archive_entry_copy_gname(e, n->group);
#define SPLIT(ns, sec, nsec)                                                                \
    int64_t sec = (ns) / 1000000000LL;                                                      \
    long nsec = (long)((ns) % 1000000000LL);                                                \
    if (nsec < 0) {                                                                         \
        nsec += 1000000000L;                                                                \
        sec--;                                                                              \
    }
    {
        SPLIT(n->mtime_ns, ms, mn)
        archive_entry_set_mtime(e, (time_t)ms, mn);
    }
    if (n->atime_ns) {
        SPLIT(n->atime_ns, as, an)
        archive_entry_set_atime(e, (time_t)as, an);
    }
#undef SPLIT
    if (n->type == CAIRN_T_FILE)
        archive_entry_set_size(e, (la_int64_t)n->size);
    else
        archive_entry_set_size(e, 0);
    archive_entry_set_nlink(e, n->nlink);
    if (n->type == CAIRN_T_CHR || n->type == CAIRN_T_BLK)
        archive_entry_set_rdev(e, (dev_t)n->rdev);
    if (n->type == CAIRN_T_SYMLINK && n->target)
        archive_entry_copy_symlink(e, n->target);
    for (i = 0; i < n->n_xattrs; i++)
        archive_entry_xattr_add_entry(e, n->xattrs[i].name, n->xattrs[i].value,
                                      n->xattrs[i].len);
    if (n->acl &&
        archive_entry_acl_from_text(e, n->acl, ARCHIVE_ENTRY_ACL_TYPE_POSIX1E) != ARCHIVE_OK)
        return cairn_error(err, CAIRN_WARN, "cannot parse the stored ACL '%.200s'", n->acl);
    if (n->fflags)
        archive_entry_copy_fflags_text(e, n->fflags);
    for (i = 0; i < n->n_sparse; i++)
        archive_entry_sparse_add_entry(e, (la_int64_t)n->sparse[i].off,
                                       (la_int64_t)n->sparse[i].len);
    return CAIRN_OK;
}

void cairn_mode_string(const struct cairn_node *n, char out[11])
{
    static const char tc[] = "-dlpcbs";
    uint32_t m = n->mode;
    out[0] = tc[n->type <= CAIRN_T_SOCK ? n->type : 0];
    out[1] = m & 0400 ? 'r' : '-';
    out[2] = m & 0200 ? 'w' : '-';
    out[3] = m & 04000 ? (m & 0100 ? 's' : 'S') : (m & 0100 ? 'x' : '-');
    out[4] = m & 040 ? 'r' : '-';
    out[5] = m & 020 ? 'w' : '-';
    out[6] = m & 02000 ? (m & 010 ? 's' : 'S') : (m & 010 ? 'x' : '-');
    out[7] = m & 04 ? 'r' : '-';
    out[8] = m & 02 ? 'w' : '-';
    out[9] = m & 01000 ? (m & 01 ? 't' : 'T') : (m & 01 ? 'x' : '-');
    out[10] = 0;
}
