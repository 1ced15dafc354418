/*
 * kpctl alerts: the alerts of a scheme (or of every scheme) from the kp_alert view of
 * PROTOCOL.md (issue 7): by default the firing ones, red first, with the unit's and the
 * indicator's Chinese names and the time each started to fire (startsAt in Alertmanager);
 * with --all also the pending ones and the latest resolved ones. It only reads.
 */
#include <stdio.h>
#include <string.h>

#include "kp_pg.h"
#include "kpctl.h"

static int cmd_alerts(int argc, char **argv)
{
    const char *scheme = argc >= 1 && argv[0][0] != '-' ? argv[0] : NULL;
    bool all = kpctl_flag(argc, argv, "--all");
    const char *sev = kpctl_arg(argc, argv, "--severity");
    const char *limit = kpctl_arg(argc, argv, "--limit");
    if (sev && strcmp(sev, "warning") && strcmp(sev, "yellow") && strcmp(sev, "red")) {
        fprintf(stderr, "kpctl alerts: --severity is warning, yellow or red\n");
        return 2;
    }
    struct kp_pg *pg = NULL;
    int rc = kpctl_open_db(argc, argv, &pg);
    if (rc)
        return rc;
    const char *p[4] = {scheme, all ? "t" : "f", sev, limit ? limit : "200"};
    struct kp_pg_res *res = NULL;
    if (kp_pg_exec(
            pg,
            "SELECT a.scheme, a.state, a.severity, a.rule, coalesce(a.unit, ''), "
            "       coalesce(u.name, a.labels->>'adapter', ''), coalesce(a.indicator, ''), "
            "       coalesce(a.period, ''), "
            "       coalesce(to_char(coalesce(a.fired_at, a.pending_at) "
            "                AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD HH24:MI'), ''), "
            "       coalesce(to_char(a.resolved_at AT TIME ZONE 'Asia/Shanghai', "
            "                'YYYY-MM-DD HH24:MI'), ''), a.summary "
            "  FROM kp_alert a "
            "  LEFT JOIN kp_unit u ON u.scheme = a.scheme AND u.unit = a.unit "
            " WHERE ($1::text IS NULL OR a.scheme = $1) "
            "   AND (a.state = 'firing' OR ($2::bool AND a.state IN ('pending', 'resolved'))) "
            "   AND ($3::text IS NULL OR a.severity = $3) "
            " ORDER BY a.scheme, a.state = 'resolved', a.state = 'pending', "
            "          CASE a.severity WHEN 'red' THEN 0 WHEN 'yellow' THEN 1 ELSE 2 END, "
            "          a.rule, a.unit, a.indicator, a.period, a.id DESC "
            " LIMIT $4::int",
            4, p, &res) != 0) {
        fprintf(stderr, "kpctl: %s\n", kp_pg_errmsg(pg));
        kp_pg_close(&pg);
        return 1;
    }
    int n = kp_pg_res_ntuples(res);
    if (n == 0)
        printf("%s: no %s alerts\n", scheme ? scheme : "all schemes", all ? "recorded" : "firing");
    const char *cur = NULL;
    for (int i = 0; i < n; i++) {
        const char *sc = kp_pg_res_value(res, i, 0);
        if (!cur || strcmp(cur, sc)) {
            printf("%s%s\n", cur ? "\n" : "", sc);
            printf("  %-8s %-7s %-18s %-10s %-20s %-22s %-8s %-16s %s\n", "state", "sev", "rule",
                   "unit", "name", "indicator", "period", all ? "since / resolved" : "since",
                   "summary");
            cur = sc;
        }
        printf("  %-8s %-7s %-18s %-10s ", kp_pg_res_value(res, i, 1), kp_pg_res_value(res, i, 2),
               kp_pg_res_value(res, i, 3), kp_pg_res_value(res, i, 4));
        kpctl_print_padded(kp_pg_res_value(res, i, 5), 20);
        printf(" %-22s %-8s %-16s ", kp_pg_res_value(res, i, 6), kp_pg_res_value(res, i, 7),
               kp_pg_res_value(res, i, 8));
        if (kp_pg_res_value(res, i, 9)[0])
            printf("(resolved %s) ", kp_pg_res_value(res, i, 9));
        printf("%s\n", kp_pg_res_value(res, i, 10));
    }
    kp_pg_res_free(&res);
    kp_pg_close(&pg);
    return 0;
}

const struct kpctl_cmd kpctl_cmd_alerts = {
    "alerts",
    "alerts [SCHEME] [--all] [--severity S] [--limit N] [--dsn DSN]",
    "the firing alerts (kp_alert), red first; --all adds pending and resolved ones",
    cmd_alerts,
};
