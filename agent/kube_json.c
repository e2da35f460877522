/* agent/kube_json.c — kubeconfig text into jansson: JSON, or the YAML subset
 * `kubectl config view --raw` writes (agent/kube.h):
 *   block mappings "key: value", block sequences "- item" (also at the same
 *   indentation as their key, as kubectl writes them), sequence items that
 *   start a mapping inline ("- name: x"), plain, 'single' and "double"
 *   quoted scalars, comments, "{}" and "[]" as empty collections, "---".
 * Refused with a message naming the line: tabs in indentation, flow
 * collections with content, block scalars (| >), anchors and aliases.
 * Every scalar becomes a JSON string except null and ~ (null). */
#define _GNU_SOURCE
#include "kube.h"

#include <stdlib.h>
#include <string.h>

#define YAML_MAX_LINES 100000
#define YAML_MAX_DEPTH 64

struct yline {
    int indent;
    char *s;     /* content after the indentation, comment and trailing blanks removed */
    int no;      /* 1-based line number */
};

struct yparser {
    struct yline *l;
    size_t n, i;
    int depth;
    cairn_err *err;
    int rc;
};

static int yfail(struct yparser *p, int line, const char *what)
{
    if (p->rc == CAIRN_OK)
        p->rc = cairn_error(p->err, CAIRN_FAILED, "line %d: %s", line, what);
    return p->rc;
}

/* Removes a " #" comment outside quotes and trailing blanks, in place. */
static void strip_comment(char *s)
{
    char q = 0;
    size_t i, n;
    for (i = 0; s[i]; i++) {
        char c = s[i];
        if (q) {
            if (c == q)
                q = 0;
            else if (c == '\\' && q == '"' && s[i + 1])
                i++;
        } else if (c == '"' || c == '\'') {
            if (i == 0 || s[i - 1] == ' ' || s[i - 1] == ':' || s[i - 1] == '-')
                q = c;
        } else if (c == '#' && (i == 0 || s[i - 1] == ' ')) {
            s[i] = 0;
            break;
        }
    }
    n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = 0;
}

static int is_dash(const char *s)
{
    return s[0] == '-' && (s[1] == 0 || s[1] == ' ');
}

/* A scalar into JSON. */
static json_t *scalar(struct yparser *p, int line, const char *s)
{
    size_t n = strlen(s);
    if (s[0] == '"') {
        cairn_buf b = CAIRN_BUF_INIT;
        json_t *j;
        size_t i;
        for (i = 1; i < n && s[i] != '"'; i++) {
            char c = s[i];
            if (c == '\\' && i + 1 < n) {
                c = s[++i];
                c = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : c;
            }
            cairn_buf_putc(&b, c);
        }
        if (i >= n || i + 1 != n) {
            cairn_buf_free(&b);
            yfail(p, line, "unterminated or trailing text after a \"quoted\" scalar");
            return NULL;
        }
        j = json_stringn(b.data ? (const char *)b.data : "", b.len);
        cairn_buf_free(&b);
        if (!j)
            yfail(p, line, "scalar is not valid UTF-8");
        return j;
    }
    if (s[0] == '\'') {
        cairn_buf b = CAIRN_BUF_INIT;
        json_t *j;
        size_t i;
        for (i = 1; i < n; i++) {
            if (s[i] == '\'') {
                if (i + 1 < n && s[i + 1] == '\'') {
                    cairn_buf_putc(&b, '\'');
                    i++;
                    continue;
                }
                break;
            }
            cairn_buf_putc(&b, s[i]);
        }
        if (i >= n || i + 1 != n) {
            cairn_buf_free(&b);
            yfail(p, line, "unterminated or trailing text after a 'quoted' scalar");
            return NULL;
        }
        j = json_stringn(b.data ? (const char *)b.data : "", b.len);
        cairn_buf_free(&b);
        if (!j)
            yfail(p, line, "scalar is not valid UTF-8");
        return j;
    }
    if (strcmp(s, "{}") == 0)
        return json_object();
    if (strcmp(s, "[]") == 0)
        return json_array();
    if (s[0] == '{' || s[0] == '[') {
        yfail(p, line, "flow collections ({...}, [...]) are not supported: use JSON or "
                       "block style (kubectl config view --raw)");
        return NULL;
    }
    if (s[0] == '|' || s[0] == '>') {
        yfail(p, line, "block scalars (| and >) are not supported");
        return NULL;
    }
    if (s[0] == '&' || s[0] == '*' || s[0] == '!') {
        yfail(p, line, "anchors, aliases and tags are not supported");
        return NULL;
    }
    if (strcmp(s, "null") == 0 || strcmp(s, "~") == 0 || n == 0)
        return json_null();
    {
        json_t *j = json_string(s);
        if (!j)
            yfail(p, line, "scalar is not valid UTF-8");
        return j;
    }
}

/* Splits "key: value" / "key:" in place. Returns 0 when s is not a pair. */
static int split_pair(char *s, char **key, char **val)
{
    char q = 0;
    size_t i;
    if (s[0] == '"' || s[0] == '\'') {
        q = s[0];
        for (i = 1; s[i] && s[i] != q; i++)
            if (q == '"' && s[i] == '\\' && s[i + 1])
                i++;
        if (!s[i])
            return 0;
        i++;
    } else {
        i = 0;
    }
    for (; s[i]; i++) {
        if (s[i] == ':' && (s[i + 1] == 0 || s[i + 1] == ' ')) {
            s[i] = 0;
            *key = s;
            *val = s + i + 1;
            while (**val == ' ')
                (*val)++;
            return 1;
        }
    }
    return 0;
}

static json_t *parse_block(struct yparser *p, int min_indent);

static json_t *parse_seq(struct yparser *p, int ind)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    while (p->rc == CAIRN_OK && p->i < p->n && p->l[p->i].indent == ind &&
           is_dash(p->l[p->i].s)) {
        struct yline *L = &p->l[p->i];
        char *rest = L->s + 1;
        int k = 1;
        json_t *child;
        while (*rest == ' ') {
            rest++;
            k++;
        }
        if (*rest == 0) {
            p->i++;
            if (p->i < p->n && p->l[p->i].indent > ind)
                child = parse_block(p, ind + 1);
            else
                child = json_null();
        } else {
            L->indent = ind + k; /* the item's content, re-read as a node */
            L->s = rest;
            child = parse_block(p, L->indent);
        }
        if (!child || json_array_append_new(arr, child) != 0)
            break;
    }
    if (p->rc != CAIRN_OK) {
        json_decref(arr);
        return NULL;
    }
    return arr;
}

static json_t *parse_map(struct yparser *p, int ind)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    while (p->rc == CAIRN_OK && p->i < p->n && p->l[p->i].indent >= ind) {
        struct yline *L = &p->l[p->i];
        char *key, *val;
        json_t *k, *child;
        if (L->indent > ind) {
            yfail(p, L->no, "unexpected indentation");
            break;
        }
        if (is_dash(L->s))
            break;
        if (!split_pair(L->s, &key, &val)) {
            yfail(p, L->no, "expected 'key: value'");
            break;
        }
        if (!(k = scalar(p, L->no, key)) || !json_is_string(k)) {
            json_decref(k);
            yfail(p, L->no, "a key must be a scalar");
            break;
        }
        p->i++;
        if (*val == 0) {
            if (p->i < p->n && (p->l[p->i].indent > ind ||
                                (p->l[p->i].indent == ind && is_dash(p->l[p->i].s))))
                child = parse_block(p, p->l[p->i].indent);
            else
                child = json_null();
        } else {
            child = scalar(p, L->no, val);
        }
        if (!child) {
            json_decref(k);
            break;
        }
        json_object_set_new(obj, json_string_value(k), child);
        json_decref(k);
    }
    if (p->rc != CAIRN_OK) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

static json_t *parse_block(struct yparser *p, int min_indent)
{
    struct yline *L;
    json_t *r;
    char *key, *val, *copy;
    if (p->i >= p->n || p->l[p->i].indent < min_indent)
        return json_null();
    if (++p->depth > YAML_MAX_DEPTH) {
        yfail(p, p->l[p->i].no, "nested too deeply");
        return NULL;
    }
    L = &p->l[p->i];
    if (is_dash(L->s)) {
        r = parse_seq(p, L->indent);
    } else if ((copy = strdup(L->s)) && split_pair(copy, &key, &val)) {
        free(copy);
        r = parse_map(p, L->indent);
    } else {
        free(copy);
        p->i++;
        r = scalar(p, L->no, L->s);
    }
    p->depth--;
    return r;
}

int cairn_kube_parse_config_text(const char *text, size_t len, json_t **out, cairn_err *err)
{
    struct yparser p;
    char *buf, *s, *e;
    size_t cap = 64, i = 0;
    int no = 0;

    *out = NULL;
    while (i < len && (text[i] == ' ' || text[i] == '\n' || text[i] == '\r' || text[i] == '\t'))
        i++;
    if (i < len && text[i] == '{') {
        json_error_t je;
        *out = json_loadb(text, len, 0, &je);
        if (!*out)
            return cairn_error(err, CAIRN_FAILED, "line %d: %s", je.line, je.text);
        return CAIRN_OK;
    }
    memset(&p, 0, sizeof p);
    p.err = err;
    if (!(buf = strndup(text, len)) || !(p.l = malloc(cap * sizeof *p.l))) {
        free(buf);
        return cairn_error(err, CAIRN_FATAL, "out of memory");
    }
    for (s = buf; s && *s; s = e) {
        int ind = 0;
        e = strchr(s, '\n');
        if (e)
            *e++ = 0;
        no++;
        while (s[ind] == ' ')
            ind++;
        if (s[ind] == '\t') {
            free(buf);
            free(p.l);
            return cairn_error(err, CAIRN_FAILED, "line %d: tab in indentation", no);
        }
        strip_comment(s + ind);
        if (s[ind] == 0 || strcmp(s + ind, "---") == 0 || strcmp(s + ind, "...") == 0)
            continue;
        if (p.n == cap) {
            struct yline *nl;
            if (cap >= YAML_MAX_LINES || !(nl = realloc(p.l, 2 * cap * sizeof *p.l))) {
                free(buf);
                free(p.l);
                return cairn_error(err, CAIRN_FAILED, "too many lines");
            }
            p.l = nl;
            cap *= 2;
        }
        p.l[p.n].indent = ind;
        p.l[p.n].s = s + ind;
        p.l[p.n].no = no;
        p.n++;
    }
    *out = parse_block(&p, 0);
    if (p.rc == CAIRN_OK && p.i < p.n)
        yfail(&p, p.l[p.i].no, "unexpected indentation");
    if (p.rc == CAIRN_OK && !json_is_object(*out))
        yfail(&p, 1, "the document is not a mapping");
    free(buf);
    free(p.l);
    if (p.rc != CAIRN_OK) {
        json_decref(*out);
        *out = NULL;
        return p.rc;
    }
    return CAIRN_OK;
}
