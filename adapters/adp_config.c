/*
 * adp_config: the adapter's configuration table (STYLE.md "Configuration and logs"): the
 * runtime's keys, then every registered source's "source.*" keys, merged into one table so
 * that one YAML loader, one --help and one --check-config cover the whole daemon. The values
 * live in one allocation: struct adp_config, then each source's block at an aligned offset.
 */
#include "adp.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_keys.h"
#include "kp_msg.h"

#define CFG(field) offsetof(struct adp_config, field)
static const struct kp_cfg_entry runtime_config[] = {
    {"instance", KP_CFG_STR, "adapter", 0, 0, CFG(instance), false, false,
     "instance name on every log line"},
    {"log_level", KP_CFG_STR, "info", 0, 0, CFG(log_level), false, true,
     "debug, info, warn or error"},
    {"aid", KP_CFG_STR, NULL, 0, 0, CFG(aid), true, false,
     "adapter id (PROTOCOL.md batch.aid): 1-64 bytes of [A-Za-z0-9._:-]"},
    {"scheme", KP_CFG_STR, NULL, 0, 0, CFG(scheme), true, false,
     "assessment scheme the batches belong to (PROTOCOL.md batch.scheme)"},
    {"src", KP_CFG_STR, NULL, 0, 0, CFG(src), true, false,
     "source system code (PROTOCOL.md batch.src), e.g. stats, finance, audit, esup"},
    {"collector", KP_CFG_STR, "tcp://127.0.0.1:7450", 0, 0, CFG(collector), false, false,
     "ZeroMQ endpoint of the collector"},
    {"spool", KP_CFG_STR, NULL, 0, 0, CFG(spool), true, false,
     "path of the local SQLite spool file (one per adapter)"},
    {"admin", KP_CFG_STR, "127.0.0.1:0", 0, 0, CFG(admin), false, false,
     "host:port of the admin HTTP endpoint (/metrics, /healthz, /readyz); port 0 = any"},
    {"spool_max_bytes", KP_CFG_BYTES, "256M", 65536, 1099511627776.0, CFG(spool_max_bytes), false,
     false,
     "payload bytes the spool may hold; when full, pulling stops until acks free "
     "space"},
    {"batch_max_obs", KP_CFG_INT, "500", 1, 5000, CFG(batch_max_obs), false, false,
     "records per batch (and per poll of the source)"},
    {"inflight", KP_CFG_INT, "8", 1, 1024, CFG(inflight), false, false,
     "batches sent and not yet answered at most"},
    {"ack_timeout_ms", KP_CFG_MS, "5000", 10, 3600000, CFG(ack_timeout_ms), false, false,
     "wait for an answer before sending a batch again; doubles per retransmission"},
    {"retry_min_ms", KP_CFG_MS, "250", 1, 3600000, CFG(retry_min_ms), false, false,
     "first backoff after a retry:true nack; doubles per nack, with jitter"},
    {"retry_max_ms", KP_CFG_MS, "60000", 1, 86400000, CFG(retry_max_ms), false, false,
     "longest wait between two transmissions of a batch"},
    {"drain_ms", KP_CFG_MS, "2s", 0, 60000, CFG(drain_ms), false, true,
     "on SIGTERM, how long to wait for the acks of the batches in flight before closing (no new "
     "batch is sent meanwhile; what is not acked stays in the spool)"},
    {"insecure", KP_CFG_BOOL, "false", 0, 0, CFG(insecure), false, false,
     "send to the collector over plain TCP without CURVE (local tests only; also --insecure)"},
    {"curve.secret_file", KP_CFG_STR, "", 0, 0, CFG(curve_secret_file), false, false,
     "the adapter's CURVE secret key file (mode 0600; kpctl keygen NAME)"},
    {"curve.public_file", KP_CFG_STR, "", 0, 0, CFG(curve_public_file), false, false,
     "its public key file (optional: checked against the secret key); the collector's key "
     "file lists it with this adapter's aid and grants"},
    {"curve.server_public_file", KP_CFG_STR, "", 0, 0, CFG(curve_server_public_file), false,
     false, "the collector's public key file"},
    {"source.driver", KP_CFG_STR, "sql", 0, 0, CFG(driver), false, false, "the source plugin: sql"},
    {"source.poll_ms", KP_CFG_MS, "1000", 10, 86400000, CFG(poll_ms), false, true,
     "pause between polls of the source once it has nothing new"},
};
#define N_RUNTIME (sizeof runtime_config / sizeof runtime_config[0])

#define TABLE_MAX   128
#define SOURCES_MAX 16
static struct kp_cfg_entry table[TABLE_MAX];
static size_t source_off[SOURCES_MAX];
static size_t total_size;
static bool built;

static size_t align_up(size_t n)
{
    size_t a = alignof(max_align_t);
    return (n + a - 1) / a * a;
}

static void build(void)
{
    size_t n = 0;
    for (size_t k = 0; k < N_RUNTIME; k++)
        table[n++] = runtime_config[k];
    size_t off = align_up(sizeof(struct adp_config));
    for (size_t s = 0; adp_sources[s]; s++) {
        KP_ASSERT(s < SOURCES_MAX);
        const struct adp_source *src = adp_sources[s];
        source_off[s] = off;
        for (const struct kp_cfg_entry *e = src->config; e && e->key; e++) {
            KP_ASSERT(n + 1 < TABLE_MAX);
            KP_ASSERT(strncmp(e->key, "source.", 7) == 0 && strcmp(e->key, "source.driver") != 0);
            for (size_t k = 0; k < n; k++)
                KP_ASSERT(strcmp(table[k].key, e->key) != 0); /* keys unique across sources */
            table[n] = *e;
            table[n].offset += off;
            n++;
        }
        off = align_up(off + src->config_size);
    }
    struct kp_cfg_entry end = KP_CFG_END;
    table[n] = end;
    total_size = off;
    built = true;
}

const struct kp_cfg_entry *adp_config_table(void)
{
    if (!built)
        build();
    return table;
}

size_t adp_config_size(void)
{
    if (!built)
        build();
    return total_size;
}

void *adp_source_config(struct adp_config *cfg, const struct adp_source *s)
{
    if (!built)
        build();
    for (size_t k = 0; adp_sources[k]; k++)
        if (adp_sources[k] == s)
            return (char *)cfg + source_off[k];
    return NULL;
}

struct adp_config *adp_config_new(void)
{
    struct adp_config *cfg = kp_xcalloc(1, adp_config_size());
    char err[256];
    int rc = kp_config_defaults(adp_config_table(), cfg, err, sizeof err);
    KP_ASSERT(rc == 0); /* a default that does not parse is a programming error */
    return cfg;
}

void adp_config_destroy(struct adp_config **cfg)
{
    if (!cfg || !*cfg)
        return;
    kp_config_fini(adp_config_table(), *cfg);
    free(*cfg);
    *cfg = NULL;
}

static int code_check(const char *key, const char *v, char *err, size_t errlen)
{
    if (v && kp_code_valid(v, strlen(v)))
        return 0;
    snprintf(err, errlen, "%s: must be 1-64 bytes of [A-Za-z0-9._:-]", key);
    return KP_ECONFIG;
}

int adp_config_curve(const struct adp_config *cfg, char pub[41], char sec[41], char srv[41],
                     bool *curve, char *err, size_t errlen)
{
    return kp_keys_load_client(cfg->curve_secret_file, cfg->curve_public_file,
                               cfg->curve_server_public_file, cfg->insecure, pub, sec, srv, curve,
                               err, errlen);
}

int adp_config_check(struct adp_config *cfg, char *err, size_t errlen)
{
    if (code_check("aid", cfg->aid, err, errlen) ||
        code_check("scheme", cfg->scheme, err, errlen) || code_check("src", cfg->src, err, errlen))
        return KP_ECONFIG;
    if (!cfg->spool || !cfg->spool[0]) {
        snprintf(err, errlen, "spool: required");
        return KP_ECONFIG;
    }
    if (!cfg->collector || !cfg->collector[0]) {
        snprintf(err, errlen, "collector: required");
        return KP_ECONFIG;
    }
    if (cfg->retry_max_ms < cfg->retry_min_ms) {
        snprintf(err, errlen, "retry_max_ms: must not be below retry_min_ms");
        return KP_ECONFIG;
    }
    const struct adp_source *s = adp_source_find(cfg->driver);
    if (!s) {
        size_t n = (size_t)snprintf(err, errlen, "source.driver: unknown source \"%s\" (known:",
                                    cfg->driver ? cfg->driver : "");
        for (size_t k = 0; adp_sources[k] && n < errlen; k++)
            n += (size_t)snprintf(err + n, errlen - n, " %s", adp_sources[k]->name);
        if (n < errlen)
            snprintf(err + n, errlen - n, ")");
        return KP_ECONFIG;
    }
    if (s->check)
        return s->check(adp_source_config(cfg, s), err, errlen);
    return 0;
}
