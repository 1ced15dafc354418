/*
 * kp-scorer: the thin main of the scorer daemon (scr.h). `kp-scorer -c FILE [--check-config]
 * [--help] [--set key=value]`: kp_daemon_main parses argv, loads the YAML through
 * scr_config_table, validates it with scr_config_check (which also loads every scheme file,
 * so --check-config reports scheme errors too), starts logging and runs scr_run().
 */
#include <malloc.h>
#include <stddef.h>

#include "kp_daemon.h"
#include "scr.h"

static int run(void *cfg, uv_loop_t *loop)
{
    return scr_run(cfg, loop);
}

int main(int argc, char **argv)
{
    /* A fixed mmap threshold (glibc otherwise raises it to the largest block freed): a group's
     * large transient buffers (decoded batches, COPY data, array parameters) are mapped and
     * given back when freed, instead of taking heap between the engine's long-lived chunks,
     * where no trim can return them (docs/BENCHMARKS.md, round 7). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    static const struct kp_daemon_desc desc = {
        .component = "scorer",
        .summary = "scores each scheme's batches into PostgreSQL and acks after COMMIT",
        .table = scr_config_table,
        .cfg_size = sizeof(struct scr_config),
        .off_instance = offsetof(struct scr_config, instance),
        .off_log_level = offsetof(struct scr_config, log_level),
        .off_insecure = offsetof(struct scr_config, insecure),
        .check = scr_config_check,
        .run = run,
    };
    return kp_daemon_main(&desc, argc, argv);
}
