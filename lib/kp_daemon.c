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
    rc = d->run(cfg, &loop);
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
