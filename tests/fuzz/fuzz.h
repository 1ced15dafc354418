/*
 * fuzz: what every fuzz target of tests/fuzz shares. Each target is one parser of outside
 * input (STYLE.md "Tests": one libFuzzer target per parser, with a corpus and a replay driver
 * for gcc builds): fuzz_msg (the wire decoder and validators, lib/kp_msg.c), fuzz_scheme (the
 * scheme loader, scorer/score_scheme.c), fuzz_csv (the csv source's decoder and record
 * reader, adapters/csv/src_csv_reader.c). Built with clang -fsanitize=fuzzer they are libFuzzer
 * binaries (tests/fuzz/run.sh); linked with replay.c they run every file of a corpus once
 * (CTest fuzz.replay_*, in the normal and the sanitizer build).
 */
#ifndef KP_FUZZ_H
#define KP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* The libFuzzer entry point: one input; returns 0. A broken invariant aborts. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An invariant of the code under test: abort (a crash libFuzzer reports) when it fails. */
#define FZ_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
