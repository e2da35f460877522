/* engine/tree.h — directory listings (tree objects) and their entries.
 *
 * One tree per directory: its entries sorted by name (bytewise), each with full
 * metadata. A directory entry points at its own tree by id (trees are blobs in
 * packs, so an unchanged directory dedups). Encoded as JSON (docs/repository-format.md).
 *
 * Ownership: a cairn_tree owns its nodes and every string/array in them;
 * cairn_tree_free() releases all. cairn_node_free() frees one node's members.
 * Threading: no shared state. */
#ifndef CAIRN_TREE_H
#define CAIRN_TREE_H

#include "util.h"

struct archive_entry;

enum cairn_ftype {
    CAIRN_T_FILE = 0,
    CAIRN_T_DIR,
    CAIRN_T_SYMLINK,
    CAIRN_T_FIFO,
    CAIRN_T_CHR,
    CAIRN_T_BLK,
    CAIRN_T_SOCK
};

struct cairn_xattr {
    char *name;
    uint8_t *value;
    size_t len;
};

struct cairn_extent {
    uint64_t off, len;
};

struct cairn_node {
    char *name;             /* one path component, any bytes but '/' and NUL */
    enum cairn_ftype type;
    uint32_t mode;          /* permission bits, 07777 */
    uint32_t uid, gid;
    char *user, *group;     /* names, or NULL */
    int64_t mtime_ns, atime_ns, ctime_ns;
    uint64_t size;          /* logical size for files (holes included) */
    uint64_t dev, ino;      /* for the parent-snapshot stat match */
    uint32_t nlink;
    uint64_t rdev;          /* device nodes */
    char *target;           /* symlink target */
    char *hardlink;         /* snapshot-relative path of the first link; no content here */
    struct cairn_xattr *xattrs;
    size_t n_xattrs;
    char *acl;              /* POSIX.1e ACL text (access and default:), or NULL */
    char *fflags;           /* file flags text, or NULL */
    /* Data extents when the file is sparse (NULL = one extent 0..size). The
     * content stored is the extents' bytes concatenated, in order. */
    struct cairn_extent *sparse;
    size_t n_sparse;
    cairn_id *chunks;       /* content, in order */
    size_t n_chunks;
    cairn_id subtree;       /* directories */
};

struct cairn_tree {
    struct cairn_node *nodes;
    size_t n, cap;
};

/* Caps on what a decoded tree may declare, checked before allocation. */
#define CAIRN_TREE_MAX_BYTES (256u << 20)
#define CAIRN_TREE_MAX_NAME 4096
#define CAIRN_NODE_MAX_XATTRS 4096

int cairn_tree_encode(const struct cairn_tree *t, cairn_buf *out);
int cairn_tree_decode(const uint8_t *data, size_t len, struct cairn_tree *t, cairn_err *err);
/* Appends a node (takes ownership of its members; *n is zeroed). */
int cairn_tree_add(struct cairn_tree *t, struct cairn_node *n);
void cairn_tree_sort(struct cairn_tree *t);
/* Binary search by name in a sorted tree; NULL if absent. */
const struct cairn_node *cairn_tree_find(const struct cairn_tree *t, const char *name);
void cairn_tree_free(struct cairn_tree *t);
void cairn_node_free(struct cairn_node *n);
int cairn_node_copy(struct cairn_node *dst, const struct cairn_node *src);

/* Conversions with libarchive entries (metadata only, not content). The entry's
 * pathname is left to the caller. from_entry takes type, mode, owner, times,
 * size, dev/ino/nlink, rdev, symlink, xattrs, ACLs, fflags and the sparse map. */
int cairn_node_from_entry(struct cairn_node *n, struct archive_entry *e, cairn_err *err);
/* Fills e (already archive_entry_clear()'ed) from n: everything above. For a
 * hardlink node the caller sets archive_entry_set_hardlink() itself. */
int cairn_node_to_entry(const struct cairn_node *n, struct archive_entry *e, cairn_err *err);

const char *cairn_ftype_name(enum cairn_ftype t);
/* ls-style mode string, e.g. "drwxr-xr-x", into out[11]. */
void cairn_mode_string(const struct cairn_node *n, char out[11]);

#endif
