/* tests/unit/test_csi_copy.c — agent/csi_copy.c: the data mover's names,
 * its temporary PVC and Job as built, and what they refuse. The run against
 * an API server is tests/e2e/agent_csi_copy.sh. */
#define _XOPEN_SOURCE 700
#include "../../agent/csi_copy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/restore_job.h"
#include "check.h"

#define TOKEN "0123456789abcdef"

static void names(void)
{
    char out[64], pvc[300];
    cairn_copy_name("data", TOKEN, out);
    CHECK(strcmp(out, "cairn-copy-data-01234567") == 0, "name %s", out);
    cairn_copy_name("db.data-v2", TOKEN, out);
    CHECK(strcmp(out, "cairn-copy-db-data-v2-01234567") == 0, "dots: %s", out);
    /* a 253-character PVC name: cut to a 63-character label */
    memset(pvc, 'a', 253);
    pvc[253] = 0;
    pvc[40] = '.';
    pvc[43] = '-'; /* the cut falls after a '-': no "--" */
    cairn_copy_name(pvc, TOKEN, out);
    CHECK(strlen(out) <= 63 && cairn_k8s_label_ok(out, 63), "long: %s (%zu)", out, strlen(out));
    CHECK(strstr(out, "--") == NULL && strcmp(out + strlen(out) - 9, "-01234567") == 0,
          "long ends with the token: %s", out);
}

static void spec_init(struct cairn_copy_spec *s, json_t *modes, json_t *meta)
{
    memset(s, 0, sizeof *s);
    s->ns = "shop";
    s->pvc = "data";
    s->node = "node-1";
    s->name = "cairn-copy-data-01234567";
    s->token = TOKEN;
    s->volume_snapshot = "cairn-data-20261122010203";
    s->mode = CAIRN_CSI_COPY_ON;
    s->storage_class = "fast";
    s->access_modes = modes;
    s->size = "10Gi";
    s->image = "r.example/cairn:1";
    s->source = "k8s:shop/data";
    s->consistency = "app";
    s->meta = meta;
}

static const char *jstr_path(const json_t *o, const char *a, const char *b, const char *c)
{
    return json_string_value(json_object_get(json_object_get(json_object_get(o, a), b), c));
}

static void pvc(void)
{
    json_t *modes = json_pack("[s]", "ReadWriteOnce"), *meta = json_object(), *p = NULL;
    json_t *bad_modes = json_pack("[s]", "ReadWriteSometimes");
    struct cairn_copy_spec s;
    cairn_err err;

    spec_init(&s, modes, meta);
    CHECK(cairn_copy_pvc_build(&s, &p, &err) == CAIRN_OK, "pvc: %s", err.msg);
    CHECK(strcmp(jstr_path(p, "spec", "dataSource", "kind"), "VolumeSnapshot") == 0 &&
              strcmp(jstr_path(p, "spec", "dataSource", "apiGroup"),
                     "snapshot.storage.k8s.io") == 0 &&
              strcmp(jstr_path(p, "spec", "dataSource", "name"), s.volume_snapshot) == 0,
          "dataSource");
    CHECK(strcmp(json_string_value(json_object_get(
                     json_object_get(json_object_get(json_object_get(p, "spec"), "resources"),
                                     "requests"),
                     "storage")),
                 "10Gi") == 0,
          "size");
    CHECK(strcmp(jstr_path(p, "metadata", "labels", "app.kubernetes.io/managed-by"), "cairn") ==
                  0 &&
              strcmp(jstr_path(p, "metadata", "labels", "cairn.io/copy-job"), s.name) == 0 &&
              strcmp(jstr_path(p, "metadata", "annotations", "cairn.io/node"), "node-1") == 0 &&
              strcmp(jstr_path(p, "metadata", "annotations", "cairn.io/csi-copy"), "true") == 0,
          "labels and annotations");
    CHECK(!json_object_get(json_object_get(p, "metadata"), "ownerReferences"), "no owner");
    json_decref(p);

    s.storage_class = NULL;
    CHECK(cairn_copy_pvc_build(&s, &p, &err) == CAIRN_OK &&
              !json_object_get(json_object_get(p, "spec"), "storageClassName"),
          "no class: none sent");
    json_decref(p);

    s.size = "lots";
    CHECK(cairn_copy_pvc_build(&s, &p, &err) == CAIRN_FAILED && !p &&
              strstr(err.msg, "size 'lots'"),
          "bad size: %s", err.msg);
    s.size = "1Gi";
    s.access_modes = bad_modes;
    CHECK(cairn_copy_pvc_build(&s, &p, &err) == CAIRN_FAILED && strstr(err.msg, "access mode"),
          "bad access mode: %s", err.msg);
    s.access_modes = modes;
    s.ns = "Shop";
    CHECK(cairn_copy_pvc_build(&s, &p, &err) == CAIRN_FAILED && strstr(err.msg, "namespace"),
          "bad namespace: %s", err.msg);
    s.ns = "shop";
    s.token = "short";
    CHECK(cairn_copy_pvc_build(&s, &p, &err) == CAIRN_FAILED, "bad token");
    json_decref(modes);
    json_decref(bad_modes);
    json_decref(meta);
}

static void job(void)
{
    static const char *const x[] = {"pg_wal/*", "*.tmp"};
    json_t *modes = json_pack("[s]", "ReadWriteOnce");
    json_t *meta = json_pack("{s:{s:s}}", "kubernetes", "pvc", "data"), *j = NULL, *c, *args;
    struct cairn_copy_spec s;
    cairn_err err;
    char *txt;
    json_t *got;

    spec_init(&s, modes, meta);
    s.subdir = "pgdata";
    s.excludes = x;
    s.n_excludes = 2;
    s.mode = CAIRN_CSI_COPY_KEEP;
    s.deadline_s = 3600;
    REQUIRE(cairn_copy_job_build(&s, &j, &err) == CAIRN_OK, "job: %s", err.msg);
    c = json_array_get(json_object_get(json_object_get(json_object_get(json_object_get(j,
                       "spec"), "template"), "spec"), "containers"), 0);
    args = json_object_get(c, "args");
    txt = json_dumps(args, JSON_COMPACT);
    CHECK(txt && strcmp(txt, "[\"backup\",\"/source/pgdata\",\"--source\",\"k8s:shop/data\","
                             "\"--consistency\",\"app\",\"--ignore-device\",\"--workers\","
                             "\"2\",\"--meta\",\"{\\\"kubernetes\\\":{\\\"pvc\\\":\\\"data\\\"}}\","
                             "\"--exclude\",\"pg_wal/*\",\"--exclude\",\"*.tmp\"]") == 0,
          "args: %s", txt ? txt : "(null)");
    free(txt);
    got = json_loads(json_string_value(json_array_get(args, 10)), 0, NULL);
    CHECK(got && json_equal(got, meta), "--meta round-trips");
    json_decref(got);
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(j, "metadata"), "name")),
                 s.name) == 0 &&
              !json_object_get(json_object_get(j, "metadata"), "generateName"),
          "a fixed name");
    CHECK(strcmp(jstr_path(j, "metadata", "annotations", "cairn.io/csi-copy"), "keep") == 0,
          "keep annotation");
    CHECK(json_integer_value(json_object_get(json_object_get(j, "spec"),
                                             "activeDeadlineSeconds")) == 3600,
          "deadline");
    json_decref(j);

    s.subdir = "../etc";
    CHECK(cairn_copy_job_build(&s, &j, &err) == CAIRN_FAILED && !j, "subdir with '/'");
    s.subdir = "..";
    CHECK(cairn_copy_job_build(&s, &j, &err) == CAIRN_FAILED && !j, "subdir '..'");
    s.subdir = "";
    s.image = "bad image";
    CHECK(cairn_copy_job_build(&s, &j, &err) == CAIRN_FAILED && strstr(err.msg, "image"),
          "bad image: %s", err.msg);
    json_decref(modes);
    json_decref(meta);
}

static void config(void)
{
    struct cairn_copy_config c;
    cairn_err err;
    unsetenv("CAIRN_COPY_IMAGE");
    unsetenv("CAIRN_COPY_SECRET");
    unsetenv("CAIRN_COPY_CONFIGMAP");
    unsetenv("CAIRN_COPY_TIMEOUT");
    CHECK(cairn_copy_config_from_env(&c, &err) == CAIRN_OK && c.timeout_s == 6 * 3600 &&
              strcmp(c.secret, "cairn-repository") == 0 &&
              strcmp(c.config_map, "cairn-agent-config") == 0 && !c.image[0],
          "defaults");
    setenv("CAIRN_COPY_TIMEOUT", "90m", 1);
    CHECK(cairn_copy_config_from_env(&c, &err) == CAIRN_OK && c.timeout_s == 5400, "90m");
    setenv("CAIRN_COPY_TIMEOUT", "soon", 1);
    CHECK(cairn_copy_config_from_env(&c, &err) == CAIRN_FAILED &&
              strstr(err.msg, "CAIRN_COPY_TIMEOUT"),
          "bad timeout: %s", err.msg);
    unsetenv("CAIRN_COPY_TIMEOUT");
    setenv("CAIRN_COPY_SECRET", "Bad_Secret", 1);
    CHECK(cairn_copy_config_from_env(&c, &err) == CAIRN_FAILED &&
              strstr(err.msg, "CAIRN_COPY_SECRET"),
          "bad secret: %s", err.msg);
    unsetenv("CAIRN_COPY_SECRET");
}

int main(void)
{
    names();
    pvc();
    job();
    config();
    if (failures)
        return 1;
    printf("test_csi_copy: ok\n");
    return 0;
}
