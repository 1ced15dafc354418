/*
 * fuzz_scheme: the scheme loader (scorer/score_scheme.c): YAML written by people, read by
 * every scorer at start-up and by `kpctl scheme`. The input is written to a temp file and
 * loaded. A refusal must come back as KP_ESCHEME with a message and no object; a scheme that
 * loads must be usable: its codes are codes, and an engine built on it takes one observation
 * per leaf for two units and reports finite scores (what a scorer would do with it next).
 */
#include <math.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "fuzz.h"
#include "kp_err.h"
#include "kp_msg.h"
#include "score_engine.h"

static char g_path[64];

static void remove_file(void)
{
    if (g_path[0])
        unlink(g_path);
}

static void on_cell(const struct score_cell_change *c, void *arg)
{
    (void)arg;
    FZ_ASSERT(!isnan(c->score));
}

static void on_total(const struct score_total_change *t, void *arg)
{
    (void)arg;
    FZ_ASSERT(!isnan(t->total) && t->coverage >= 0 && t->coverage <= 1 + 1e-9);
}

static void exercise(const struct score_scheme *sc)
{
    FZ_ASSERT(kp_code_valid(score_scheme_id(sc), strlen(score_scheme_id(sc))));
    size_t nu = score_scheme_n_units(sc), nn = score_scheme_n_nodes(sc);
    for (size_t u = 0; u < nu; u++)
        FZ_ASSERT(score_scheme_unit_group(sc, u) < score_scheme_n_groups(sc));
    struct score_engine *e = NULL;
    if (score_engine_new(sc, &e) != 0)
        return;
    int year = score_scheme_year(sc);
    char period[16], yearly[8];
    snprintf(period, sizeof period, "%04d-06", year > 0 && year < 10000 ? year : 2015);
    snprintf(yearly, sizeof yearly, "%.4s", period);
    static const double values[] = {0, 1, 50, 100, -3.5, 1e6};
    score_engine_begin(e);
    for (size_t n = 1; n < nn && n < 400; n++) {
        if (!score_scheme_node_is_leaf(sc, n))
            continue;
        for (size_t k = 0; k < 2 && k < nu; k++) {
            size_t u = k == 0 ? 0 : nu - 1;
            char ref[32];
            snprintf(ref, sizeof ref, "r%zu-%zu", n, k);
            const char *prd = period;
            for (int alt = 0; alt < 2; alt++) {
                struct score_obs o = {
                    .src = "fz",
                    .ref = ref,
                    .rev = (uint64_t)alt,
                    .unit = score_scheme_unit_code(sc, u),
                    .indicator = score_scheme_node_code(sc, n),
                    .period = prd,
                    .value = values[(n + k + (size_t)alt) % 6],
                    .w = 1,
                    .at = 1433116800000LL,
                };
                char msg[KP_MSG_TEXT_MAX];
                if (score_engine_check(e, &o, msg, sizeof msg) == KP_R_OK)
                    FZ_ASSERT(score_engine_apply(e, &o) == KP_R_OK);
                prd = yearly; /* a yearly period as the second try */
            }
        }
    }
    score_engine_changes(e, on_cell, on_total, NULL);
    score_engine_commit(e);
    score_engine_foreach_total(e, on_total, NULL);
    score_engine_destroy(&e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_path[0]) {
        snprintf(g_path, sizeof g_path, "/tmp/kp-fuzz-scheme-%ld.yaml", (long)getpid());
        atexit(remove_file);
    }
    FILE *f = fopen(g_path, "wb");
    if (!f)
        abort();
    if (size && fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);
    struct score_scheme *sc = (struct score_scheme *)g_path; /* must be NULL after a refusal */
    char err[1024] = "";
    int rc = score_scheme_load(g_path, &sc, err, sizeof err);
    if (rc != 0) {
        FZ_ASSERT(rc == KP_ESCHEME);
        FZ_ASSERT(sc == NULL);
        FZ_ASSERT(err[0] != 0 && strnlen(err, sizeof err) < sizeof err);
        return 0;
    }
    FZ_ASSERT(sc != NULL);
    exercise(sc);
    score_scheme_destroy(&sc);
    FZ_ASSERT(sc == NULL);
    return 0;
}
