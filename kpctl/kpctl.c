/*
 * kpctl: the operator's command-line tool. It reads the read model of PROTOCOL.md
 * (kp_unit_score, ...) through kp_pg and the scheme files through the scoring engine's
 * loader; it never writes scores. Subcommands:
 *
 *   kpctl scores SCHEME [--period P] [--group G] [--dsn DSN]   ranking per group
 *   kpctl scheme FILE                                          units, leaves and cells of a scheme
 *
 * The database comes from --dsn or the KP_DSN environment variable (never argv in
 * production: prefer the environment, issue 6).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_err.h"
#include "kp_pg.h"
#include "score_engine.h"

static void usage(FILE *out)
{
    fputs("usage: kpctl COMMAND [options]\n\n"
          "commands:\n"
          "  scores SCHEME [--period P] [--group G] [--dsn DSN]\n"
          "      the ranking of every group (or one) with totals, coverage and grades;\n"
          "      without --period: the latest month with scores (else the latest period)\n"
          "  scheme FILE\n"
          "      validate a scheme file and list (TSV) its groups, units, leaf indicators\n"
          "      with their methods, and the (unit, leaf) cells that apply\n"
          "  help\n"
          "      this text\n\n"
          "The database is --dsn or $KP_DSN (libpq connection string).\n",
          out);
}

/* Display width of a UTF-8 string: East Asian wide characters count 2 columns. */
static int display_width(const char *s)
{
    int w = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned int cp;
        int n;
        if (*p < 0x80) {
            cp = *p;
            n = 1;
        } else if ((*p & 0xE0) == 0xC0) {
            cp = *p & 0x1F;
            n = 2;
        } else if ((*p & 0xF0) == 0xE0) {
            cp = *p & 0x0F;
            n = 3;
        } else {
            cp = *p & 0x07;
            n = 4;
        }
        for (int k = 1; k < n && p[k]; k++)
            cp = (cp << 6) | (p[k] & 0x3F);
        bool wide = (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) ||
                    (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
                    (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
                    (cp >= 0xFFE0 && cp <= 0xFFE6);
        w += wide ? 2 : 1;
        for (int k = 0; k < n && *p; k++)
            p++;
    }
    return w;
}

static void print_padded(const char *s, int width)
{
    fputs(s, stdout);
    for (int w = display_width(s); w < width; w++)
        putchar(' ');
}

static const char *arg_value(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

static int open_db(int argc, char **argv, struct kp_pg **pg)
{
    const char *dsn = arg_value(argc, argv, "--dsn");
    if (!dsn)
        dsn = getenv("KP_DSN");
    if (!dsn) {
        fprintf(stderr, "kpctl: no database: give --dsn or set KP_DSN\n");
        return 2;
    }
    if (kp_pg_open(dsn, pg) != 0) {
        fprintf(stderr, "kpctl: cannot connect: %s\n", *pg ? kp_pg_errmsg(*pg) : "out of memory");
        kp_pg_close(pg);
        return 1;
    }
    return 0;
}

static int cmd_scores(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "kpctl scores: missing SCHEME\n");
        return 2;
    }
    const char *scheme = argv[0];
    const char *period = arg_value(argc, argv, "--period");
    const char *group = arg_value(argc, argv, "--group");
    struct kp_pg *pg = NULL;
    int rc = open_db(argc, argv, &pg);
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
        print_padded(kp_pg_res_value(res, i, 3), 12);
        print_padded(kp_pg_res_value(res, i, 4), 24);
        printf("%7s  %4s%%  ", kp_pg_res_value(res, i, 5), kp_pg_res_value(res, i, 6));
        print_padded(kp_pg_res_value(res, i, 7), 4);
        if (strcmp(kp_pg_res_value(res, i, 8), "t") == 0)
            fputs("  vetoed", stdout);
        putchar('\n');
    }
    kp_pg_res_free(&res);
    kp_pg_close(&pg);
    return 0;
}

static int cmd_scheme(int argc, char **argv)
{
    if (argc < 1 || argv[0][0] == '-') {
        fprintf(stderr, "kpctl scheme: missing FILE\n");
        return 2;
    }
    char err[512];
    struct score_scheme *s = NULL;
    if (score_scheme_load(argv[0], &s, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("scheme\t%s\t%s\n", score_scheme_id(s), score_scheme_name(s));
    for (size_t g = 0; g < score_scheme_n_groups(s); g++)
        printf("group\t%s\t%s\n", score_scheme_group_code(s, g), score_scheme_group_name(s, g));
    for (size_t u = 0; u < score_scheme_n_units(s); u++)
        printf("unit\t%s\t%s\t%s\n", score_scheme_unit_code(s, u), score_scheme_unit_name(s, u),
               score_scheme_group_code(s, score_scheme_unit_group(s, u)));
    for (size_t n = 1; n < score_scheme_n_nodes(s); n++) {
        if (!score_scheme_node_is_leaf(s, n))
            continue;
        printf("leaf\t%s\t%s\t%s\n", score_scheme_node_code(s, n), score_scheme_node_name(s, n),
               score_scheme_node_method(s, n));
    }
    for (size_t u = 0; u < score_scheme_n_units(s); u++)
        for (size_t n = 1; n < score_scheme_n_nodes(s); n++)
            if (score_scheme_node_is_leaf(s, n) && score_scheme_node_weight(s, u, n) > 0)
                printf("cell\t%s\t%s\n", score_scheme_unit_code(s, u),
                       score_scheme_node_code(s, n));
    score_scheme_destroy(&s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    if (strcmp(argv[1], "scores") == 0)
        return cmd_scores(argc - 2, argv + 2);
    if (strcmp(argv[1], "scheme") == 0)
        return cmd_scheme(argc - 2, argv + 2);
    fprintf(stderr, "kpctl: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
