/* tests/unit/test_mysql_pitr.c — the parsers behind backup-mysql and
 * restore-mysql (agent/mysql_backup.c, agent/mysql_restore.c): the xbstream
 * watcher finds xtrabackup_binlog_info whatever the read sizes (one byte at a
 * time included) and gives up on streams it does not understand; the
 * coordinates line; base backup manifests (complete, partial, incomplete);
 * --to-position and --to-gtid strings. */
#define _GNU_SOURCE
#include "../../agent/mysql_pitr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static void put_le(cairn_buf *b, uint64_t v, int n)
{
    int i;
    for (i = 0; i < n; i++)
        cairn_buf_putc(b, (char)(v >> (8 * i)));
}

static void chunk(cairn_buf *b, const char *path, const char *payload, char type)
{
    cairn_buf_append(b, "XBSTCK01", 8);
    cairn_buf_putc(b, 0);
    cairn_buf_putc(b, type);
    put_le(b, strlen(path), 4);
    cairn_buf_append(b, path, strlen(path));
    if (type == 'P') {
        put_le(b, strlen(payload), 8);
        put_le(b, 0, 8);
        put_le(b, 0, 4);
        cairn_buf_append(b, payload, strlen(payload));
    }
}

static void test_xbs(void)
{
    cairn_buf b = CAIRN_BUF_INIT;
    size_t step, at;
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    chunk(&b, "backup-my.cnf", "[mysqld]\n", 'P');
    chunk(&b, "backup-my.cnf", "", 'E');
    chunk(&b, "ibdata1", big, 'P');
    chunk(&b, "xtrabackup_binlog_info_not", "binlog.000009\t9\t0-1-9\n", 'P');
    chunk(&b, "xtrabackup_binlog_info", "binlog.000002\t379\t0-1-4\n", 'P');
    chunk(&b, "xtrabackup_binlog_info", "", 'E');
    chunk(&b, "xtrabackup_info", "uuid = x\n", 'P');
    for (step = 1; step < 80; step += 13) {
        cairn_my_xbs *x = cairn_my_xbs_new();
        const char *info;
        for (at = 0; at < b.len; at += step)
            cairn_my_xbs_feed(x, b.data + at, b.len - at < step ? b.len - at : step);
        info = cairn_my_xbs_binlog_info(x);
        CHECK(info && strcmp(info, "binlog.000002\t379\t0-1-4\n") == 0,
              "step %zu: binlog info '%s'", step, info ? info : "(none)");
        cairn_my_xbs_free(x);
    }
    {
        cairn_my_xbs *x = cairn_my_xbs_new();
        cairn_my_xbs_feed(x, (const uint8_t *)"not an xbstream at all, sorry", 29);
        cairn_my_xbs_feed(x, b.data, b.len);
        CHECK(cairn_my_xbs_binlog_info(x) == NULL, "a garbled stream still gave coordinates");
        cairn_my_xbs_free(x);
    }
    cairn_my_xbs_free(NULL);
    cairn_buf_free(&b);
}

static void test_info(void)
{
    char f[64], g[64];
    uint64_t pos = 0;
    CHECK(cairn_my_binlog_info_parse("binlog.000002\t379\t0-1-4\n", f, sizeof f, &pos, g,
                                     sizeof g) == 0 &&
              strcmp(f, "binlog.000002") == 0 && pos == 379 && strcmp(g, "0-1-4") == 0,
          "good line: %s %llu %s", f, (unsigned long long)pos, g);
    CHECK(cairn_my_binlog_info_parse("mysql-bin.000007\t4", f, sizeof f, &pos, g, sizeof g) ==
                  0 &&
              pos == 4 && g[0] == 0,
          "line without GTID");
    CHECK(cairn_my_binlog_info_parse("binlog.000002 379", f, sizeof f, &pos, g, sizeof g) < 0,
          "no tab accepted");
    CHECK(cairn_my_binlog_info_parse("binlog.000002\tabc", f, sizeof f, &pos, g, sizeof g) < 0,
          "no number accepted");
    CHECK(cairn_my_binlog_info_parse("\t379", f, sizeof f, &pos, g, sizeof g) < 0,
          "empty file name accepted");
    CHECK(cairn_my_binlog_info_parse("binlog.000002\t2", f, sizeof f, &pos, g, sizeof g) < 0,
          "position below 4 accepted");
}

static void test_manifest(void)
{
    struct cairn_my_basebackup bb;
    cairn_err e;
    const char *good =
        "{\"partial\": false, \"mysql\": {\"server\": \"1\", \"server_id\": 1, \"binlog_file\": "
        "\"binlog.000002\", \"binlog_pos\": 379, \"gtid\": \"0-1-4\", \"stream\": "
        "\"mariabackup.xbstream\", \"start_ns\": 10, \"stop_ns\": 20}}";
    CHECK(cairn_my_basebackup_parse(good, "abc", &bb, &e) == CAIRN_OK &&
              strcmp(bb.binlog_file, "binlog.000002") == 0 && bb.binlog_pos == 379 &&
              bb.stop_ns == 20 && strcmp(bb.server, "1") == 0,
          "good manifest: %s", e.msg);
    CHECK(cairn_my_basebackup_parse("{\"partial\": true, \"mysql\": {\"stream\": \"s\"}}", "abc",
                                    &bb, &e) == CAIRN_NOTFOUND,
          "a partial snapshot is a base backup");
    CHECK(cairn_my_basebackup_parse("{\"mysql\": {\"server\": \"1\", \"binlog_file\": \"b.1\"}}",
                                    "abc", &bb, &e) == CAIRN_NOTFOUND,
          "coordinates without a stream are a mariabackup base backup");
    CHECK(cairn_my_basebackup_parse("{\"mysql\": {\"server\": 1, \"stream\": \"s\", "
                                    "\"binlog_file\": \"b.1\", \"binlog_pos\": 1, "
                                    "\"stop_ns\": 5}}",
                                    "abc", &bb, &e) == CAIRN_CORRUPT,
          "binlog_pos 1 accepted");
    CHECK(cairn_my_basebackup_parse("not json", "abc", &bb, &e) == CAIRN_CORRUPT,
          "garbage manifest");
}

static void test_targets(void)
{
    struct cairn_my_target t;
    memset(&t, 0, sizeof t);
    CHECK(cairn_my_target_position("binlog.000042:1234", &t) == 0 &&
              strcmp(t.file, "binlog.000042") == 0 && t.pos == 1234 &&
              t.kind == CAIRN_MY_TARGET_POSITION,
          "good position");
    CHECK(cairn_my_target_position("binlog.000042", &t) < 0, "position without ':'");
    CHECK(cairn_my_target_position(":5", &t) < 0, "position without a file");
    CHECK(cairn_my_target_position("a/b.000001:5", &t) < 0, "position with a '/'");
    CHECK(cairn_my_target_position("b.000001:-5", &t) < 0, "negative position");
    CHECK(cairn_my_target_position("b.000001:2", &t) < 0, "position below 4");
    CHECK(cairn_my_target_gtid("0-1-42", &t) == 0 && t.gtid.domain == 0 && t.gtid.server == 1 &&
              t.gtid.seq == 42 && t.kind == CAIRN_MY_TARGET_GTID,
          "good GTID");
    CHECK(cairn_my_target_gtid("0-1", &t) < 0, "two-part GTID");
    CHECK(cairn_my_target_gtid("0-1-0", &t) < 0, "sequence 0");
    CHECK(cairn_my_target_gtid("0-1-4x", &t) < 0, "trailing garbage");
    CHECK(cairn_my_target_gtid("4294967296-1-4", &t) < 0, "domain over 32 bits");
}

int main(void)
{
    test_xbs();
    test_info();
    test_manifest();
    test_targets();
    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("test_mysql_pitr: all checks passed\n");
    return 0;
}
