/*
 * kp-adapter: the thin main of the adapter daemon (adp.h). Usage:
 *   kp-adapter -c FILE [--check-config] [--help] [--set key=value]...
 */
#include <stddef.h>

#include "adp.h"
#include "kp_daemon.h"

static int check(void *cfg, char *err, size_t errlen)
{
    return adp_config_check(cfg, err, errlen);
}

static int run(void *cfg, uv_loop_t *loop)
{
    return adp_run(cfg, loop);
}

int main(int argc, char **argv)
{
    struct kp_daemon_desc desc = {
        .component = "adapter",
        .summary = "pulls a department system into a durable spool and delivers it to the "
                   "collector",
        .table = adp_config_table(),
        .cfg_size = adp_config_size(),
        .off_instance = offsetof(struct adp_config, instance),
        .off_log_level = offsetof(struct adp_config, log_level),
        .off_insecure = offsetof(struct adp_config, insecure),
        .check = check,
        .run = run,
    };
    return kp_daemon_main(&desc, argc, argv);
}
