/*
 * replay: the main() of a fuzz target for builds without libFuzzer (gcc, the sanitizer
 * build): `fuzz_X_replay PATH...` runs every regular file of each directory PATH (or the file
 * PATH) through LLVMFuzzerTestOneInput once, in name order, and prints how many it ran. A
 * crash or a broken invariant aborts, which fails the CTest entry. Inputs up to 16 MiB.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define MAX_INPUT (16u << 20)

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(MAX_INPUT + 1);
    size_t n = buf ? fread(buf, 1, MAX_INPUT + 1, f) : 0;
    fclose(f);
    if (!buf || n > MAX_INPUT) {
        fprintf(stderr, "%s: larger than %u bytes\n", path, MAX_INPUT);
        free(buf);
        return -1;
    }
    /* An exact-size copy, so that the sanitizers see a read past the end. */
    uint8_t *in = malloc(n ? n : 1);
    memcpy(in, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(in, n);
    free(in);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_path(const char *path, unsigned long *count)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return run_file(path);
    }
    DIR *d = opendir(path);
    if (!d)
        return -1;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            names = realloc(names, cap * sizeof *names);
        }
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        names[n] = malloc(len);
        snprintf(names[n], len, "%s/%s", path, e->d_name);
        n++;
    }
    closedir(d);
    if (n)
        qsort(names, n, sizeof *names, cmp);
    int rc = 0;
    for (size_t k = 0; k < n; k++) {
        if (stat(names[k], &st) == 0 && S_ISREG(st.st_mode)) {
            (*count)++;
            if (run_file(names[k]) != 0)
                rc = -1;
        }
        free(names[k]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    unsigned long count = 0;
    int rc = 0;
    for (int k = 1; k < argc; k++)
        if (run_path(argv[k], &count) != 0)
            rc = 1;
    printf("%s: %lu inputs replayed\n", argv[0], count);
    if (count == 0) {
        fprintf(stderr, "no input found\n");
        return 1;
    }
    return rc;
}
