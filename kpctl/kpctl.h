/*
 * kpctl: shared pieces of the operator's command-line tool. Each command lives in its own
 * file kpctl_<command>.c and is listed once in the table of kpctl.c.
 */
#ifndef KPCTL_H
#define KPCTL_H

#include <stdbool.h>

struct kp_pg;

struct kpctl_cmd {
    const char *name;
    const char *usage;   /* "scores SCHEME [--period P] [--group G] [--dsn DSN]" */
    const char *summary; /* indented help text, may span lines */
    /* argv[0] is the first argument after the command name. Returns the exit code:
     * 0 ok, 1 failure or something wrong, 2 usage error. */
    int (*run)(int argc, char **argv);
};

/* The value after `name` in argv ("--period 2015-03"), or NULL. */
const char *kpctl_arg(int argc, char **argv, const char *name);
/* True when the flag appears in argv. */
bool kpctl_flag(int argc, char **argv, const char *name);
/* Connects to --dsn or $KP_DSN; prints the reason and returns 1 or 2 on failure. */
int kpctl_open_db(int argc, char **argv, struct kp_pg **pg);
/* Display width of UTF-8 text (East Asian wide characters are 2 columns). */
int kpctl_display_width(const char *s);
/* Prints s padded with spaces to `width` display columns. */
void kpctl_print_padded(const char *s, int width);

#endif
