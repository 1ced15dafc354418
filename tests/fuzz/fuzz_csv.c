/*
 * fuzz_csv: the csv source's text side (adapters/csv/src_csv_reader.c): a department's export
 * file decoded to UTF-8 (UTF-8 with or without BOM, GBK, GB18030), read record by record with
 * the byte offsets the crash cursor stores, and each cell read as a period the way Chinese
 * spreadsheets spell them. The first input byte picks the delimiter and the encoding; the rest
 * is the file. Checked: the decoded text is UTF-8 without NUL; the reader always advances and
 * ends; every record's offsets lie inside the text in order and its line agrees with
 * csv_line_at; a record refused as malformed says why; every value is a string; a period the
 * normaliser accepts is a PROTOCOL.md period.
 */
#include <stdbool.h>
#include <string.h>

#include "fuzz.h"
#include "kp_msg.h"
#include "src_csv_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const char delims[] = {',', ';', '\t', '|'};
    static const enum csv_enc encs[] = {CSV_ENC_AUTO, CSV_ENC_UTF8, CSV_ENC_GBK, CSV_ENC_GB18030};
    char delim = delims[data[0] & 3];
    enum csv_enc enc = encs[(data[0] >> 2) & 3];
    struct csv_text t;
    memset(&t, 0, sizeof t);
    if (csv_decode((const char *)data + 1, size - 1, enc, &t) != 0)
        return 0; /* iconv without the encoding: nothing to read */
    FZ_ASSERT(t.data && t.data[t.len] == 0);
    FZ_ASSERT(kp_utf8_valid(t.data, t.len));
    for (size_t k = 0; k < t.n_bad; k++)
        FZ_ASSERT(t.bad[k].at < t.len && t.bad[k].in_off < size - 1);

    struct csv_reader *r = malloc(sizeof *r); /* CSV_MAX_FIELDS fields: not on the stack */
    FZ_ASSERT(r != NULL);
    csv_reader_init(r, t.data, t.len, delim, 0, 1);
    struct csv_rec rec;
    size_t pos = 0, n_rec = 0;
    long line = 1;
    while (csv_reader_next(r, &rec)) {
        FZ_ASSERT(rec.off >= pos && rec.off <= rec.end && rec.end <= rec.next && rec.next <= t.len);
        FZ_ASSERT(rec.next > pos || rec.next == t.len); /* progress */
        FZ_ASSERT(rec.line >= line && rec.next_line >= rec.line);
        FZ_ASSERT(rec.line == 1 + csv_line_at(t.data, rec.off));
        FZ_ASSERT(rec.nf <= CSV_MAX_FIELDS);
        FZ_ASSERT(++n_rec <= t.len + 1);
        for (size_t k = 0; k < rec.nf + 1; k++) {
            const char *v = csv_reader_value(r, &rec, k);
            FZ_ASSERT(v != NULL);
            if (k == rec.nf)
                FZ_ASSERT(v[0] == 0);
            char p[32];
            if (csv_period_norm(v, p, sizeof p))
                FZ_ASSERT(kp_period_valid(p, strlen(p), NULL));
        }
        (void)csv_rec_blank(r, &rec);
        (void)csv_text_bad_in(&t, rec.off, rec.next);
        pos = rec.next;
        line = rec.next_line;
        if (rec.next == t.len)
            break;
    }
    csv_reader_fini(r);
    free(r);
    csv_text_fini(&t);
    return 0;
}
