/*
 * kpctl status: the whole pipeline on one screen, for operators, cron and probes (issue 8,
 * ARCHITECTURE.md "operations staff"). It reads a cluster description (YAML: each daemon's
 * name, kind and admin address), asks every daemon's admin endpoint for /healthz, /readyz and
 * /metrics (libcurl, short timeouts), and reads from PostgreSQL's read model the rejections
 * of the last hour and each scheme's last update. It prints every daemon up or down, every
 * adapter's freshness (last ack), spool depth and age, watermark lag and rejections, and each
 * scheme's last update; it exits 1 when something is wrong (a daemon down or not ready, an
 * adapter stale beyond the threshold, the database unreachable), so that a probe can use it.
 * It only reads.
 */
#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <yaml.h>

#include "kp_buf.h"
#include "kp_pg.h"
#include "kp_time.h"
#include "kpctl.h"

#define MAX_DAEMONS     128
#define NAME_MAX_LEN    64
#define DEFAULT_CLUSTER "/etc/kaoping/cluster.yaml"

enum kind { K_BROKER, K_COLLECTOR, K_SCORER, K_ADAPTER, K__COUNT };
static const char *const kind_names[K__COUNT] = {"broker", "collector", "scorer", "adapter"};

struct daemon {
    char name[NAME_MAX_LEN];
    enum kind kind;
    char admin[256];        /* host:port or http://host:port */
    char aid[NAME_MAX_LEN]; /* adapters: the adapter id (from its info metric, else the file) */
    double silent_after;    /* adapters: seconds without an ack that count as a problem; 0 off */
    /* what the endpoints said */
    bool up, ready;
    char why[160]; /* connection error, or the /readyz reason */
    struct kp_buf metrics;
    bool has_metrics;
};

struct status {
    const char *cluster_path;
    char database[512]; /* `database:` of the cluster file */
    struct daemon d[MAX_DAEMONS];
    size_t n;
    double stale_s;
    long timeout_s;
    char problems[4096];
    int n_problems;
};

__attribute__((format(printf, 2, 3))) static void problem(struct status *st, const char *fmt, ...)
{
    size_t len = strlen(st->problems);
    if (len + 4 < sizeof st->problems) {
        va_list ap;
        va_start(ap, fmt);
        snprintf(st->problems + len, sizeof st->problems - len, "  ");
        vsnprintf(st->problems + len + 2, sizeof st->problems - len - 2, fmt, ap);
        va_end(ap);
        len = strlen(st->problems);
        if (len + 1 < sizeof st->problems)
            strcat(st->problems, "\n");
    }
    st->n_problems++;
}

/* ---- the cluster file -------------------------------------------------------------------- */

static const char *scalar(yaml_document_t *doc, yaml_node_t *n)
{
    (void)doc;
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int cluster_error(const char *path, const yaml_node_t *n, const char *msg)
{
    fprintf(stderr, "kpctl status: %s:%lu: %s\n", path,
            n ? (unsigned long)n->start_mark.line + 1 : 1UL, msg);
    return 2;
}

static int load_daemon(struct status *st, yaml_document_t *doc, yaml_node_t *m)
{
    const char *path = st->cluster_path;
    if (m->type != YAML_MAPPING_NODE)
        return cluster_error(path, m, "daemons: each entry is a map (name, kind, admin)");
    if (st->n == MAX_DAEMONS)
        return cluster_error(path, m, "daemons: too many (128 at most)");
    struct daemon *d = &st->d[st->n];
    memset(d, 0, sizeof *d);
    d->kind = K__COUNT;
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        const char *k = scalar(doc, kn), *v = scalar(doc, vn);
        if (!k || !v)
            return cluster_error(path, kn, "daemons: keys and values are scalars");
        if (strcmp(k, "name") == 0) {
            if (strlen(v) >= sizeof d->name)
                return cluster_error(path, vn, "name: too long");
            snprintf(d->name, sizeof d->name, "%s", v);
        } else if (strcmp(k, "kind") == 0) {
            for (int i = 0; i < K__COUNT; i++)
                if (strcmp(v, kind_names[i]) == 0)
                    d->kind = (enum kind)i;
            if (d->kind == K__COUNT)
                return cluster_error(path, vn,
                                     "kind: expected broker, collector, scorer or adapter");
        } else if (strcmp(k, "admin") == 0) {
            if (strlen(v) >= sizeof d->admin)
                return cluster_error(path, vn, "admin: too long");
            snprintf(d->admin, sizeof d->admin, "%s", v);
        } else if (strcmp(k, "aid") == 0) {
            snprintf(d->aid, sizeof d->aid, "%s", v);
        } else if (strcmp(k, "silent_after") == 0) {
            char *end;
            d->silent_after = strtod(v, &end);
            if (*end || !(d->silent_after >= 0))
                return cluster_error(path, vn, "silent_after: expected seconds (a number >= 0)");
        } else {
            return cluster_error(path, kn, "unknown key (name, kind, admin, aid, silent_after)");
        }
    }
    if (!d->name[0] || d->kind == K__COUNT || !d->admin[0])
        return cluster_error(path, m, "daemons: name, kind and admin are required");
    if (d->kind == K_ADAPTER && !d->aid[0])
        snprintf(d->aid, sizeof d->aid, "%s",
                 strncmp(d->name, "adapter-", 8) == 0 ? d->name + 8 : d->name);
    st->n++;
    return 0;
}

/* Returns 0, or 2 (usage: a missing or malformed file) after printing why. */
static int load_cluster(struct status *st)
{
    const char *path = st->cluster_path;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr,
                "kpctl status: cannot read the cluster file %s (give --cluster FILE or "
                "set KP_CLUSTER)\n",
                path);
        return 2;
    }
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    int rc = 0;
    if (!yaml_parser_load(&parser, &doc)) {
        fprintf(stderr, "kpctl status: %s:%lu: %s\n", path,
                (unsigned long)parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "invalid YAML");
        yaml_parser_delete(&parser);
        fclose(f);
        return 2;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        rc = cluster_error(path, root, "expected a map with a `daemons:` list");
        goto out;
    }
    bool have_daemons = false;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *kn = yaml_document_get_node(&doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(&doc, p->value);
        const char *k = scalar(&doc, kn);
        if (k && strcmp(k, "daemons") == 0) {
            if (vn->type != YAML_SEQUENCE_NODE) {
                rc = cluster_error(path, vn, "daemons: expected a list");
                goto out;
            }
            have_daemons = true;
            for (yaml_node_item_t *it = vn->data.sequence.items.start;
                 it < vn->data.sequence.items.top; it++)
                if ((rc = load_daemon(st, &doc, yaml_document_get_node(&doc, *it))) != 0)
                    goto out;
        } else if (k && strcmp(k, "database") == 0 && scalar(&doc, vn)) {
            snprintf(st->database, sizeof st->database, "%s", scalar(&doc, vn));
        } else {
            rc = cluster_error(path, kn, "unknown key (daemons, database)");
            goto out;
        }
    }
    if (!have_daemons)
        rc = cluster_error(path, root, "daemons: missing");
out:
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
}

/* ---- the admin endpoints ----------------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    struct kp_buf *b = arg;
    if (b->len + size * n > 16u * 1024 * 1024)
        return 0; /* a /metrics page this large is not ours */
    kp_buf_append(b, p, size * n);
    return size * n;
}

/* GET http://ADMIN/path into body. Returns the HTTP status, or -1 with why filled. */
static long http_get(CURL *c, const char *admin, const char *path, long timeout_s,
                     struct kp_buf *body, char *why, size_t why_len)
{
    char url[400];
    snprintf(url, sizeof url, "%s%s%s", strncmp(admin, "http", 4) == 0 ? "" : "http://", admin,
             path);
    kp_buf_reset(body);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, timeout_s);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
        snprintf(why, why_len, "%s", curl_easy_strerror(rc));
        return -1;
    }
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    kp_buf_cstr(body);
    return code;
}

static void probe(CURL *c, struct status *st, struct daemon *d)
{
    struct kp_buf body = {0};
    long code = http_get(c, d->admin, "/healthz", st->timeout_s, &body, d->why, sizeof d->why);
    d->up = code == 200;
    if (code > 0 && code != 200)
        snprintf(d->why, sizeof d->why, "/healthz answered %ld", code);
    if (d->up) {
        code = http_get(c, d->admin, "/readyz", st->timeout_s, &body, d->why, sizeof d->why);
        d->ready = code == 200;
        if (code > 0 && !d->ready) {
            /* the reason the daemon gave, on one line */
            snprintf(d->why, sizeof d->why, "%s", body.len ? kp_buf_cstr(&body) : "not ready");
            d->why[strcspn(d->why, "\r\n")] = 0;
        }
        char dummy[160];
        if (http_get(c, d->admin, "/metrics", st->timeout_s, &d->metrics, dummy, sizeof dummy) ==
            200)
            d->has_metrics = true;
    }
    kp_buf_fini(&body);
}

/* The value of one series ("name" or "name{labels}" exactly as exposed), or NAN. */
static double metric(const struct daemon *d, const char *series)
{
    if (!d->has_metrics)
        return NAN;
    size_t n = strlen(series);
    const char *p = (const char *)d->metrics.data;
    while (p && *p) {
        if (strncmp(p, series, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return NAN;
}

/* The value of label `label` on the first series of family `name`, copied into out. */
static bool metric_label(const struct daemon *d, const char *name, const char *label, char *out,
                         size_t len)
{
    if (!d->has_metrics)
        return false;
    size_t n = strlen(name), ln = strlen(label);
    const char *p = (const char *)d->metrics.data;
    while (p && *p) {
        if (strncmp(p, name, n) == 0 && p[n] == '{') {
            const char *end = strchr(p, '}');
            for (const char *q = p + n + 1; q && end && q < end; q = strchr(q, ',')) {
                if (*q == ',')
                    q++;
                if (strncmp(q, label, ln) == 0 && q[ln] == '=' && q[ln + 1] == '"') {
                    const char *v = q + ln + 2, *e = strchr(v, '"');
                    if (!e || e > end)
                        return false;
                    snprintf(out, len, "%.*s", (int)(e - v), v);
                    return true;
                }
            }
            return false;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    return false;
}

/* Every scheme the broker knows with no live scorer is a problem (its batches are nacked). */
static void dead_schemes(struct status *st, const struct daemon *d)
{
    static const char fam[] = "kaoping_broker_scorer_live{scheme=\"";
    const char *p = d->has_metrics ? (const char *)d->metrics.data : NULL;
    while (p && *p) {
        if (strncmp(p, fam, sizeof fam - 1) == 0) {
            const char *s = p + sizeof fam - 1, *e = strchr(s, '"');
            if (e && strncmp(e, "\"} ", 3) == 0 && strtod(e + 3, NULL) == 0)
                problem(st, "%s: no live scorer serves scheme %.*s", d->name, (int)(e - s), s);
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
}

/* ---- formatting -------------------------------------------------------------------------- */

static const char *fmt_age(double s, char *buf, size_t len)
{
    if (isnan(s) || s < 0)
        snprintf(buf, len, "-");
    else if (s < 1)
        snprintf(buf, len, "<1s");
    else if (s < 60)
        snprintf(buf, len, "%.0fs", floor(s));
    else if (s < 3600)
        snprintf(buf, len, "%.0fm%02.0fs", floor(s / 60), fmod(floor(s), 60));
    else if (s < 86400)
        snprintf(buf, len, "%.0fh%02.0fm", floor(s / 3600), floor(fmod(s, 3600) / 60));
    else
        snprintf(buf, len, "%.0fd%02.0fh", floor(s / 86400), floor(fmod(s, 86400) / 3600));
    return buf;
}

static const char *fmt_num(double v, char *buf, size_t len)
{
    if (isnan(v))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.0f", v);
    return buf;
}

static void detail(const struct daemon *d, char *out, size_t len)
{
    char a[32], b[32], c[32], e[32];
    switch (d->kind) {
    case K_BROKER:
        snprintf(out, len, "schemes live %s, collectors %s, scorers %s, routed %s",
                 fmt_num(metric(d, "kaoping_broker_schemes_live"), a, sizeof a),
                 fmt_num(metric(d, "kaoping_broker_collectors_connected"), b, sizeof b),
                 fmt_num(metric(d, "kaoping_broker_scorers_connected"), c, sizeof c),
                 fmt_num(metric(d, "kaoping_broker_batches_routed_total"), e, sizeof e));
        break;
    case K_COLLECTOR:
        snprintf(out, len, "adapters %s, broker %s, forwarded %s, refused %s",
                 fmt_num(metric(d, "kaoping_collector_adapters_connected"), a, sizeof a),
                 metric(d, "kaoping_collector_broker_connected") == 1 ? "connected"
                                                                      : "DISCONNECTED",
                 fmt_num(metric(d, "kaoping_collector_batches_total{outcome=\"forwarded\"}"), b,
                         sizeof b),
                 fmt_num(metric(d, "kaoping_collector_batches_total{outcome=\"refused\"}"), c,
                         sizeof c));
        break;
    case K_SCORER:
        snprintf(
            out, len, "db %s, committed %s, stored %s, pg errors %s",
            metric(d, "kaoping_scorer_db_up") == 1 ? "up" : "DOWN",
            fmt_num(metric(d, "kaoping_scorer_batches_total{outcome=\"committed\"}"), a, sizeof a),
            fmt_num(metric(d, "kaoping_scorer_observations_stored_total"), b, sizeof b),
            fmt_num(metric(d, "kaoping_scorer_pg_errors_total"), c, sizeof c));
        break;
    default:
        snprintf(out, len, "rows %s, acked %s, retransmits %s",
                 fmt_num(metric(d, "kaoping_adapter_rows_pulled_total"), a, sizeof a),
                 fmt_num(metric(d, "kaoping_adapter_batches_acked_total"), b, sizeof b),
                 fmt_num(metric(d, "kaoping_adapter_retransmits_total"), c, sizeof c));
        break;
    }
}

/* ---- the database ------------------------------------------------------------------------ */

struct db_view {
    bool checked, ok;
    char err[300];
    struct kp_pg_res *rej;     /* adapter, count (last hour) */
    struct kp_pg_res *schemes; /* scheme, name, latest period, age s, rejections 1h */
};

static void read_db(struct status *st, int argc, char **argv, struct db_view *v)
{
    const char *dsn = kpctl_arg(argc, argv, "--dsn");
    if (!dsn)
        dsn = getenv("KP_DSN");
    if (!dsn && st->database[0])
        dsn = st->database;
    if (!dsn)
        return;
    v->checked = true;
    /* A database that does not answer must not hang a probe. */
    setenv("PGCONNECT_TIMEOUT", "5", 0);
    struct kp_pg *pg = NULL;
    if (kp_pg_open(dsn, &pg) != 0) {
        snprintf(v->err, sizeof v->err, "%s", pg ? kp_pg_errmsg(pg) : "out of memory");
        v->err[strcspn(v->err, "\n")] = 0;
        kp_pg_close(&pg);
        return;
    }
    if (kp_pg_exec(pg,
                   "SELECT adapter, count(*) FROM kp_rejection "
                   " WHERE received_at > now() - interval '1 hour' GROUP BY adapter",
                   0, NULL, &v->rej) != 0 ||
        kp_pg_exec(pg,
                   "SELECT k.scheme, k.name, "
                   "       (SELECT s.period FROM kp_unit_score s WHERE s.scheme = k.scheme "
                   "         ORDER BY s.updated_at DESC, s.period ~ '^[0-9]{4}-[0-9]{2}$' DESC, "
                   "                  s.period DESC LIMIT 1), "
                   "       (SELECT extract(epoch FROM now() - max(s.updated_at))::float8 "
                   "          FROM kp_unit_score s WHERE s.scheme = k.scheme), "
                   "       (SELECT count(*) FROM kp_rejection r WHERE r.scheme = k.scheme "
                   "           AND r.received_at > now() - interval '1 hour') "
                   "  FROM kp_scheme k ORDER BY k.scheme",
                   0, NULL, &v->schemes) != 0) {
        snprintf(v->err, sizeof v->err, "%s", kp_pg_errmsg(pg));
        v->err[strcspn(v->err, "\n")] = 0;
        kp_pg_res_free(&v->rej);
        kp_pg_close(&pg);
        return;
    }
    v->ok = true;
    kp_pg_close(&pg);
}

static const char *rejections_of(const struct db_view *v, const char *aid)
{
    if (!v->ok)
        return "-";
    for (int i = 0; i < kp_pg_res_ntuples(v->rej); i++)
        if (strcmp(kp_pg_res_value(v->rej, i, 0), aid) == 0)
            return kp_pg_res_value(v->rej, i, 1);
    return "0";
}

/* ---- the command ------------------------------------------------------------------------- */

static double arg_seconds(int argc, char **argv, const char *name, double def, bool *bad)
{
    const char *s = kpctl_arg(argc, argv, name);
    if (!s)
        return def;
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v > 0)) {
        fprintf(stderr, "kpctl status: %s: expected a number of seconds > 0, got \"%s\"\n", name,
                s);
        *bad = true;
    }
    return v;
}

static int cmd_status(int argc, char **argv)
{
    static struct status st; /* large: not on the stack */
    memset(&st, 0, sizeof st);
    for (int i = 0; i < argc; i++) {
        if (argv[i][0] != '-')
            continue;
        if (strcmp(argv[i], "--cluster") && strcmp(argv[i], "--dsn") &&
            strcmp(argv[i], "--stale") && strcmp(argv[i], "--timeout")) {
            fprintf(stderr, "kpctl status: unknown option %s (try --help)\n", argv[i]);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "kpctl status: %s needs a value\n", argv[i]);
            return 2;
        }
        i++;
    }
    bool bad = false;
    st.stale_s = arg_seconds(argc, argv, "--stale", 300, &bad);
    st.timeout_s = (long)ceil(arg_seconds(argc, argv, "--timeout", 2, &bad));
    if (bad)
        return 2;
    st.cluster_path = kpctl_arg(argc, argv, "--cluster");
    if (!st.cluster_path)
        st.cluster_path = getenv("KP_CLUSTER");
    if (!st.cluster_path)
        st.cluster_path = DEFAULT_CLUSTER;
    int rc = load_cluster(&st);
    if (rc)
        return rc;

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    if (!c) {
        fprintf(stderr, "kpctl status: cannot initialise libcurl\n");
        return 1;
    }
    for (size_t i = 0; i < st.n; i++)
        probe(c, &st, &st.d[i]);
    curl_easy_cleanup(c);
    curl_global_cleanup();

    struct db_view db = {0};
    read_db(&st, argc, argv, &db);

    char when[64];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", &tm);
    printf("kaoping status  %s  (%s, %zu daemons)\n\n", when, st.cluster_path, st.n);

    /* daemons */
    int w = 6;
    for (size_t i = 0; i < st.n; i++)
        if (kpctl_display_width(st.d[i].name) > w)
            w = kpctl_display_width(st.d[i].name);
    kpctl_print_padded("DAEMON", w + 2);
    printf("%-10s %-6s %-8s %s\n", "KIND", "STATE", "READY", "DETAIL");
    for (size_t i = 0; i < st.n; i++) {
        struct daemon *d = &st.d[i];
        char det[300];
        /* A scorer connected to PostgreSQL but not serving is a standby waiting for a scheme's
         * lock (failover): expected, not a problem; the broker says whether schemes are live. */
        bool standby =
            d->kind == K_SCORER && d->up && !d->ready && metric(d, "kaoping_scorer_db_up") == 1;
        if (!d->up) /* %.*s: the detail column is a summary, a long reason may be cut */
            snprintf(det, sizeof det, "%.100s: %.180s", d->admin, d->why);
        else if (!d->ready && !standby)
            snprintf(det, sizeof det, "%s", d->why);
        else
            detail(d, det, sizeof det);
        kpctl_print_padded(d->name, w + 2);
        printf("%-10s %-6s %-8s %s\n", kind_names[d->kind], d->up ? "up" : "DOWN",
               !d->up     ? "-"
               : d->ready ? "ready"
               : standby  ? "standby"
                          : "UNREADY",
               det);
        if (!d->up)
            problem(&st, "%s: down (%s: %s)", d->name, d->admin, d->why);
        else if (!d->ready && !standby)
            problem(&st, "%s: not ready (%s)", d->name, d->why);
        if (d->kind == K_BROKER && d->up)
            dead_schemes(&st, d);
    }

    /* adapters */
    bool any_adapter = false;
    for (size_t i = 0; i < st.n; i++)
        any_adapter |= st.d[i].kind == K_ADAPTER;
    if (any_adapter) {
        printf("\n");
        kpctl_print_padded("ADAPTER", w + 2);
        printf("%-12s %-9s %6s %8s %8s %5s %7s  %s\n", "AID", "LAST ACK", "SPOOL", "OLDEST", "LAG",
               "DEAD", "REJ 1H", "STATE");
        double now_s = (double)kp_now_ms() / 1000.0;
        for (size_t i = 0; i < st.n; i++) {
            struct daemon *d = &st.d[i];
            if (d->kind != K_ADAPTER)
                continue;
            metric_label(d, "kaoping_adapter_info", "aid", d->aid, sizeof d->aid);
            double last = metric(d, "kaoping_adapter_last_success_timestamp_seconds");
            double depth = metric(d, "kaoping_adapter_spool_depth");
            double oldest = metric(d, "kaoping_adapter_spool_oldest_age_seconds");
            double lag = metric(d, "kaoping_adapter_watermark_lag_seconds");
            double dead = metric(d, "kaoping_adapter_spool_dead");
            double since = last > 0 ? now_s - last : NAN;
            char s1[32], s2[32], s3[32], s4[32], s5[32], state[200] = "ok";
            if (!d->up) {
                snprintf(state, sizeof state, "DOWN");
            } else {
                if (depth > 0 && oldest > st.stale_s) {
                    snprintf(state, sizeof state, "STALE: spool waiting %s",
                             fmt_age(oldest, s1, sizeof s1));
                    problem(&st, "%s: %.0f batches waiting, the oldest for %s (threshold %.0fs)",
                            d->name, depth, s1, st.stale_s);
                } else if (lag > st.stale_s) {
                    snprintf(state, sizeof state, "STALE: cursor %s behind",
                             fmt_age(lag, s1, sizeof s1));
                    problem(&st, "%s: the source cursor is %s behind (threshold %.0fs)", d->name,
                            s1, st.stale_s);
                } else if (d->silent_after > 0 && !(since <= d->silent_after)) {
                    snprintf(state, sizeof state, "SILENT");
                    problem(&st, "%s: no ack for %s (silent_after %.0fs)", d->name,
                            isnan(since) ? "ever" : fmt_age(since, s1, sizeof s1), d->silent_after);
                } else if (!d->ready) {
                    snprintf(state, sizeof state, "UNREADY");
                }
            }
            kpctl_print_padded(d->name, w + 2);
            kpctl_print_padded(d->aid, 13);
            printf("%-9s %6s %8s %8s %5s %7s  %s\n",
                   isnan(since) ? (d->up ? "never" : "-") : fmt_age(since, s1, sizeof s1),
                   fmt_num(depth, s2, sizeof s2), depth > 0 ? fmt_age(oldest, s3, sizeof s3) : "-",
                   fmt_age(lag, s4, sizeof s4), fmt_num(dead, s5, sizeof s5),
                   rejections_of(&db, d->aid), state);
        }
    }

    /* schemes */
    printf("\n");
    if (!db.checked) {
        printf("database: not checked (give --dsn, set KP_DSN or `database:` in the cluster "
               "file)\n");
    } else if (!db.ok) {
        printf("database: UNREACHABLE: %s\n", db.err);
        problem(&st, "database: unreachable (%s)", db.err);
    } else {
        int sw = 6, nw = 4;
        for (int i = 0; i < kp_pg_res_ntuples(db.schemes); i++) {
            int a = kpctl_display_width(kp_pg_res_value(db.schemes, i, 0));
            int b = kpctl_display_width(kp_pg_res_value(db.schemes, i, 1));
            sw = a > sw ? a : sw;
            nw = b > nw ? b : nw;
        }
        kpctl_print_padded("SCHEME", sw + 2);
        kpctl_print_padded("NAME", nw + 2);
        printf("%-10s %-12s %s\n", "PERIOD", "LAST UPDATE", "REJ 1H");
        for (int i = 0; i < kp_pg_res_ntuples(db.schemes); i++) {
            char age[32], ago[40];
            bool never = kp_pg_res_isnull(db.schemes, i, 3);
            if (!never)
                snprintf(ago, sizeof ago, "%s ago",
                         fmt_age(atof(kp_pg_res_value(db.schemes, i, 3)), age, sizeof age));
            kpctl_print_padded(kp_pg_res_value(db.schemes, i, 0), sw + 2);
            kpctl_print_padded(kp_pg_res_value(db.schemes, i, 1), nw + 2);
            printf("%-10s %-12s %s\n",
                   kp_pg_res_isnull(db.schemes, i, 2) ? "-" : kp_pg_res_value(db.schemes, i, 2),
                   never ? "never" : ago, kp_pg_res_value(db.schemes, i, 4));
        }
        if (kp_pg_res_ntuples(db.schemes) == 0)
            printf("(no scheme loaded yet)\n");
        printf("database: ok\n");
    }
    kp_pg_res_free(&db.rej);
    kp_pg_res_free(&db.schemes);
    for (size_t i = 0; i < st.n; i++)
        kp_buf_fini(&st.d[i].metrics);

    if (st.n_problems == 0) {
        printf("\nstatus: OK\n");
        return 0;
    }
    printf("\nstatus: %d problem%s\n%s", st.n_problems, st.n_problems == 1 ? "" : "s", st.problems);
    return 1;
}

const struct kpctl_cmd kpctl_cmd_status = {
    .name = "status",
    .usage = "status [--cluster FILE] [--dsn DSN] [--stale SECONDS] [--timeout SECONDS]",
    .summary =
        "every daemon up or down and ready, every adapter's last ack, spool depth and age,\n"
        "watermark lag and rejections in the last hour, each scheme's last update; exits 1\n"
        "when something is wrong (a daemon down or not ready, an adapter's spool or cursor\n"
        "older than --stale (default 300 s), an adapter silent beyond its silent_after, the\n"
        "database unreachable), for cron and probes. The cluster file (--cluster, $KP_CLUSTER\n"
        "or " DEFAULT_CLUSTER ") lists `daemons:` with name, kind, admin (host:port);\n"
        "the database is --dsn, $KP_DSN or its `database:`.",
    .run = cmd_status,
};
