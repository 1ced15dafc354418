/*
 * scr_config: the scorer's configuration table and the checks that go beyond it (the DSN
 * from db.dsn, db.dsn_file or KP_DB_DSN; every scheme file loadable), shared by start-up and
 * `kp-scorer --check-config` (STYLE.md "Configuration and logs").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_msg.h"
#include "score_engine.h"
#include "scr.h"

#define CFG(field) offsetof(struct scr_config, field)
const struct kp_cfg_entry scr_config_table[] = {
    {"instance", KP_CFG_STR, "scorer", 0, 0, CFG(instance), false, false,
     "instance name on every log line; the scorer id is <instance>-<pid>"},
    {"log_level", KP_CFG_STR, "info", 0, 0, CFG(log_level), false, true,
     "debug, info, warn or error"},
    {"broker", KP_CFG_STR, "tcp://127.0.0.1:7452", 0, 0, CFG(broker), false, false,
     "the broker's backend endpoint (schemas/INTERNAL.md)"},
    {"db.dsn", KP_CFG_STR, "", 0, 0, CFG(db_dsn), false, false,
     "libpq connection string; else db.dsn_file, else the KP_DB_DSN environment variable"},
    {"db.dsn_file", KP_CFG_STR, "", 0, 0, CFG(db_dsn_file), false, false,
     "file whose first line is the libpq connection string"},
    {"db.retry_max_ms", KP_CFG_MS, "10s", 100, 3600000, CFG(db_retry_max_ms), false, false,
     "longest wait between two attempts to reach PostgreSQL (backoff doubles up to it)"},
    {"schemes", KP_CFG_STRLIST, NULL, 0, 0, CFG(schemes), true, false,
     "scheme YAML files this scorer serves (schemas/schemes/*.yaml)"},
    {"migrations", KP_CFG_STR, "schemas/migrations", 0, 0, CFG(migrations), false, false,
     "directory of NNN_name.sql migrations applied at start-up; \"\" to skip"},
    {"admin", KP_CFG_STR, "127.0.0.1:0", 0, 0, CFG(admin), false, false,
     "host:port of the admin HTTP endpoint (/metrics, /healthz, /readyz); port 0 = any"},
    {"hb_ms", KP_CFG_MS, "1000", 50, 600000, CFG(hb_ms), false, false,
     "interval of the scorer's registration heartbeat to the broker"},
    {"max_bytes", KP_CFG_BYTES, "4M", 1024, 64.0 * 1024 * 1024, CFG(max_bytes), false, false,
     "largest batch frame accepted"},
    {"max_obs", KP_CFG_INT, "10000", 1, 1000000, CFG(max_obs), false, false,
     "most observations accepted in one batch"},
    KP_CFG_END,
};

static char *trim_line(char *s)
{
    char *nl = strpbrk(s, "\r\n");
    if (nl)
        *nl = 0;
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = 0;
    return s;
}

char *scr_config_dsn(const struct scr_config *cfg, char *err, size_t errlen)
{
    if (cfg->db_dsn && cfg->db_dsn[0])
        return kp_xstrdup(cfg->db_dsn);
    if (cfg->db_dsn_file && cfg->db_dsn_file[0]) {
        FILE *f = fopen(cfg->db_dsn_file, "r");
        if (!f) {
            snprintf(err, errlen, "db.dsn_file: %s: %s", cfg->db_dsn_file, strerror(errno));
            return NULL;
        }
        char line[4096];
        char *got = fgets(line, sizeof line, f);
        fclose(f);
        char *dsn = got ? trim_line(line) : NULL;
        if (!dsn || !*dsn) {
            snprintf(err, errlen, "db.dsn_file: %s: empty", cfg->db_dsn_file);
            return NULL;
        }
        return kp_xstrdup(dsn);
    }
    const char *env = getenv("KP_DB_DSN");
    if (env && *env)
        return kp_xstrdup(env);
    snprintf(err, errlen,
             "db.dsn: required (or db.dsn_file, or the KP_DB_DSN environment "
             "variable)");
    return NULL;
}

int scr_config_check(void *arg, char *err, size_t errlen)
{
    const struct scr_config *cfg = arg;
    /* The scorer id <instance>-<pid> must be a PROTOCOL.md code (reg.sid). */
    if (!cfg->instance || strlen(cfg->instance) > KP_CODE_MAX - 12 ||
        !kp_code_valid(cfg->instance, strlen(cfg->instance))) {
        snprintf(err, errlen, "instance: must be 1-%d characters of [A-Za-z0-9._:-]",
                 KP_CODE_MAX - 12);
        return KP_ECONFIG;
    }
    char *dsn = scr_config_dsn(cfg, err, errlen);
    if (!dsn)
        return KP_ECONFIG;
    free(dsn);
    if (!cfg->schemes || !cfg->schemes[0]) {
        snprintf(err, errlen, "schemes: at least one scheme file is required");
        return KP_ECONFIG;
    }
    size_t n = 0;
    while (cfg->schemes[n])
        n++;
    if (n > KP_REG_MAX_SCHEMES) {
        snprintf(err, errlen, "schemes: %zu files, at most %d", n, KP_REG_MAX_SCHEMES);
        return KP_ECONFIG;
    }
    /* Load each file once to validate it, and look for a scheme id served twice. */
    char **ids = kp_xcalloc(n, sizeof *ids);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        struct score_scheme *sc = NULL;
        rc = score_scheme_load(cfg->schemes[i], &sc, err, errlen);
        if (rc) {
            rc = KP_ESCHEME;
            break;
        }
        ids[i] = kp_xstrdup(score_scheme_id(sc));
        score_scheme_destroy(&sc);
        for (size_t j = 0; j < i; j++) {
            if (!strcmp(ids[i], ids[j])) {
                snprintf(err, errlen, "schemes: %s and %s both define scheme %s", cfg->schemes[j],
                         cfg->schemes[i], ids[i]);
                rc = KP_ECONFIG;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
    return rc;
}
