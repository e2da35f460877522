/* tests/unit/test_restore_job.c — agent/restore_job.c: name and quantity
 * checks against the Kubernetes rules, the objects built (and refused), and
 * reading Job and pod states. */
#define _XOPEN_SOURCE 700
#include "../../agent/restore_job.h"

#include <stdio.h>
#include <string.h>

#include "check.h"

static void names(void)
{
    static const struct {
        const char *s;
        int label, subdomain;
    } t[] = {
        {"a", 1, 1},         {"app-1", 1, 1},        {"data.v2", 0, 1}, {"-a", 0, 0},
        {"a-", 0, 0},        {"A", 0, 0},            {"a_b", 0, 0},     {"", 0, 0},
        {"a..b", 0, 0},      {".a", 0, 0},           {"a.", 0, 0},      {"a.-b", 0, 0},
        {"0", 1, 1},
        {"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij123", 1, 1}, /* 63 */
        {"abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghij1234", 0, 0},
    };
    size_t i;
    for (i = 0; i < sizeof t / sizeof *t; i++) {
        CHECK(cairn_k8s_label_ok(t[i].s, 63) == t[i].label, "label '%s'", t[i].s);
        CHECK(cairn_k8s_subdomain_ok(t[i].s) == t[i].subdomain, "subdomain '%s'", t[i].s);
    }
    CHECK(!cairn_k8s_label_ok(NULL, 63) && !cairn_k8s_subdomain_ok(NULL), "NULL");
}

static void quantities(void)
{
    static const char *const good[] = {"1Gi", "10Gi", "500Mi", "1.5Ti", "100", "2G", "1k", "3E"};
    static const char *const bad[] = {"", "Gi", "1GB", "1 Gi", "-1Gi", "1gi", "1Gi ", ".", "1e3",
                                      "lots", "1.2.3Gi"};
    size_t i;
    for (i = 0; i < sizeof good / sizeof *good; i++)
        CHECK(cairn_k8s_quantity_ok(good[i]), "quantity '%s' refused", good[i]);
    for (i = 0; i < sizeof bad / sizeof *bad; i++)
        CHECK(!cairn_k8s_quantity_ok(bad[i]), "quantity '%s' accepted", bad[i]);
}

static void build(void)
{
    struct cairn_restore_job_spec s;
    json_t *job = NULL, *c;
    cairn_err err;
    char long_pvc[300];
    const char *gn;

    memset(&s, 0, sizeof s);
    s.snapshot = "abc123";
    s.ns = "shop";
    s.pvc = "db.data";
    s.image = "r.example/cairn:1";
    CHECK(cairn_restore_job_build(&s, &job, &err) == CAIRN_OK, "build: %s", err.msg);
    c = json_array_get(json_object_get(json_object_get(json_object_get(json_object_get(job,
                       "spec"), "template"), "spec"), "containers"), 0);
    CHECK(strcmp(json_string_value(json_array_get(json_object_get(c, "args"), 1)), "abc123") == 0,
          "args");
    gn = json_string_value(json_object_get(json_object_get(job, "metadata"), "generateName"));
    CHECK(gn && strcmp(gn, "cairn-restore-db-data-") == 0, "generateName '%s'", gn ? gn : "");
    CHECK(!json_object_get(json_object_get(job, "spec"), "activeDeadlineSeconds"), "no deadline");
    json_decref(job);

    /* a long PVC name: the Job name stays a valid label value (<= 63 with the suffix) */
    memset(long_pvc, 'a', 250);
    long_pvc[250] = 0;
    long_pvc[20] = '.';
    long_pvc[42] = '.'; /* the cut falls here: no "-" doubled at the end */
    long_pvc[100] = long_pvc[150] = long_pvc[200] = '.';
    s.pvc = long_pvc;
    s.deadline_s = 60;
    CHECK(cairn_restore_job_build(&s, &job, &err) == CAIRN_OK, "long: %s", err.msg);
    gn = json_string_value(json_object_get(json_object_get(job, "metadata"), "generateName"));
    CHECK(gn && strlen(gn) + 5 <= 63 && gn[strlen(gn) - 1] == '-' && gn[strlen(gn) - 2] != '-' &&
              !strchr(gn, '.') && gn[14 + 20] == '-',
          "long generateName '%s'", gn ? gn : "");
    CHECK(json_integer_value(json_object_get(json_object_get(job, "spec"),
                                             "activeDeadlineSeconds")) == 60, "deadline");
    json_decref(job);

    s.pvc = "data";
    s.snapshot = "latest";
    CHECK(cairn_restore_job_build(&s, &job, &err) == CAIRN_OK, "latest: %s", err.msg);
    json_decref(job);
    s.snapshot = "ABC";
    CHECK(cairn_restore_job_build(&s, &job, &err) == CAIRN_FAILED && !job &&
              strstr(err.msg, "'ABC'"), "bad snapshot: %s", err.msg);
    s.snapshot = "abc";
    s.ns = "Shop";
    CHECK(cairn_restore_job_build(&s, &job, &err) == CAIRN_FAILED && strstr(err.msg, "namespace"),
          "bad namespace: %s", err.msg);
    s.ns = "shop";
    s.image = "two words";
    CHECK(cairn_restore_job_build(&s, &job, &err) == CAIRN_FAILED && strstr(err.msg, "image"),
          "bad image: %s", err.msg);
    s.image = "x";
    s.repo_secret = "Bad";
    CHECK(cairn_restore_job_build(&s, &job, &err) == CAIRN_FAILED && strstr(err.msg, "Secret"),
          "bad secret: %s", err.msg);

    CHECK(cairn_restore_pvc_build("shop", "new", "1Gi", NULL, "abc", &job, &err) == CAIRN_OK,
          "pvc: %s", err.msg);
    CHECK(!json_object_get(json_object_get(job, "spec"), "storageClassName"), "no class");
    json_decref(job);
    CHECK(cairn_restore_pvc_build("shop", "new", "1GB", NULL, "abc", &job, &err) == CAIRN_FAILED &&
              strstr(err.msg, "1GB"), "bad size: %s", err.msg);
    CHECK(cairn_restore_pvc_build("shop", "new", "1Gi", "a_b", "abc", &job, &err) ==
              CAIRN_FAILED && strstr(err.msg, "storage class"), "bad class: %s", err.msg);
}

static void states(void)
{
    static const struct {
        const char *json;
        enum cairn_job_state want;
        const char *why;
    } t[] = {
        {"{}", CAIRN_JOB_RUNNING, ""},
        {"{\"status\":{\"active\":1}}", CAIRN_JOB_RUNNING, ""},
        {"{\"status\":{\"conditions\":[{\"type\":\"Complete\",\"status\":\"True\"}]}}",
         CAIRN_JOB_SUCCEEDED, ""},
        {"{\"status\":{\"conditions\":[{\"type\":\"Complete\",\"status\":\"False\"}]}}",
         CAIRN_JOB_RUNNING, ""},
        {"{\"status\":{\"conditions\":[{\"type\":\"Suspended\",\"status\":\"True\"},{\"type\":"
         "\"Failed\",\"status\":\"True\",\"reason\":\"DeadlineExceeded\",\"message\":\"Job was "
         "active longer than specified deadline\"}]}}",
         CAIRN_JOB_FAILED, "DeadlineExceeded: Job was active longer than specified deadline"},
        {"{\"status\":{\"failed\":1}}", CAIRN_JOB_FAILED, ""},
        {"{\"status\":{\"succeeded\":1}}", CAIRN_JOB_SUCCEEDED, ""},
        {"{\"status\":{\"conditions\":\"nonsense\"}}", CAIRN_JOB_RUNNING, ""},
    };
    size_t i;
    char why[256];
    for (i = 0; i < sizeof t / sizeof *t; i++) {
        json_t *j = json_loads(t[i].json, 0, NULL);
        enum cairn_job_state st = cairn_job_state(j, why, sizeof why);
        CHECK(st == t[i].want && strcmp(why, t[i].why) == 0, "job %zu: %d '%s'", i, st, why);
        json_decref(j);
    }
    {
        json_t *pod = json_loads(
            "{\"status\":{\"containerStatuses\":[{\"state\":{\"waiting\":{\"reason\":"
            "\"CreateContainerConfigError\",\"message\":\"secret \\\"x\\\" not found\"}}}]}}",
            0, NULL);
        json_t *ok = json_loads("{\"status\":{\"containerStatuses\":[{\"state\":{\"waiting\":"
                                "{\"reason\":\"ContainerCreating\"}}}]}}",
                                0, NULL);
        CHECK(cairn_job_pod_stuck(pod, why, sizeof why) == 1 &&
                  strcmp(why, "CreateContainerConfigError: secret \"x\" not found") == 0,
              "stuck: '%s'", why);
        CHECK(cairn_job_pod_stuck(ok, why, sizeof why) == 0, "ContainerCreating is not stuck");
        json_decref(pod);
        json_decref(ok);
    }
}

static void admission(void)
{
    static const struct {
        const char *json;
        enum cairn_pss_verdict want;
        const char *label;
    } ns[] = {
        {"{}", CAIRN_PSS_OK, NULL},
        {"{\"metadata\":{\"name\":\"a\"}}", CAIRN_PSS_OK, NULL},
        {"{\"metadata\":{\"labels\":{\"pod-security.kubernetes.io/enforce\":\"baseline\"}}}",
         CAIRN_PSS_OK, NULL},
        {"{\"metadata\":{\"labels\":{\"pod-security.kubernetes.io/enforce\":\"privileged\"}}}",
         CAIRN_PSS_OK, NULL},
        {"{\"metadata\":{\"labels\":{\"pod-security.kubernetes.io/enforce\":\"restricted\","
         "\"pod-security.kubernetes.io/enforce-version\":\"v1.29\"}}}",
         CAIRN_PSS_ENFORCED, "pod-security.kubernetes.io/enforce"},
        {"{\"metadata\":{\"labels\":{\"pod-security.kubernetes.io/warn\":\"restricted\","
         "\"pod-security.kubernetes.io/audit\":\"restricted\","
         "\"pod-security.kubernetes.io/enforce\":\"restricted\"}}}",
         CAIRN_PSS_ENFORCED, "pod-security.kubernetes.io/enforce"},
        {"{\"metadata\":{\"labels\":{\"pod-security.kubernetes.io/enforce\":\"baseline\","
         "\"pod-security.kubernetes.io/warn\":\"restricted\"}}}",
         CAIRN_PSS_WARN, "pod-security.kubernetes.io/warn"},
        {"{\"metadata\":{\"labels\":{\"pod-security.kubernetes.io/audit\":\"restricted\"}}}",
         CAIRN_PSS_WARN, "pod-security.kubernetes.io/audit"},
        /* not the label, not the value: exact matches only */
        {"{\"metadata\":{\"labels\":{\"pod-security.kubernetes.io/enforce-version\":"
         "\"restricted\",\"pod-security.kubernetes.io/enforce\":\"Restricted\"}}}",
         CAIRN_PSS_OK, NULL},
        {"{\"metadata\":{\"labels\":{\"pod-security.kubernetes.io/enforce\":7}}}", CAIRN_PSS_OK,
         NULL},
        {"{\"metadata\":{\"labels\":[\"pod-security.kubernetes.io/enforce\"]}}", CAIRN_PSS_OK,
         NULL},
    };
    /* core/v1 EventList: another Job's FailedCreate, ours twice (the newer
     * wins), another reason, another kind of the same name, an older Job of
     * the same name (other uid). */
    static const char events[] =
        "{\"apiVersion\":\"v1\",\"kind\":\"EventList\",\"items\":["
        "{\"involvedObject\":{\"kind\":\"Job\",\"name\":\"cairn-restore-data-old12\"},"
        "\"reason\":\"FailedCreate\",\"message\":\"other job\",\"lastTimestamp\":"
        "\"2026-11-22T03:00:09Z\"},"
        "{\"involvedObject\":{\"kind\":\"Job\",\"name\":\"cairn-restore-data-ab12c\","
        "\"uid\":\"u1\"},\"reason\":\"FailedCreate\",\"message\":\"Error creating: first\","
        "\"count\":1,\"lastTimestamp\":\"2026-11-22T03:00:01Z\"},"
        "{\"involvedObject\":{\"kind\":\"Job\",\"name\":\"cairn-restore-data-ab12c\","
        "\"uid\":\"u1\"},\"reason\":\"FailedCreate\",\"message\":\"Error creating: pods "
        "\\\"x\\\" is forbidden:\\n\\u001b[31mexceeded quota\",\"count\":4,"
        "\"lastTimestamp\":\"2026-11-22T03:00:05Z\"},"
        "{\"involvedObject\":{\"kind\":\"Job\",\"name\":\"cairn-restore-data-ab12c\"},"
        "\"reason\":\"SuccessfulCreate\",\"message\":\"Created pod\","
        "\"lastTimestamp\":\"2026-11-22T03:00:08Z\"},"
        "{\"involvedObject\":{\"kind\":\"Pod\",\"name\":\"cairn-restore-data-ab12c\"},"
        "\"reason\":\"FailedCreate\",\"message\":\"a pod\",\"lastTimestamp\":"
        "\"2026-11-22T03:00:09Z\"},"
        "{\"involvedObject\":{\"kind\":\"Job\",\"name\":\"cairn-restore-data-ab12c\","
        "\"uid\":\"u0\"},\"reason\":\"FailedCreate\",\"message\":\"older job\","
        "\"lastTimestamp\":\"2026-11-22T03:00:09Z\"},"
        "{\"involvedObject\":{\"kind\":\"Job\",\"name\":\"cairn-restore-data-zz99z\"},"
        "\"reason\":\"FailedCreate\",\"message\":\"by eventTime\",\"eventTime\":"
        "\"2026-11-22T03:00:01.000000Z\"},"
        "{\"involvedObject\":{\"kind\":\"Job\",\"name\":\"cairn-restore-data-zz99z\"},"
        "\"reason\":\"FailedCreate\",\"message\":\"by creation\",\"count\":0,"
        "\"metadata\":{\"creationTimestamp\":\"2026-11-22T03:00:00Z\"}}]}";
    size_t i;
    char why[256];
    int64_t count = 0;
    json_t *j;
    for (i = 0; i < sizeof ns / sizeof *ns; i++) {
        const char *label = "unset";
        enum cairn_pss_verdict v;
        j = json_loads(ns[i].json, 0, NULL);
        CHECK(j, "namespace %zu does not parse", i);
        v = cairn_restore_pss_check(j, &label);
        CHECK(v == ns[i].want && (ns[i].label ? label && strcmp(label, ns[i].label) == 0 : !label),
              "namespace %zu: %d '%s'", i, v, label ? label : "(null)");
        json_decref(j);
    }
    CHECK(cairn_restore_pss_check(NULL, NULL) == CAIRN_PSS_OK, "NULL namespace");

    j = json_loads(events, 0, NULL);
    CHECK(j, "events do not parse");
    CHECK(cairn_job_failed_create(j, "cairn-restore-data-ab12c", "u1", why, sizeof why, &count) ==
                  1 &&
              strcmp(why, "Error creating: pods \"x\" is forbidden:  [31mexceeded quota") == 0 &&
              count == 4,
          "failed create: '%s' %lld", why, (long long)count);
    /* no uid known: the older Job's event (same name, newest) counts too */
    CHECK(cairn_job_failed_create(j, "cairn-restore-data-ab12c", NULL, why, sizeof why, NULL) ==
                  1 && strcmp(why, "older job") == 0,
          "no uid: '%s'", why);
    CHECK(cairn_job_failed_create(j, "cairn-restore-data-zz99z", "u9", why, sizeof why, &count) ==
                  1 && strcmp(why, "by eventTime") == 0 && count == 1,
          "eventTime: '%s' %lld", why, (long long)count);
    CHECK(cairn_job_failed_create(j, "cairn-restore-data-nope1", "u1", why, sizeof why, &count) ==
              0,
          "another Job's event counted");
    CHECK(cairn_job_failed_create(j, "cairn-restore-data-ab12", "u1", why, sizeof why, &count) ==
              0,
          "a name prefix counted");
    CHECK(cairn_job_failed_create(j, "cairn-restore-data-ab12c", "u1", why, 8, NULL) == 1 &&
              strcmp(why, "Error c") == 0,
          "cut: '%s'", why);
    json_decref(j);
    j = json_loads("{\"items\":{}}", 0, NULL);
    CHECK(cairn_job_failed_create(j, "x", NULL, why, sizeof why, NULL) == 0, "items not a list");
    json_decref(j);
    CHECK(cairn_job_failed_create(NULL, "x", NULL, why, sizeof why, NULL) == 0, "NULL list");
}

int main(void)
{
    names();
    quantities();
    build();
    states();
    admission();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("test_restore_job: ok\n");
    return 0;
}
