/* agent/kube.h — a small Kubernetes API client over libcurl: configuration
 * (in-cluster ServiceAccount or a kubeconfig), bounded JSON requests, the
 * list+watch loop for the pods of one node (re-list on 410 Gone, backoff with
 * jitter), PVCs and PVs, merge-patches of PVC annotations and core/v1 Events.
 * See docs/agent.md.
 *
 * Configuration (cairn_kube_open_env):
 *   - KUBECONFIG set: the first file of the list is read. JSON or a YAML
 *     subset (block mappings and sequences, plain and quoted scalars, no
 *     anchors, flow collections or multi-line scalars: what `kubectl config
 *     view --raw` writes). From the current context: cluster.server,
 *     certificate-authority, certificate-authority-data,
 *     insecure-skip-tls-verify, user.token, user.tokenFile. Client
 *     certificates and exec/auth-provider plugins are refused with a message.
 *   - otherwise in-cluster: KUBERNETES_SERVICE_HOST and
 *     KUBERNETES_SERVICE_PORT, and token, ca.crt and namespace from
 *     /var/run/secrets/kubernetes.io/serviceaccount (CAIRN_KUBE_SA_DIR
 *     overrides the directory). The token file is re-read before each request
 *     (the kubelet rotates bound tokens).
 * The token never appears in an error message, and the request header that
 * carries it is wiped after use.
 *
 * Ownership: a cairn_kube handle owns its curl handle and configuration;
 * cairn_kube_free() accepts NULL. json_t objects returned through `out`
 * pointers belong to the caller (json_decref); objects passed to callbacks
 * are borrowed for the duration of the call (json_incref to keep them).
 * Threading: one thread at a time per handle; open one handle per thread
 * (cairn_kube_open_env is cheap). Nothing here prints or exits. */
#ifndef CAIRN_AGENT_KUBE_H
#define CAIRN_AGENT_KUBE_H

#include <jansson.h>
#include <signal.h>
#include <stddef.h>

#include "../engine/util.h"

#define CAIRN_KUBE_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"
#define CAIRN_KUBE_MAX_RESPONSE (8u << 20) /* default cap on a response body */
#define CAIRN_KUBE_MAX_LINE (4u << 20)     /* default cap on one watch event */
#define CAIRN_KUBE_PAGE 500                /* default list page size (limit=) */
#define CAIRN_KUBE_RV_MAX 128              /* resourceVersion buffer size */

typedef struct cairn_kube cairn_kube;

/* Reads the configuration described above. CAIRN_FAILED with a message
 * naming the file or variable when it is missing or unusable. */
int cairn_kube_open_env(cairn_kube **out, cairn_err *err);
/* The same from an explicit kubeconfig file (JSON or the YAML subset). */
int cairn_kube_open_kubeconfig(const char *path, cairn_kube **out, cairn_err *err);
/* In-cluster configuration from sa_dir (NULL: $CAIRN_KUBE_SA_DIR or the
 * default) and KUBERNETES_SERVICE_HOST/PORT. */
int cairn_kube_open_incluster(const char *sa_dir, cairn_kube **out, cairn_err *err);
void cairn_kube_free(cairn_kube *k);

/* The API server URL, e.g. "https://10.96.0.1:443" (owned by k). */
const char *cairn_kube_server(const cairn_kube *k);
/* Where the token came from, for messages: "ServiceAccount token
 * '/var/run/.../token'" or "kubeconfig '/home/me/.kube/config' user 'me'". */
const char *cairn_kube_token_source(const cairn_kube *k);
/* The namespace of the configuration (the ServiceAccount's namespace file,
 * or the context's namespace; "default" when none). */
const char *cairn_kube_namespace(const cairn_kube *k);
/* The HTTP status of the last response (0: no response). */
long cairn_kube_last_status(const cairn_kube *k);

/* Limits and timing (defaults in brackets). Backoff after an error is
 * "full jitter": a random delay in [d/2, d] where d doubles from base_ms
 * [500] up to max_ms [30000]; after 401/403 the delay is at least
 * auth_ms [60000] (a credentials or RBAC problem is not fixed by retrying
 * fast). watch_timeout_s [300] is the server-side timeoutSeconds of a watch;
 * request_timeout_s [60] bounds every other request. */
struct cairn_kube_tuning {
    size_t max_response;
    size_t max_line;
    unsigned page;
    unsigned base_ms, max_ms, auth_ms;
    unsigned watch_timeout_s;
    unsigned request_timeout_s;
};
void cairn_kube_get_tuning(const cairn_kube *k, struct cairn_kube_tuning *t);
void cairn_kube_set_tuning(cairn_kube *k, const struct cairn_kube_tuning *t);
/* The loop (cairn_kube_pods_run) stops soon after *flag becomes nonzero
 * (checked while waiting and during transfers). NULL: never. */
void cairn_kube_set_stop_flag(cairn_kube *k, const volatile sig_atomic_t *flag);

/* One request. path starts with '/' (and carries its query string); body may
 * be NULL. The response body (at most max_response bytes) is parsed as JSON
 * into *out when out is not NULL and the status is 2xx.
 * Return codes: CAIRN_OK (2xx), CAIRN_NOTFOUND (404), CAIRN_EXISTS (409),
 * CAIRN_RETRY (network errors, 410, 429, 5xx), CAIRN_FAILED (401, 403 and
 * other 4xx: the message says which ServiceAccount token or RBAC rule to
 * check), CAIRN_CORRUPT (2xx with a body that is not JSON). Messages name the
 * method, path and the API server's own message. */
int cairn_kube_request(cairn_kube *k, const char *method, const char *path,
                       const char *content_type, const char *body, size_t body_len,
                       json_t **out, cairn_err *err);
int cairn_kube_get_json(cairn_kube *k, const char *path, json_t **out, cairn_err *err);

/* GET of a plain-text resource (pods/NAME/log): the last max bytes of the
 * body are appended to out. Return codes as cairn_kube_request. */
int cairn_kube_get_text(cairn_kube *k, const char *path, size_t max, cairn_buf *out,
                        cairn_err *err);

/* GET a PVC (namespace, name) or a PV (name). */
int cairn_kube_get_pvc(cairn_kube *k, const char *ns, const char *name, json_t **out,
                       cairn_err *err);
int cairn_kube_get_pv(cairn_kube *k, const char *name, json_t **out, cairn_err *err);

/* Merge-patches (application/merge-patch+json) the PVC's annotations with
 * exactly the n pairs given: {"metadata":{"annotations":{k:v,...}}}; a NULL
 * value removes that annotation. The updated PVC goes to *out if not NULL. */
struct cairn_kube_kv {
    const char *key;
    const char *value;
};
int cairn_kube_patch_pvc_annotations(cairn_kube *k, const char *ns, const char *name,
                                     const struct cairn_kube_kv *kv, size_t n, json_t **out,
                                     cairn_err *err);

/* Creates a core/v1 Event in the PVC's namespace about the PVC
 * (involvedObject kind PersistentVolumeClaim, name, namespace and uid if
 * given). type is "Normal" or "Warning"; reason is CamelCase (e.g.
 * "BackupSucceeded"); source.host and reportingInstance are $NODE_NAME. */
int cairn_kube_post_pvc_event(cairn_kube *k, const char *ns, const char *name,
                              const char *uid, const char *type, const char *reason,
                              const char *message, cairn_err *err);

/* ---- list and watch: the pods of a node, or any collection ---- */

enum cairn_kube_event {
    CAIRN_KUBE_ADDED,    /* also every pod of a (re-)list */
    CAIRN_KUBE_MODIFIED,
    CAIRN_KUBE_DELETED,
};
const char *cairn_kube_event_name(enum cairn_kube_event e);

/* One page-by-page list of the node's pods (fieldSelector=spec.nodeName=
 * node, limit=page, continue=...). cb is called for each pod (borrowed).
 * The list's resourceVersion goes to
 * rv (CAIRN_KUBE_RV_MAX bytes). A 410 for an expired continue token is
 * CAIRN_RETRY. Callbacks here and below return 0 to go on, or a POSITIVE
 * value to stop: that value is then returned as is (cairn_rc codes are all
 * negative, so the two never mix). */
typedef int (*cairn_kube_pod_cb)(void *arg, enum cairn_kube_event ev, json_t *pod);
int cairn_kube_list_pods(cairn_kube *k, const char *node, cairn_kube_pod_cb cb, void *arg,
                         char rv[CAIRN_KUBE_RV_MAX], cairn_err *err);

/* One watch from rv (watch=1, allowWatchBookmarks=true, timeoutSeconds).
 * Events are read as newline-delimited JSON through a bounded line buffer
 * (max_line). ADDED/MODIFIED/DELETED go to cb; BOOKMARK only advances rv;
 * rv is updated after each event. Returns CAIRN_OK when the server ended the
 * stream (timeout: watch again from rv), CAIRN_NOTFOUND when the
 * resourceVersion is gone (an ERROR event with code 410, or HTTP 410: list
 * again), other codes as cairn_kube_request, or cb's positive return. */
int cairn_kube_watch_pods(cairn_kube *k, const char *node, char rv[CAIRN_KUBE_RV_MAX],
                          cairn_kube_pod_cb cb, void *arg, cairn_err *err);

/* The informer loop: list, then watch from the list's resourceVersion, again
 * and again, until a callback returns nonzero (returned as is: on_pod must
 * return a positive value to stop) or the stop flag is set (CAIRN_OK). On
 * 410 it lists again at once: on_relist is called first (the caller forgets
 * what it knew: every current pod is then ADDED again) and on_synced after
 * each complete list. On other errors it calls on_error with the error and
 * the delay (backoff above), waits, and lists again (events may have been
 * missed); a nonzero return from on_error stops the loop. Any callback may
 * be NULL. Callbacks run on the loop's thread and must not use k (open a
 * second handle to patch or post from them). */
struct cairn_kube_pod_handler {
    int (*on_relist)(void *arg);
    int (*on_pod)(void *arg, enum cairn_kube_event ev, json_t *pod);
    int (*on_synced)(void *arg, const char *rv);
    int (*on_error)(void *arg, const cairn_err *err, unsigned delay_ms);
};
int cairn_kube_pods_run(cairn_kube *k, const char *node, const struct cairn_kube_pod_handler *h,
                        void *arg, cairn_err *err);

/* The same for any collection: collection is a path without a query
 * ("/api/v1/persistentvolumeclaims", "/api/v1/namespaces/NS/pods",
 * "/apis/snapshot.storage.k8s.io/v1/volumesnapshots"), field_selector NULL or
 * e.g. "metadata.name=x". The *_pods functions above are these with
 * "/api/v1/pods" and "spec.nodeName=NODE"; the callbacks get any object
 * (on_pod is then "on object"). */
int cairn_kube_list(cairn_kube *k, const char *collection, const char *field_selector,
                    cairn_kube_pod_cb cb, void *arg, char rv[CAIRN_KUBE_RV_MAX], cairn_err *err);
int cairn_kube_watch(cairn_kube *k, const char *collection, const char *field_selector,
                     char rv[CAIRN_KUBE_RV_MAX], cairn_kube_pod_cb cb, void *arg,
                     cairn_err *err);
int cairn_kube_informer_run(cairn_kube *k, const char *collection, const char *field_selector,
                            const struct cairn_kube_pod_handler *h, void *arg, cairn_err *err);

/* The backoff delay (ms) for the attempt-th consecutive failure (0-based),
 * with jitter; auth: the failure was 401/403. Exposed for tests. */
unsigned cairn_kube_backoff_ms(const struct cairn_kube_tuning *t, unsigned attempt, int auth);

/* ---- kube_json.c: the YAML subset for kubeconfig files ---- */

/* Parses text (len bytes) as JSON when it starts with '{', otherwise as the
 * YAML subset described above, into a new json_t (*out, caller decrefs).
 * Errors name the line. */
int cairn_kube_parse_config_text(const char *text, size_t len, json_t **out,
                                 cairn_err *err);

#endif
