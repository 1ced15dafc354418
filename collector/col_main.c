/*
 * kp-collector: the thin main of the collector daemon (col.h).
 */
#include <stddef.h>

#include "col.h"
#include "kp_daemon.h"

static int run(void *cfg, uv_loop_t *loop)
{
    return col_run(cfg, loop);
}

int main(int argc, char **argv)
{
    static const struct kp_daemon_desc desc = {
        .component = "collector",
        .summary = "ingress gateway: validates adapters' batches and forwards them to the broker",
        .table = col_config_table,
        .cfg_size = sizeof(struct col_config),
        .off_instance = offsetof(struct col_config, instance),
        .off_log_level = offsetof(struct col_config, log_level),
        .off_insecure = offsetof(struct col_config, insecure),
        .run = run,
    };
    return kp_daemon_main(&desc, argc, argv);
}
