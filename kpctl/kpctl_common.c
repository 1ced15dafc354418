/*
 * kpctl_common: argument, database and terminal helpers shared by kpctl's commands.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_pg.h"
#include "kpctl.h"

/* Display width of a UTF-8 string: East Asian wide characters count 2 columns. */
int kpctl_display_width(const char *s)
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

void kpctl_print_padded(const char *s, int width)
{
    fputs(s, stdout);
    for (int w = kpctl_display_width(s); w < width; w++)
        putchar(' ');
}

const char *kpctl_arg(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

bool kpctl_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

int kpctl_open_db(int argc, char **argv, struct kp_pg **pg)
{
    const char *dsn = kpctl_arg(argc, argv, "--dsn");
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
