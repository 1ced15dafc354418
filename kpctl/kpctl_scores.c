/*
 * kpctl scores: the live ranking of a scheme, read from the kp_unit_score view of
 * PROTOCOL.md, one table per group with totals, coverage and grades; Chinese names aligned.
 */
#include <stdio.h>
#include <string.h>

#include "kp_pg.h"
#include "kpctl.h"

static int cmd_scores(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "kpctl scores: missing SCHEME\n");
        return 2;
    }
    const char *scheme = argv[0];
    const char *period = kpctl_arg(argc, argv, "--period");
    const char *group = kpctl_arg(argc, argv, "--group");
    struct kp_pg *pg = NULL;
    int rc = kpctl_open_db(argc, argv, &pg);
    if (rc)
        return rc;
    struct kp_pg_res *res = NULL;
    char pbuf[32] = "";
    if (!period) {
        const char *p[1] = {scheme};
        /* The latest month when there are monthly scores (the live view), else the latest
         * period of any kind. */
        if (kp_pg_exec(pg,
                       "SELECT period FROM kp_unit_score WHERE scheme = $1 "
                       "ORDER BY period ~ '^[0-9]{4}-[0-9]{2}$' DESC, period DESC LIMIT 1",
                       1, p, &res) != 0) {
            fprintf(stderr, "kpctl: %s\n", kp_pg_errmsg(pg));
            kp_pg_close(&pg);
            return 1;
        }
        if (kp_pg_res_ntuples(res) == 0) {
            printf("%s: no scores yet\n", scheme);
            kp_pg_res_free(&res);
            kp_pg_close(&pg);
            return 0;
        }
        snprintf(pbuf, sizeof pbuf, "%s", kp_pg_res_value(res, 0, 0));
        kp_pg_res_free(&res);
        period = pbuf;
    }
    const char *params[3] = {scheme, period, group};
    if (kp_pg_exec(pg,
                   "SELECT s.grp, coalesce(g.name, s.grp), s.rank, s.unit, s.unit_name, "
                   "       to_char(s.total, 'FM990.00'), to_char(s.coverage * 100, 'FM990'), "
                   "       s.grade, s.vetoed "
                   "  FROM kp_unit_score s "
                   "  LEFT JOIN kp_group g ON g.scheme = s.scheme AND g.grp = s.grp "
                   " WHERE s.scheme = $1 AND s.period = $2 AND ($3::text IS NULL OR s.grp = $3) "
                   " ORDER BY s.grp, s.rank, s.unit",
                   3, params, &res) != 0) {
        fprintf(stderr, "kpctl: %s\n", kp_pg_errmsg(pg));
        kp_pg_close(&pg);
        return 1;
    }
    int n = kp_pg_res_ntuples(res);
    printf("%s  period %s  (%d units)\n", scheme, period, n);
    const char *cur = NULL;
    for (int i = 0; i < n; i++) {
        const char *grp = kp_pg_res_value(res, i, 0);
        if (!cur || strcmp(cur, grp) != 0) {
            printf("\n%s %s\n", grp, kp_pg_res_value(res, i, 1));
            printf("  rank  unit        name                      total  cover  grade\n");
            cur = grp;
        }
        printf("  %4s  ", kp_pg_res_value(res, i, 2));
        kpctl_print_padded(kp_pg_res_value(res, i, 3), 12);
        kpctl_print_padded(kp_pg_res_value(res, i, 4), 24);
        printf("%7s  %4s%%  ", kp_pg_res_value(res, i, 5), kp_pg_res_value(res, i, 6));
        kpctl_print_padded(kp_pg_res_value(res, i, 7), 4);
        if (strcmp(kp_pg_res_value(res, i, 8), "t") == 0)
            fputs("  vetoed", stdout);
        putchar('\n');
    }
    kp_pg_res_free(&res);
    kp_pg_close(&pg);
    return 0;
}

const struct kpctl_cmd kpctl_cmd_scores = {
    "scores", "scores SCHEME [--period P] [--group G] [--dsn DSN]",
    "the ranking of every group (or one) with totals, coverage and grades;\n"
    "without --period: the latest month with scores (else the latest period)",
    cmd_scores,
};
