/*
 * kpctl: the operator's command-line tool. It reads the read model of PROTOCOL.md through
 * kp_pg and scheme files through the scoring engine's loader; it never writes scores. Each
 * command is a file kpctl_<name>.c exporting one struct kpctl_cmd, listed in the table below.
 * The database comes from --dsn or $KP_DSN (prefer the environment: argv is visible to
 * every user of the machine).
 */
#include <stdio.h>
#include <string.h>

#include "kpctl.h"

extern const struct kpctl_cmd kpctl_cmd_scores;
extern const struct kpctl_cmd kpctl_cmd_scheme;
extern const struct kpctl_cmd kpctl_cmd_dlq;
extern const struct kpctl_cmd kpctl_cmd_status;
extern const struct kpctl_cmd kpctl_cmd_alerts;
extern const struct kpctl_cmd kpctl_cmd_tap;
extern const struct kpctl_cmd kpctl_cmd_keygen;
extern const struct kpctl_cmd kpctl_cmd_explain;

static const struct kpctl_cmd *const commands[] = {
    &kpctl_cmd_scores,
    &kpctl_cmd_scheme,
    &kpctl_cmd_dlq,
    &kpctl_cmd_status,
    &kpctl_cmd_alerts,
    &kpctl_cmd_tap,
    &kpctl_cmd_keygen,
    &kpctl_cmd_explain,
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void print_summary(FILE *out, const char *text)
{
    fputs("      ", out);
    for (const char *p = text; *p; p++) {
        fputc(*p, out);
        if (*p == '\n')
            fputs("      ", out);
    }
    fputc('\n', out);
}

static void usage(FILE *out)
{
    fputs("usage: kpctl COMMAND [options]    (kpctl COMMAND --help for one command)\n\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        fprintf(out, "  %s\n", commands[i]->usage);
        print_summary(out, commands[i]->summary);
    }
    fputs("  help\n      this text\n\n"
          "The database is --dsn DSN or $KP_DSN (a libpq connection string).\n",
          out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        const struct kpctl_cmd *c = commands[i];
        if (strcmp(argv[1], c->name) != 0)
            continue;
        for (int k = 2; k < argc; k++)
            if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
                printf("usage: kpctl %s\n", c->usage);
                print_summary(stdout, c->summary);
                return 0;
            }
        return c->run(argc - 2, argv + 2);
    }
    fprintf(stderr, "kpctl: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return 2;
}
