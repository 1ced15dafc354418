/*
 * kp_daemon: the shared body of every daemon's main and the signal handlers on the loop
 * (see kp_daemon.h).
 */
#include "kp_daemon.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_log.h"

static void usage(const struct kp_daemon_desc *d, FILE *out)
{
    fprintf(out,
            "kp-%s: %s\n\n"
            "usage: kp-%s -c FILE [--check-config] [--set key=value]...%s\n\n"
            "  -c, --config FILE   YAML configuration file\n"
            "  --check-config      validate the configuration and exit (0 valid, 2 invalid)\n"
            "  --set key=value     override one configuration key (repeatable)\n"
            "%s"
            "  -h, --help          this help\n\n"
            "configuration keys:\n",
            d->component, d->summary, d->component, d->off_insecure >= 0 ? " [--insecure]" : "",
            d->off_insecure >= 0 ? "  --insecure          plain TCP without CURVE (local tests only)\n"
                                 : "");
    kp_config_print_help(d->table, out);
}

/* What kp_daemon_on_hup needs: the descriptor, the command line (its strings point into
 * argv, which lives as long as the process) and the live configuration. Set while run runs. */
static const struct kp_daemon_desc *live_desc;
static struct kp_cli live_cli;
static void *live_cfg;
static unsigned long reloads; /* SIGHUPs handled: names each reload in the log */

/* Appends key to a comma-separated list in buf. */
static void key_append(char *buf, size_t len, const char *key)
{
    size_t n = strlen(buf);
    snprintf(buf + n, len - n, "%s%s", n ? "," : "", key);
}

void kp_daemon_on_hup(void *arg)
{
    (void)arg;
    const struct kp_daemon_desc *d = live_desc;
    if (!d || !live_cfg) {
        KP_WARN("config_reload_unavailable", "msg=\"not running under kp_daemon_main\"");
        return;
    }
    char err[512], q[600];
    reloads++;
    void *fresh = kp_xcalloc(1, d->cfg_size);
    enum kp_log_level level = KP_LOG_INFO;
    const char *level_s = NULL;
    if (kp_config_from_cli(&live_cli, d->table, fresh, err, sizeof err) != 0)
        goto failed;
    if (d->off_insecure >= 0 && live_cli.insecure)
        *(bool *)((char *)fresh + d->off_insecure) = true;
    level_s = *(char **)((char *)fresh + d->off_log_level);
    if (level_s && kp_log_level_parse(level_s, &level) != 0) {
        snprintf(err, sizeof err, "log_level: expected debug|info|warn|error, got \"%s\"",
                 level_s);
        goto failed;
    }
    if (d->check && d->check(fresh, err, sizeof err) != 0)
        goto failed;
    /* Which keys differ, each compared alone (an entry marked not reloadable only reports). */
    char changed[512] = "", restart[512] = "";
    for (const struct kp_cfg_entry *e = d->table; e->key; e++) {
        struct kp_cfg_entry one[2] = {*e, KP_CFG_END};
        one[0].reloadable = false;
        bool diff = false;
        kp_config_apply_reload(one, live_cfg, fresh, &diff);
        if (diff)
            key_append(e->reloadable ? changed : restart,
                       e->reloadable ? sizeof changed : sizeof restart, e->key);
    }
    kp_config_apply_reload(d->table, live_cfg, fresh, NULL);
    if (level_s)
        kp_log_set_level(level);
    char qc[600];
    KP_INFO("config_reloaded", "reload=%lu file=%s changed=%s restart_needed=%s log_level=%s",
            reloads, live_cli.config_path ? live_cli.config_path : "-",
            kp_log_q(qc, sizeof qc, changed[0] ? changed : "none"),
            kp_log_q(q, sizeof q, restart[0] ? restart : "none"), level_s ? level_s : "info");
    kp_config_fini(d->table, fresh);
    free(fresh);
    return;
failed:
    KP_WARN("config_reload_failed", "reload=%lu msg=%s keeping=\"the running configuration\"",
            reloads, kp_log_q(q, sizeof q, err));
    kp_config_fini(d->table, fresh);
    free(fresh);
}

int kp_daemon_main(const struct kp_daemon_desc *d, int argc, char **argv)
{
    struct kp_cli cli;
    char err[512];
    if (kp_cli_parse(argc, argv, &cli, err, sizeof err) != 0) {
        fprintf(stderr, "kp-%s: %s (try --help)\n", d->component, err);
        return 2;
    }
    if (cli.help) {
        usage(d, stdout);
        return 0;
    }
    if (cli.insecure && d->off_insecure < 0) {
        fprintf(stderr, "kp-%s: --insecure is not an option of this daemon\n", d->component);
        return 2;
    }
    void *cfg = kp_xcalloc(1, d->cfg_size);
    int rc = 2;
    if (kp_config_from_cli(&cli, d->table, cfg, err, sizeof err) != 0) {
        fprintf(stderr, "kp-%s: %s\n", d->component, err);
        goto out;
    }
    if (d->off_insecure >= 0 && cli.insecure)
        *(bool *)((char *)cfg + d->off_insecure) = true;

    const char *instance = *(char **)((char *)cfg + d->off_instance);
    const char *level_s = *(char **)((char *)cfg + d->off_log_level);
    enum kp_log_level level = KP_LOG_INFO;
    if (level_s && kp_log_level_parse(level_s, &level) != 0) {
        fprintf(stderr, "kp-%s: log_level: expected debug|info|warn|error, got \"%s\"\n",
                d->component, level_s);
        goto out;
    }
    if (d->check && d->check(cfg, err, sizeof err) != 0) {
        fprintf(stderr, "kp-%s: %s\n", d->component, err);
        goto out;
    }
    if (cli.check_config) {
        printf("kp-%s: configuration ok\n", d->component);
        rc = 0;
        goto out;
    }
    kp_log_init(d->component, instance ? instance : d->component, level);

    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0) {
        fprintf(stderr, "kp-%s: cannot create the event loop\n", d->component);
        rc = 1;
        goto out;
    }
    /* A SIGHUP during start-up (systemd reload racing a restart) must not kill the daemon: the
     * configuration was just read anyway. kp_signals_open takes SIGHUP over once running. */
    signal(SIGHUP, SIG_IGN);
    live_desc = d;
    live_cli = cli;
    live_cfg = cfg;
    rc = d->run(cfg, &loop);
    live_desc = NULL;
    live_cfg = NULL;
    /* Let close callbacks of everything the daemon closed run, then close the loop. */
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        KP_WARN("loop_not_empty", "msg=\"handles left open at exit\"");
out:
    kp_config_fini(d->table, cfg);
    free(cfg);
    return rc;
}

struct kp_signals {
    uv_signal_t sigint, sigterm, sighup;
    kp_signal_cb on_stop, on_hup;
    void *arg;
    int open;
};

static void on_signal(uv_signal_t *h, int signum)
{
    struct kp_signals *s = h->data;
    if (signum == SIGHUP) {
        if (s->on_hup)
            s->on_hup(s->arg);
    } else if (s->on_stop) {
        s->on_stop(s->arg);
    }
}

int kp_signals_open(uv_loop_t *loop, kp_signal_cb on_stop, kp_signal_cb on_hup, void *arg,
                    struct kp_signals **out)
{
    struct kp_signals *s = kp_xcalloc(1, sizeof *s);
    s->on_stop = on_stop;
    s->on_hup = on_hup;
    s->arg = arg;
    signal(SIGPIPE, SIG_IGN);
    uv_signal_t *hs[3] = {&s->sigint, &s->sigterm, &s->sighup};
    int nums[3] = {SIGINT, SIGTERM, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(loop, hs[i]);
        hs[i]->data = s;
        uv_signal_start(hs[i], on_signal, nums[i]);
        s->open++;
    }
    *out = s;
    return 0;
}

static void on_signal_closed(uv_handle_t *h)
{
    struct kp_signals *s = h->data;
    if (--s->open == 0)
        free(s);
}

void kp_signals_close(struct kp_signals **sp)
{
    if (!sp || !*sp)
        return;
    struct kp_signals *s = *sp;
    *sp = NULL;
    uv_close((uv_handle_t *)&s->sigint, on_signal_closed);
    uv_close((uv_handle_t *)&s->sigterm, on_signal_closed);
    uv_close((uv_handle_t *)&s->sighup, on_signal_closed);
}
