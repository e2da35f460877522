/* cli/cmd_agent.c — cairn agent: the Kubernetes node agent (docs/agent.md).
 * Configuration comes from the environment (daemonset/configmap.yaml); this
 * file only wires signals and logging to agent/agent.h. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../agent/agent.h"
#include "cli.h"

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* One line per message on stderr: time, level, text (the container log). */
static void log_line(void *arg, enum cairn_log_level level, const char *msg)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    char when[40];
    (void)arg;
    cairn_format_time(cairn_now_ns(), when, sizeof when);
    /* "2026-11-21T21:01:41.123456789Z" -> milliseconds are enough */
    if (strlen(when) > 23) {
        when[23] = 'Z';
        when[24] = 0;
    }
    fprintf(stderr, "%s %-5s %s\n", when, names[level], msg);
    fflush(stderr);
}

int cmd_agent(struct cli *c, int argc, char **argv)
{
    static const char usage[] =
        "cairn agent [--prune-interval DURATION]\n"
        "Runs the Kubernetes node agent until SIGTERM. --prune-interval overrides\n"
        "CAIRN_PRUNE_INTERVAL (0: never prune). Settings come from the environment:\n"
        "NODE_NAME (required), CAIRN_REPO, CAIRN_METRICS_PORT, CAIRN_METRICS_ADDR,\n"
        "CAIRN_AGENT_TICK, CAIRN_JITTER_MAX, CAIRN_PRUNE_INTERVAL, CAIRN_STOP_GRACE,\n"
        "CAIRN_DEFAULT_RETENTION, "
        "CAIRN_KUBELET_PODS_DIR, CAIRN_AGENT_MAX_PVCS, CAIRN_AGENT_WORKERS, CAIRN_LOG_LEVEL,\n"
        "KUBECONFIG (else in-cluster). See docs/agent.md.";
    const char *prune_interval = NULL;
    const struct opt opts[] = {
        {"prune-interval", 1, 0, &prune_interval, NULL, NULL, NULL},
        {NULL, 0, 0, NULL, NULL, NULL, NULL},
    };
    struct cairn_agent_config cfg;
    struct sigaction sa;
    cairn_repo *repo = NULL;
    cairn_err err;
    int rc;

    if ((rc = cli_parse(c, argc, argv, opts, usage)) != 0)
        return rc;
    if (c->nargs) {
        cli_error("agent takes no arguments (usage: %s)", usage);
        return EXIT_USAGE;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.log = log_line;
    if (cairn_agent_config_from_env(&cfg, &err) != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_USAGE;
    }
    if (prune_interval &&
        (rc = cli_duration("prune-interval", prune_interval, 0, &cfg.prune_interval_s)) !=
            EXIT_OK)
        return rc;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    if ((rc = cli_open_repo(c, &repo)) != 0)
        return rc;
    rc = cairn_agent_run(repo, &cfg, &stop_flag, &err);
    cairn_repo_free(repo);
    if (rc != CAIRN_OK) {
        cli_error("%s", err.msg);
        return EXIT_ERR;
    }
    return EXIT_OK;
}
