/*
 * kp_daemon: what every daemon's thin main does (STYLE.md "A daemon is a library plus a thin
 * main"): parse argv (kp_cli_parse), load the YAML configuration and --set overrides through
 * the module's table, answer --help and --check-config, start logging with component and
 * instance, create the libuv loop and call the daemon's run function; plus the SIGINT/SIGTERM
 * (stop) and SIGHUP (reload) handlers on the loop (relayd: signals handled on the loop).
 */
#ifndef KP_DAEMON_H
#define KP_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "kp_config.h"

struct kp_daemon_desc {
    const char *component;          /* "collector" */
    const char *summary;            /* one line for --help */
    const struct kp_cfg_entry *table;
    size_t cfg_size;                /* sizeof the config struct */
    size_t off_instance;            /* offsetof the char *instance field */
    size_t off_log_level;           /* offsetof the char *log_level field */
    long off_insecure;              /* offsetof a bool set by --insecure, or -1 */
    /* Extra validation for --check-config and start-up (e.g. the scorer loads its scheme
     * files). May be NULL. Returns 0 or a KP_E* with err filled. */
    int (*check)(void *cfg, char *err, size_t errlen);
    /* Runs the daemon until it is stopped; returns the process exit code. */
    int (*run)(void *cfg, uv_loop_t *loop);
};

/* The whole life of a daemon process; returns the exit code for main (0 ok, 1 runtime
 * failure, 2 usage or configuration error). */
int kp_daemon_main(const struct kp_daemon_desc *d, int argc, char **argv);

/* SIGHUP reload of the daemon that kp_daemon_main is running (pass it as kp_signals_open's
 * on_hup; arg is ignored): reads the configuration again from the same command line (the file,
 * then every --set), validates it like start-up (the table, log_level, d->check), copies the
 * reloadable keys into the live configuration (kp_config_apply_reload; the daemon reads them
 * from its cfg from then on) and applies log_level at once. Logs one line: `config_reloaded
 * changed=KEYS restart_needed=KEYS` (keys that changed but are not reloadable keep their old
 * value until a restart), or `config_reload_failed msg=...` when the file no longer loads, in
 * which case nothing changes: a bad edit never stops a running daemon. Buffered data is not
 * touched. Loop thread only; blocks while it reads the file (and d->check's files). */
void kp_daemon_on_hup(void *arg);

struct kp_signals;
typedef void (*kp_signal_cb)(void *arg);

/* Installs SIGINT/SIGTERM → on_stop and SIGHUP → on_hup (may be NULL) on the loop; SIGPIPE
 * is ignored. Caller owns *out; close with kp_signals_close(). Loop thread only. */
int kp_signals_open(uv_loop_t *loop, kp_signal_cb on_stop, kp_signal_cb on_hup, void *arg,
                    struct kp_signals **out);
void kp_signals_close(struct kp_signals **s);

#endif
