/*
 * src_csv: the `csv` source of kp-adapter, a drop folder (issue 4). A department system (or
 * a clerk exporting from Excel) puts CSV files into source.csv.drop_dir; the source reads
 * each one, oldest first, maps its columns to observations by their header names, and once
 * every row of a file is in the spool (or refused) moves the file to source.csv.archive_dir
 * next to NAME.summary.json: rows read, sent, refused (with line and reason) and skipped.
 *
 * Files. A file counts once it is complete: writers write a temporary name and rename it
 * into the folder (atomic). Names starting with '.' or "~$", ending in ".tmp" or ".part",
 * or matching no source.csv.pattern are never read; nor are files younger than
 * source.csv.min_age_ms (0 by default: for writers that cannot rename). A file must not
 * change once it is in the folder. The folder is watched with libuv (uv_fs_event, on a
 * thread of the source's own) and scanned at start and every source.csv.scan_ms as well,
 * since inotify can miss events; a new file is therefore picked up at the next poll
 * (source.poll_ms) after its event, or after scan_ms at worst.
 *
 * Text. source.csv.encoding auto: UTF-8 when the bytes are valid UTF-8 (a BOM is
 * stripped), else GBK, which is what Excel writes on a Chinese Windows; or utf-8, gbk,
 * gb18030 as configured (glibc iconv). RFC 4180: quoted fields with delimiters, "" and line
 * breaks, CRLF / LF / CR line ends. The header is the first row (within the first 50) that
 * holds every configured column name, so the title rows Chinese exports start with
 * ("2015年3月预算执行情况表") are passed over; values are trimmed.
 *
 * Mapping, per PROTOCOL.md observation field: unit from source.csv.map.u (unit codes) or
 * source.csv.map.unit_name (display names, mapped to codes through the scheme file
 * source.csv.unit_by_name; full-width parentheses and spaces do not matter); indicator from
 * source.csv.map.i or the constant source.csv.indicator; period from source.csv.map.p
 * ("2015-03", "2015年3月", "2015年第1季度", ... see csv_period_norm) or the constant
 * source.csv.period; val from source.csv.map.val; ref from source.csv.map.ref, else
 * "<file name>:<line>"; rev, at, w from their columns when configured. A row whose unit
 * cell is one of source.csv.skip_units (合计, 小计: total rows) is skipped.
 *
 * Refused rows. A row that cannot become a valid observation — malformed CSV, a byte that is
 * not valid in the encoding, an empty required cell, a number that does not parse, a period
 * that is none, a unit name the scheme does not know, a bad rev/at/w — goes to the dead
 * letters (kp_spool_dead_row, in the SQLite file source.csv.dead_letters: give it the
 * adapter's spool path to keep everything in one file, where `kpctl dlq` lists them) with
 * the file's name in the archive (as UTF-8: a GBK file name is decoded), the row's line and
 * the reason, while the good rows go on. With source.csv.forward_refused (the default)
 * it is also sent, with every field that failed left out (val left out when all the others
 * pass), so that the scorer refuses it too and it ends as a rejection row centrally
 * (ARCHITECTURE.md guarantees 1 and 4); a file-level refusal (no header, too large) is not.
 *
 * Cursor (stored in the spool with each batch, ARCHITECTURE.md guarantee 1):
 *   csv1|<offset>|<line>|<dev>|<ino>|<size>|<mtime_s>.<mtime_ns>|<file name>
 * the file the source is in (identified by name, device, inode, size and mtime) and the
 * byte offset, in the file's UTF-8 text, where the first row not yet in the spool starts
 * (line: that row's line, for people). After kill -9 the source reopens that file and goes
 * on at that offset; a file is archived only once a poll finds nothing after the stored
 * offset, i.e. after all its rows are spooled or dead-lettered. Files other than the
 * cursor's are untouched until it is archived, so a file in the folder is either the
 * cursor's or not read at all. Refused rows are recorded before the batch that passes them
 * is spooled and again if it is read again: one dead letter per (file, line) whatever
 * happens.
 */
#ifndef SRC_CSV_H
#define SRC_CSV_H

#include <stdbool.h>

#include "adp_source.h"

struct src_csv_config {
    char *drop_dir;
    char *archive_dir; /* same file system as drop_dir (files are moved with rename) */
    char **pattern;    /* file name patterns (fnmatch) */
    char *encoding;    /* auto | utf-8 | gbk | gb18030 */
    char *delimiter;   /* "," ";" "|" or "tab" */
    /* header names of the columns */
    char *map_u, *map_unit_name, *map_i, *map_p, *map_val, *map_ref, *map_rev, *map_at, *map_w;
    char *unit_by_name; /* scheme YAML whose unit names map map_unit_name to codes */
    char *indicator;    /* constant indicator code when the file has no indicator column */
    char *period;       /* constant period when the file has no period column */
    char **skip_units;  /* unit cells of rows that are not data (合计) */
    char *dead_letters; /* SQLite file of the per-row dead letters; "" = ARCHIVE/dead-letters.db */
    bool forward_refused;
    long long scan_ms;
    long long min_age_ms;
    long long max_file_bytes;
};

extern const struct adp_source adp_source_csv;

#endif
