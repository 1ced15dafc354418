/*
 * scr_config: the scorer's configuration table and the checks that go beyond it (the DSN
 * from db.dsn, db.dsn_file or KP_DB_DSN; every scheme file loadable), shared by start-up and
 * `kp-scorer --check-config` (STYLE.md "Configuration and logs").
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kp_err.h"
#include "kp_keys.h"
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
    {"lock_poll_ms", KP_CFG_MS, "500", 20, 60000, CFG(lock_poll_ms), false, false,
     "standby: how often to try to take the advisory lock of a scheme another scorer serves"},
    {"max_bytes", KP_CFG_BYTES, "4M", 1024, 64.0 * 1024 * 1024, CFG(max_bytes), false, false,
     "largest batch frame accepted"},
    {"max_obs", KP_CFG_INT, "10000", 1, 1000000, CFG(max_obs), false, false,
     "most observations accepted in one batch"},
    {"alerts.pub", KP_CFG_STR, "", 0, 0, CFG(alerts_pub), false, false,
     "ZeroMQ PUB endpoint (e.g. tcp://127.0.0.1:7453) announcing alert transitions (topic "
     "alert.<scheme>) and score changes (score.<scheme>) for kpctl tap; \"\" = off"},
    {"alerts.alertmanager_url", KP_CFG_STR, "", 0, 0, CFG(alerts_am_url), false, false,
     "Alertmanager base URL (http://host:9093): alerts are POSTed to /api/v2/alerts; \"\" = "
     "no delivery (kp_alert still records every transition)"},
    {"alerts.tick_ms", KP_CFG_MS, "1s", 50, 60000, CFG(alerts_tick_ms), false, false,
     "interval of the evaluation of the time-driven alert rules (deadlines, overdue nodes, "
     "silent sources, progress lag)"},
    {"alerts.resend_ms", KP_CFG_MS, "1m", 100, 3600000, CFG(alerts_resend_ms), false, false,
     "firing alerts are re-sent to Alertmanager this often, with endsAt = now + 3 x resend_ms"},
    {"alerts.resolved_resend_ms", KP_CFG_MS, "5m", 0, 86400000, CFG(alerts_resolved_ms), false,
     false, "resolved alerts are re-sent (endsAt = resolution time) for this long"},
    {"alerts.am_timeout_ms", KP_CFG_MS, "5s", 100, 60000, CFG(alerts_am_timeout_ms), false, false,
     "timeout of one POST to Alertmanager (then retried with backoff)"},
    {"insecure", KP_CFG_BOOL, "false", 0, 0, CFG(insecure), false, false,
     "connect to the broker over plain TCP without CURVE (local tests only; also --insecure)"},
    {"curve.secret_file", KP_CFG_STR, "", 0, 0, CFG(curve_secret_file), false, false,
     "the scorer's CURVE secret key file (mode 0600; kpctl keygen)"},
    {"curve.public_file", KP_CFG_STR, "", 0, 0, CFG(curve_public_file), false, false,
     "its public key file (optional: checked against the secret key)"},
    {"curve.server_public_file", KP_CFG_STR, "", 0, 0, CFG(curve_server_public_file), false, false,
     "the broker's public key file"},
    {"db.passfile", KP_CFG_STR, "", 0, 0, CFG(db_passfile), false, false,
     "libpq password file (host:port:db:user:password lines, mode 0600) for the DSN's user; "
     "else PGPASSFILE/PGPASSWORD from the environment. Keep passwords out of db.dsn"},
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

static bool given(const char *s)
{
    return s && *s;
}

int scr_config_curve(const struct scr_config *cfg, char pub[41], char sec[41], char srv[41],
                     bool *curve, char *err, size_t errlen)
{
    return kp_keys_load_client(cfg->curve_secret_file, cfg->curve_public_file,
                               cfg->curve_server_public_file, cfg->insecure, pub, sec, srv, curve,
                               err, errlen);
}

int scr_config_passfile(const struct scr_config *cfg, char *err, size_t errlen)
{
    if (!given(cfg->db_passfile))
        return 0;
    struct stat st;
    if (stat(cfg->db_passfile, &st) != 0) {
        snprintf(err, errlen, "db.passfile: %s: %s", cfg->db_passfile, strerror(errno));
        return KP_ECONFIG;
    }
    if (!S_ISREG(st.st_mode) || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        snprintf(err, errlen,
                 "db.passfile: %s: must be a regular file without group or other access "
                 "(mode %04o): chmod 600 %s",
                 cfg->db_passfile, (unsigned)(st.st_mode & 07777), cfg->db_passfile);
        return KP_ECONFIG;
    }
    /* libpq reads PGPASSFILE when the DSN names no passfile itself. */
    if (setenv("PGPASSFILE", cfg->db_passfile, 1) != 0) {
        snprintf(err, errlen, "db.passfile: cannot set PGPASSFILE");
        return KP_ECONFIG;
    }
    return 0;
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
