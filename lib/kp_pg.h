/*
 * kp_pg: the libpq wrapper, the only module that calls PQ* (STYLE.md "Ownership": parameters
 * or COPY, never SQL built from strings; every PGresult cleared on every path here). Used by
 * the scorer, the sql adapter source, kpctl and the migrations. Blocking: call from a thread
 * that may block (the scorer's loop thread processes one batch at a time by design).
 */
#ifndef KP_PG_H
#define KP_PG_H

#include <stdbool.h>
#include <stddef.h>

struct kp_pg;
struct kp_pg_res;
struct kp_buf;

/* Connects (dsn: a libpq conninfo string or URI; connect_timeout defaults to 10 s and
 * application_name to "kaoping" unless dsn says otherwise; the session uses UTF8 and
 * extra_float_digits = 3 so that float8 text parses back to the same double). Caller owns
 * *out (close with kp_pg_close) even on failure, so that kp_pg_errmsg() can say why; *out is
 * NULL only on OOM. Returns 0 or KP_EDB. */
int kp_pg_open(const char *dsn, struct kp_pg **out);
void kp_pg_close(struct kp_pg **pg);
/* True when the connection is usable; false too while libpq holds it in pipeline mode outside
 * a pipeline of kp_pg's (one lost while being read): kp_pg_reset then replaces it. */
bool kp_pg_ok(struct kp_pg *pg);
/* Reconnects (PQreset). Returns 0 or KP_EDB. */
int kp_pg_reset(struct kp_pg *pg);

/* Runs one parameterised statement (text parameters, NULL = SQL NULL). On success returns 0
 * and, when res != NULL, *res (caller owns; free with kp_pg_res_free). On failure returns
 * KP_EDB; kp_pg_sqlstate()/kp_pg_errmsg() describe the last error. */
int kp_pg_exec(struct kp_pg *pg, const char *sql, int nparams, const char *const *params,
               struct kp_pg_res **res);
/* The same with each parameter in text (formats[i] == 0: NUL-terminated, lengths ignored) or
 * binary format (formats[i] == 1: lengths[i] bytes, e.g. a kp_pg_barray_* array). */
int kp_pg_exec_bin(struct kp_pg *pg, const char *sql, int nparams, const char *const *params,
                   const int *lengths, const int *formats, struct kp_pg_res **res);
/* kp_pg_exec_bin for a statement run often (a bulk write per batch): prepared the first time
 * the session runs it, so that the server parses and plans it once per session instead of at
 * every run. sql is known by its address: a string that lives as long as pg and never changes
 * (a static const array). At most KP_PG_PREPARED_MAX such statements per session; any further
 * one runs unprepared. A new session (kp_pg_reset) prepares them again. */
#define KP_PG_PREPARED_MAX 8
int kp_pg_exec_prepared(struct kp_pg *pg, const char *sql, int nparams, const char *const *params,
                        const int *lengths, const int *formats, struct kp_pg_res **res);
/* COPY … FROM STDIN: runs sql (a COPY statement), sends the len bytes of data (e.g. built with
 * kp_pg_bcopy_*), ends the copy. On success returns 0 and, when rows != NULL, the
 * number of rows copied. On failure returns KP_EDB (kp_pg_sqlstate()/kp_pg_errmsg(), as for
 * kp_pg_exec: a refused row, e.g. a unique violation, leaves the connection usable and the
 * transaction aborted). */
int kp_pg_copy_in(struct kp_pg *pg, const char *sql, const void *data, size_t len, long long *rows);
/* The same two calls in two halves, so that the server works while the caller does: the send
 * half returns once the statement (or the COPY and its data) is sent, and kp_pg_wait then
 * collects its result (*res as for kp_pg_exec_prepared; for a COPY, kp_pg_res_affected gives
 * the rows copied). One statement is in flight at a time: until kp_pg_wait, every other call
 * on pg fails (KP_EDB). A send that fails leaves nothing in flight. */
int kp_pg_send_prepared(struct kp_pg *pg, const char *sql, int nparams, const char *const *params,
                        const int *lengths, const int *formats);
int kp_pg_copy_send(struct kp_pg *pg, const char *sql, const void *data, size_t len);
int kp_pg_wait(struct kp_pg *pg, struct kp_pg_res **res);
/* kp_pg_copy_send in three steps, for data that is made while the server stores what came
 * before it: kp_pg_copy_open runs sql (a COPY … FROM STDIN) and leaves the COPY open; each
 * kp_pg_copy_put sends its piece of the data (in order; all of it reaches the server before
 * it returns); kp_pg_copy_close ends the COPY, whose result kp_pg_wait then collects. While a
 * COPY is open every other call on pg fails (KP_EDB). After a put that failed, close ends the
 * COPY with an error, which kp_pg_wait returns. */
int kp_pg_copy_open(struct kp_pg *pg, const char *sql);
int kp_pg_copy_put(struct kp_pg *pg, const void *data, size_t len);
int kp_pg_copy_close(struct kp_pg *pg);
bool kp_pg_copy_is_open(const struct kp_pg *pg);
/* Pipeline (libpq's pipeline mode): many statements for one round trip. Between
 * kp_pg_pipeline_begin and kp_pg_pipeline_end, kp_pg_send_prepared and kp_pg_send queue
 * statements without waiting for one another; the server runs them in order, and each
 * kp_pg_wait collects the oldest outstanding result (the first asks the server for them).
 * kp_pg_exec, kp_pg_exec_bin and kp_pg_exec_prepared work inside only when nothing is
 * outstanding (they send, then wait); no COPY inside. A statement that fails makes the server
 * skip the rest of the pipeline: their waits fail too ("skipped"); the failure's SQLSTATE is
 * the one of the wait that met it. kp_pg_pipeline_sync sends the pipeline's end at once, so
 * that the remaining waits need no request of their own; kp_pg_pipeline_end sends it if not
 * sent, collects and drops what is still outstanding and leaves pipeline mode. It returns
 * KP_EDB when any statement of the pipeline failed (the first such failure described) or the
 * connection was lost, else 0. A statement prepared inside a pipeline that failed before it is
 * prepared again at its next use. The caller ends every pipeline it begins, on every path;
 * a kp_pg_pipeline_begin that fails leaves none to end. */
int kp_pg_pipeline_begin(struct kp_pg *pg);
/* BEGIN, sent with the next statement rather than alone: kp_pg_exec, kp_pg_exec_bin and
 * kp_pg_exec_prepared send the two together (one round trip), kp_pg_pipeline_begin makes it
 * the pipeline's first statement, the other calls run it first. A failure of BEGIN is the
 * statement's. Returns KP_EDB (no I/O done) when a statement is in flight, inside a pipeline,
 * twice, or when the connection is lost. */
int kp_pg_begin(struct kp_pg *pg);
int kp_pg_send(struct kp_pg *pg, const char *sql, int nparams, const char *const *params);
int kp_pg_pipeline_sync(struct kp_pg *pg);
int kp_pg_pipeline_end(struct kp_pg *pg);
bool kp_pg_in_pipeline(const struct kp_pg *pg);
/* Runs a script of several statements without parameters (migrations). */
int kp_pg_exec_script(struct kp_pg *pg, const char *sql);

/* SQLSTATE ("40001") of the last error, "" when none; message of the last error. Valid until
 * the next call on pg. */
const char *kp_pg_sqlstate(struct kp_pg *pg);
const char *kp_pg_errmsg(struct kp_pg *pg);
/* True when the last error is a lost connection (reconnect and retry). */
bool kp_pg_conn_lost(struct kp_pg *pg);

int kp_pg_res_ntuples(const struct kp_pg_res *r);
int kp_pg_res_nfields(const struct kp_pg_res *r);
/* Column index by name, -1 when absent. */
int kp_pg_res_fnumber(const struct kp_pg_res *r, const char *name);
/* Text value ("" for NULL; never NULL). Valid until kp_pg_res_free. */
const char *kp_pg_res_value(const struct kp_pg_res *r, int row, int col);
bool kp_pg_res_isnull(const struct kp_pg_res *r, int row, int col);
/* Number of rows affected (INSERT/UPDATE/DELETE). */
long long kp_pg_res_affected(const struct kp_pg_res *r);
void kp_pg_res_free(struct kp_pg_res **r);

/* Builders of PostgreSQL array literals for unnest()-based bulk statements (one round trip
 * per batch, ARCHITECTURE.md / issue 2 "never a round trip per row"). Start with
 * kp_pg_array_begin, add elements, finish with kp_pg_array_end; the result is a
 * NUL-terminated text parameter. Elements are quoted and escaped; NULL adds SQL NULL. */
void kp_pg_array_begin(struct kp_buf *b);
void kp_pg_array_add(struct kp_buf *b, const char *elem);
void kp_pg_array_add_double(struct kp_buf *b, double v); /* round-trip exact (%.17g) */
void kp_pg_array_add_i64(struct kp_buf *b, long long v);
void kp_pg_array_add_u64(struct kp_buf *b, unsigned long long v);
void kp_pg_array_end(struct kp_buf *b);

/* Builders of PostgreSQL arrays in the binary format (array_recv), for bulk statements whose
 * arrays are too large to format and parse as text: no printf of doubles in the caller, no
 * float8in in the backend. kp_pg_barray_begin(b, oid, ndim) with the element type's OID
 * (KP_PG_FLOAT8, ...), then exactly the product of the dimensions' elements, row-major, then
 * kp_pg_barray_end(b, dims) with the ndim (1 to 6) sizes. Pass b->data, b->len and format 1
 * to kp_pg_exec_bin, the parameter cast to the array type ($1::float8[]). */
#define KP_PG_INT8   20u
#define KP_PG_INT4   23u
#define KP_PG_TEXT   25u
#define KP_PG_FLOAT8 701u
void kp_pg_barray_begin(struct kp_buf *b, unsigned elem_oid, int ndim);
void kp_pg_barray_add_null(struct kp_buf *b);
void kp_pg_barray_add_f8(struct kp_buf *b, double v);
void kp_pg_barray_add_i4(struct kp_buf *b, int v);
void kp_pg_barray_add_i8(struct kp_buf *b, long long v);
void kp_pg_barray_add_text(struct kp_buf *b, const char *s);
void kp_pg_barray_end(struct kp_buf *b, const int *dims);

/* Builders of COPY data in the binary format, for kp_pg_copy_in with a
 * `COPY ... FROM STDIN (FORMAT binary)`: no printf in the caller, no parsing in the backend.
 * kp_pg_bcopy_begin (resets b), then per row kp_pg_bcopy_row with its field count followed by
 * exactly that many fields in column order, each of the column's type (text, jsonb, float8,
 * int8, numeric, timestamptz); NULL text or JSON adds SQL NULL. Then kp_pg_bcopy_end. A
 * timestamp is milliseconds since the Unix epoch. */
void kp_pg_bcopy_begin(struct kp_buf *b);
void kp_pg_bcopy_row(struct kp_buf *b, int nfields);
void kp_pg_bcopy_null(struct kp_buf *b);
void kp_pg_bcopy_text(struct kp_buf *b, const char *s);
void kp_pg_bcopy_jsonb(struct kp_buf *b, const char *json);
void kp_pg_bcopy_f8(struct kp_buf *b, double v);
void kp_pg_bcopy_i8(struct kp_buf *b, long long v);
void kp_pg_bcopy_numeric_u64(struct kp_buf *b, unsigned long long v);
void kp_pg_bcopy_ts_ms(struct kp_buf *b, long long ms);
void kp_pg_bcopy_end(struct kp_buf *b);

/* Applies the SQL migrations in dir (files NNN_name.sql, in numeric order) that are not yet
 * recorded in kp_schema_version, each in its own transaction, serialised by a transaction
 * advisory lock so concurrent callers are safe and a second run changes nothing. Returns 0,
 * KP_EIO (dir unreadable) or KP_EDB (err says which file and why). */
int kp_pg_migrate(struct kp_pg *pg, const char *dir, char *err, size_t errlen);

#endif
