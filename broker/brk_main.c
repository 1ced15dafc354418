/*
 * kp-broker: the thin main of the broker daemon (brk.h).
 */
#include <stddef.h>

#include "brk.h"
#include "kp_daemon.h"

static int run(void *cfg, uv_loop_t *loop)
{
    return brk_run(cfg, loop);
}

int main(int argc, char **argv)
{
    static const struct kp_daemon_desc desc = {
        .component = "broker",
        .summary = "routes each scheme's batches to its live scorer",
        .table = brk_config_table,
        .cfg_size = sizeof(struct brk_config),
        .off_instance = offsetof(struct brk_config, instance),
        .off_log_level = offsetof(struct brk_config, log_level),
        .off_insecure = offsetof(struct brk_config, insecure),
        .run = run,
    };
    return kp_daemon_main(&desc, argc, argv);
}
