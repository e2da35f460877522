/* engine/archive_dl.h — libarchive, loaded at run time (engine/dl.h) only by
 * what reads or writes file metadata and archives: backup of files and
 * directories (engine/backup.c: ACLs, xattrs, file flags, sparse maps),
 * restore (restore/restore.c), dump as tar/pax/zip (restore/dump.c), and the
 * node/entry conversions of engine/tree.c that those use. wal-push,
 * wal-fetch and every other command start without libarchive and what it
 * pulls in (libxml2, ICU, libstdc++, nettle, lz4, lzma, bz2 ...): resolving
 * their symbols was most of a wal-fetch spool hit's start-up time.
 *
 * Include this header instead of <archive.h> and <archive_entry.h> (it
 * includes both: their types, constants and macros are used as they are). It
 * maps the archive_* functions we call onto the table cairn_archive, so call
 * sites read as plain libarchive: archive_entry_new() calls
 * cairn_archive.entry_new().
 *
 * cairn_archive_load() must succeed before the first archive_* call. The
 * public entry points that use libarchive load it themselves, before they
 * change anything: cairn_backup_run() (path backups; a stream backup does not
 * need it), cairn_restore(), cairn_pg_restore() (before it creates any
 * directory) and cairn_dump(). It loads libarchive.so.13 once
 * per process (thread-safe; any thread may call it any number of times,
 * later calls only take a mutex). The table is owned here, filled once and
 * never freed; libarchive stays loaded until exit.
 *
 * Test only: CAIRN_TEST_ARCHIVE_SONAME=<name> loads that library instead of
 * libarchive.so.13 (tests use a name that does not exist, to see the error). */
#ifndef CAIRN_ARCHIVE_DL_H
#define CAIRN_ARCHIVE_DL_H

#include <archive.h>
#include <archive_entry.h>

#include "util.h"

/* Every libarchive function Cairn calls, without the "archive_" prefix; and
 * archive_errno, whose field is errno_ (errno is a macro of <errno.h>). */
#define CAIRN_ARCHIVE_FUNCS(X)                                                                \
    X(entry_acl_count) X(entry_acl_from_text) X(entry_acl_to_text) X(entry_clear)             \
    X(entry_copy_fflags_text) X(entry_copy_gname) X(entry_copy_hardlink)                      \
    X(entry_copy_pathname) X(entry_copy_sourcepath) X(entry_copy_symlink)                     \
    X(entry_copy_uname) X(entry_ctime) X(entry_ctime_nsec) X(entry_dev) X(entry_fflags_text)  \
    X(entry_filetype) X(entry_free) X(entry_gid) X(entry_gname) X(entry_hardlink)             \
    X(entry_ino64) X(entry_mtime) X(entry_mtime_nsec) X(entry_new) X(entry_nlink)             \
    X(entry_pathname) X(entry_perm) X(entry_rdev) X(entry_set_atime) X(entry_set_filetype)    \
    X(entry_set_gid) X(entry_set_hardlink) X(entry_set_mtime) X(entry_set_nlink)              \
    X(entry_set_perm) X(entry_set_rdev) X(entry_set_size) X(entry_set_uid) X(entry_size)      \
    X(entry_sparse_add_entry) X(entry_sparse_clear) X(entry_sparse_next)                      \
    X(entry_sparse_reset) X(entry_symlink) X(entry_uid) X(entry_uname)                        \
    X(entry_xattr_add_entry) X(entry_xattr_next) X(entry_xattr_reset)                         \
    X(error_string) X(read_data) X(read_data_block) X(read_disk_entry_from_file)              \
    X(read_disk_new) X(read_disk_set_behavior) X(read_disk_set_standard_lookup) X(read_free)  \
    X(read_new) X(read_next_header) X(read_open_filename) X(read_support_format_all)          \
    X(write_close) X(write_data) X(write_data_block) X(write_disk_gid) X(write_disk_new)      \
    X(write_disk_set_options) X(write_disk_set_standard_lookup) X(write_disk_uid)             \
    X(write_finish_entry) X(write_free) X(write_header) X(write_new) X(write_open_fd)         \
    X(write_set_format_gnutar) X(write_set_format_pax) X(write_set_format_zip)

struct cairn_archive_api {
#define CAIRN_ARCHIVE_FIELD(name) __typeof__(archive_##name) *name;
    CAIRN_ARCHIVE_FUNCS(CAIRN_ARCHIVE_FIELD)
#undef CAIRN_ARCHIVE_FIELD
    __typeof__(archive_errno) *errno_;
};

/* Filled by the first successful cairn_archive_load(); all NULL before. */
extern struct cairn_archive_api cairn_archive;

/* Loads libarchive, once. CAIRN_OK, or CAIRN_FATAL with "cannot load
 * libarchive.so.13 (needed for backing up, restoring and dumping files): ...;
 * install the libarchive13 package" (the same error on every later call). */
int cairn_archive_load(cairn_err *err);

#define archive_entry_acl_count cairn_archive.entry_acl_count
#define archive_entry_acl_from_text cairn_archive.entry_acl_from_text
#define archive_entry_acl_to_text cairn_archive.entry_acl_to_text
#define archive_entry_clear cairn_archive.entry_clear
#define archive_entry_copy_fflags_text cairn_archive.entry_copy_fflags_text
#define archive_entry_copy_gname cairn_archive.entry_copy_gname
#define archive_entry_copy_hardlink cairn_archive.entry_copy_hardlink
#define archive_entry_copy_pathname cairn_archive.entry_copy_pathname
#define archive_entry_copy_sourcepath cairn_archive.entry_copy_sourcepath
#define archive_entry_copy_symlink cairn_archive.entry_copy_symlink
#define archive_entry_copy_uname cairn_archive.entry_copy_uname
#define archive_entry_ctime cairn_archive.entry_ctime
#define archive_entry_ctime_nsec cairn_archive.entry_ctime_nsec
#define archive_entry_dev cairn_archive.entry_dev
#define archive_entry_fflags_text cairn_archive.entry_fflags_text
#define archive_entry_filetype cairn_archive.entry_filetype
#define archive_entry_free cairn_archive.entry_free
#define archive_entry_gid cairn_archive.entry_gid
#define archive_entry_gname cairn_archive.entry_gname
#define archive_entry_hardlink cairn_archive.entry_hardlink
#define archive_entry_ino64 cairn_archive.entry_ino64
#define archive_entry_mtime cairn_archive.entry_mtime
#define archive_entry_mtime_nsec cairn_archive.entry_mtime_nsec
#define archive_entry_new cairn_archive.entry_new
#define archive_entry_nlink cairn_archive.entry_nlink
#define archive_entry_pathname cairn_archive.entry_pathname
#define archive_entry_perm cairn_archive.entry_perm
#define archive_entry_rdev cairn_archive.entry_rdev
#define archive_entry_set_atime cairn_archive.entry_set_atime
#define archive_entry_set_filetype cairn_archive.entry_set_filetype
#define archive_entry_set_gid cairn_archive.entry_set_gid
#define archive_entry_set_hardlink cairn_archive.entry_set_hardlink
#define archive_entry_set_mtime cairn_archive.entry_set_mtime
#define archive_entry_set_nlink cairn_archive.entry_set_nlink
#define archive_entry_set_perm cairn_archive.entry_set_perm
#define archive_entry_set_rdev cairn_archive.entry_set_rdev
#define archive_entry_set_size cairn_archive.entry_set_size
#define archive_entry_set_uid cairn_archive.entry_set_uid
#define archive_entry_size cairn_archive.entry_size
#define archive_entry_sparse_add_entry cairn_archive.entry_sparse_add_entry
#define archive_entry_sparse_clear cairn_archive.entry_sparse_clear
#define archive_entry_sparse_next cairn_archive.entry_sparse_next
#define archive_entry_sparse_reset cairn_archive.entry_sparse_reset
#define archive_entry_symlink cairn_archive.entry_symlink
#define archive_entry_uid cairn_archive.entry_uid
#define archive_entry_uname cairn_archive.entry_uname
#define archive_entry_xattr_add_entry cairn_archive.entry_xattr_add_entry
#define archive_entry_xattr_next cairn_archive.entry_xattr_next
#define archive_entry_xattr_reset cairn_archive.entry_xattr_reset
#define archive_errno cairn_archive.errno_
#define archive_error_string cairn_archive.error_string
#define archive_read_data cairn_archive.read_data
#define archive_read_data_block cairn_archive.read_data_block
#define archive_read_disk_entry_from_file cairn_archive.read_disk_entry_from_file
#define archive_read_disk_new cairn_archive.read_disk_new
#define archive_read_disk_set_behavior cairn_archive.read_disk_set_behavior
#define archive_read_disk_set_standard_lookup cairn_archive.read_disk_set_standard_lookup
#define archive_read_free cairn_archive.read_free
#define archive_read_new cairn_archive.read_new
#define archive_read_next_header cairn_archive.read_next_header
#define archive_read_open_filename cairn_archive.read_open_filename
#define archive_read_support_format_all cairn_archive.read_support_format_all
#define archive_write_close cairn_archive.write_close
#define archive_write_data cairn_archive.write_data
#define archive_write_data_block cairn_archive.write_data_block
#define archive_write_disk_gid cairn_archive.write_disk_gid
#define archive_write_disk_new cairn_archive.write_disk_new
#define archive_write_disk_set_options cairn_archive.write_disk_set_options
#define archive_write_disk_set_standard_lookup cairn_archive.write_disk_set_standard_lookup
#define archive_write_disk_uid cairn_archive.write_disk_uid
#define archive_write_finish_entry cairn_archive.write_finish_entry
#define archive_write_free cairn_archive.write_free
#define archive_write_header cairn_archive.write_header
#define archive_write_new cairn_archive.write_new
#define archive_write_open_fd cairn_archive.write_open_fd
#define archive_write_set_format_gnutar cairn_archive.write_set_format_gnutar
#define archive_write_set_format_pax cairn_archive.write_set_format_pax
#define archive_write_set_format_zip cairn_archive.write_set_format_zip

#endif
