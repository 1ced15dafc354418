/*
 * src_csv_reader: the pure text side of the `csv` source (src_csv.h): turning the bytes of a
 * department's export into UTF-8 (GBK Excel exports from Chinese offices, or UTF-8 with or
 * without a BOM), reading RFC 4180 records from that text with the exact byte offset and
 * line of each one (the crash cursor and the dead letters need both), mapping the Chinese
 * unit names of an export to the scheme's unit codes, and reading the period spellings of
 * Chinese spreadsheets ("2015年3月"). No I/O except csv_units_load (one YAML file); no
 * globals; every function is thread-safe on its own objects (issue 4; ARCHITECTURE.md
 * guarantee 1: a row is found again at the same offset after a restart).
 */
#ifndef SRC_CSV_READER_H
#define SRC_CSV_READER_H

#include <stdbool.h>
#include <stddef.h>

#include "kp_buf.h"

/* ---- decoding ---------------------------------------------------------------------------- */

enum csv_enc { CSV_ENC_AUTO, CSV_ENC_UTF8, CSV_ENC_GBK, CSV_ENC_GB18030 };

/* Parses "auto", "utf-8" (or "utf8"), "gbk" (or "cp936"), "gb18030", case-insensitively.
 * Returns 0 or KP_EINVAL. */
int csv_enc_parse(const char *s, enum csv_enc *out);
const char *csv_enc_name(enum csv_enc e);

/* One byte sequence that is not valid in the file's encoding (or a NUL byte): replaced by
 * U+FFFD in the text, remembered so that the record holding it is refused. */
struct csv_badseq {
    size_t at;     /* offset of the U+FFFD in the decoded text */
    size_t in_off; /* offset of the bad byte in the file */
    unsigned char byte;
};

/* A file's text as UTF-8, NUL-terminated (data[len] == 0). */
struct csv_text {
    char *data;
    size_t len;
    enum csv_enc enc; /* what it was decoded from: CSV_ENC_UTF8, _GBK or _GB18030 */
    bool bom;         /* a UTF-8 byte order mark was stripped */
    struct csv_badseq *bad;
    size_t n_bad;
};

/* Decodes len bytes of in. CSV_ENC_AUTO: UTF-8 when the bytes are valid UTF-8 (a leading
 * BOM is stripped), else GBK. An invalid sequence (or a NUL byte) becomes U+FFFD and is
 * listed in out->bad; decoding goes on after it. Returns 0, or KP_EIO when iconv lacks the
 * encoding. Caller owns out; free with csv_text_fini. Thread-safe. */
int csv_decode(const char *in, size_t len, enum csv_enc enc, struct csv_text *out);
void csv_text_fini(struct csv_text *t);

/* The first bad sequence with at in [from, to), or NULL. */
const struct csv_badseq *csv_text_bad_in(const struct csv_text *t, size_t from, size_t to);

/* Number of line breaks (LF, CRLF or a lone CR) in text[0..off): the 1-based line at off is
 * that plus 1. */
long csv_line_at(const char *text, size_t off);

/* ---- the record reader ------------------------------------------------------------------- */

#define CSV_MAX_FIELDS 512

struct csv_field {
    size_t start, end; /* the field's span in the text, quotes included */
    size_t val;        /* offset of its value (unquoted, NUL-terminated) in the reader's arena */
    size_t len;
    bool quoted;
};

struct csv_rec {
    size_t off;     /* first byte of the record */
    size_t end;     /* end of its last field (its terminator excluded) */
    size_t next;    /* first byte after its terminator: where the next record starts */
    long line;      /* line the record starts on (1-based) */
    long next_line; /* line at `next` */
    size_t nf;
    const char *err; /* NULL, or why the record is not well-formed CSV (static text) */
};

struct csv_reader {
    const char *text;
    size_t len;
    char delim;
    size_t pos;
    long line;
    struct csv_field f[CSV_MAX_FIELDS];
    struct kp_buf arena;
};

/* Starts reading text (borrowed) at offset pos, which is line `line`. delim is one ASCII
 * byte other than '"', CR and LF. r must be new or finished with csv_reader_fini. */
void csv_reader_init(struct csv_reader *r, const char *text, size_t len, char delim, size_t pos,
                     long line);
void csv_reader_fini(struct csv_reader *r);

/* Reads the next record into rec: true, or false at the end of the text. Quoted fields may
 * hold delimiters, "" (one quote) and line breaks; records end at LF, CRLF or a lone CR. A
 * record that is not well-formed (a quoted field never closed, text after a closing quote,
 * more than CSV_MAX_FIELDS fields) still comes back, with err set and the fields read as
 * well as they go; the next record starts after it. Field values are valid until the next
 * call. */
bool csv_reader_next(struct csv_reader *r, struct csv_rec *rec);

/* Value of field k of the last record ("" when k >= nf). */
const char *csv_reader_value(const struct csv_reader *r, const struct csv_rec *rec, size_t k);

/* True when every field of rec is empty (a blank line, or ",,,," as spreadsheets write). */
bool csv_rec_blank(const struct csv_reader *r, const struct csv_rec *rec);

/* ---- unit names -------------------------------------------------------------------------- */

struct csv_units;

/* Loads the units (code, name) of an assessment scheme YAML (schemas/SCHEMES.md: groups[] →
 * units[] → {code, name}). When want_scheme is not NULL the file's `scheme:` must equal it.
 * Returns 0, KP_ECONFIG with err (file missing, not a scheme, another scheme, duplicate
 * name). Caller owns *out; free with csv_units_destroy. */
int csv_units_load(const char *path, const char *want_scheme, struct csv_units **out, char *err,
                   size_t errlen);
void csv_units_destroy(struct csv_units **u);
size_t csv_units_count(const struct csv_units *u);

/* The code of the unit with this display name, or NULL. Names compare after dropping white
 * space (ASCII and the ideographic space U+3000) and reading full-width parentheses （） as
 * ASCII ones, so "市民委（市宗教局）" finds "市民委(市宗教局)". A cell holding a unit code of
 * the scheme is accepted as well. The result is borrowed from u. */
const char *csv_units_code(const struct csv_units *u, const char *name);
/* Whether code is a unit code of the scheme. */
bool csv_units_has_code(const struct csv_units *u, const char *code);

/* ---- periods ----------------------------------------------------------------------------- */

/* Writes the PROTOCOL.md period for a spreadsheet's spelling of it into out: a valid period
 * as it is; "2015年3月", "2015年03月", "2015-3", "2015/03", "2015.03", "201503" → "2015-03";
 * "2015年第1季度", "2015年1季度", "2015Q1" → "2015-Q1"; "2015年上半年"/"下半年" → "2015-H1"/
 * "2015-H2"; "2015年", "2015年度" → "2015"; "2015/3/31", "2015年3月31日" → "2015-03-31".
 * Returns true when the result is a valid period. */
bool csv_period_norm(const char *in, char *out, size_t cap);

#endif
