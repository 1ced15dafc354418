/*
 * kpctl scheme: validates a scheme file with the engine's loader and lists (TSV) its groups,
 * units, leaf indicators with their methods, and the (unit, leaf) cells that apply.
 */
#include <stdio.h>

#include "kpctl.h"
#include "score_engine.h"

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

const struct kpctl_cmd kpctl_cmd_scheme = {
    "scheme", "scheme FILE",
    "validate a scheme file and list (TSV) its groups, units, leaf indicators\n"
    "with their methods, and the (unit, leaf) cells that apply",
    cmd_scheme,
};
