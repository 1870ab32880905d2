/* cli.h: shared helpers of the dsv4 command-line tool.
 *
 * Each subcommand lives in its own tools/cmd_*.c file as `int cmd_NAME(int argc, char **argv)`
 * (argv[0] is the subcommand name) and is listed in the table in dsv4.c. Commands print
 * errors as "dsv4 NAME: message" on stderr and return a process exit status. */
#ifndef DSV4_CLI_H
#define DSV4_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "dsv4.h"

/* Option scanning: `cli_opt(argc, argv, &i, "-m", "--model")` is true when argv[i] is one of
 * the spellings; cli_value() then consumes and returns the value (or reports it missing). */
bool cli_is(const char *arg, const char *short_name, const char *long_name);
const char *cli_value(int argc, char **argv, int *i);
bool cli_int(const char *s, long long lo, long long hi, long long *out);
bool cli_float(const char *s, double *out);
/* "MIN-MAX" with lo <= MIN <= MAX <= hi. */
bool cli_range(const char *s, int lo, int hi, int *min, int *max);
/* A table layout: "plain" (false) or "key-right" (true, dsv4_task_opts.table_key_right), and
 * back to its name. */
bool cli_table_layout(const char *s, bool *key_right);
const char *cli_table_layout_name(bool key_right);

/* Print "dsv4 CMD: <formatted>" to stderr; returns 1 (the exit status to pass on). */
int cli_fail(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Same, with the library's last error appended. */
int cli_fail_lib(const char *cmd, const char *what);

/* The embedded default model directory (models/tiny), used when -m is omitted. */
const char *cli_default_model(void);

/* Read a whole file into a NUL-terminated buffer (caller frees); NULL with errno on failure. */
char *cli_read_file(const char *path, size_t *len);

/* Parse "0,17,42" or "@FILE.json" (a JSON list) into ids; caller frees *ids. */
bool cli_parse_ids(const char *cmd, const char *spec, int **ids, int *n);

/* Model open options from common flags: --threads N, --numerics exact|default, and for V4.1
 * --intended-index-keys, --engram-ram, --engram-sync (see dsv4_open_opts). Returns the
 * number of argv entries consumed at *i (0 if argv[*i] is not one of them, -1 on error). */
int cli_model_flag(const char *cmd, int argc, char **argv, int *i, dsv4_open_opts *opts);
/* A table of integer options stored in an options struct: flag, offset of its int field, and
 * the accepted range. cli_int_flag handles argv[*i] if it is one of them: 1 used (the value
 * stored), 0 not one of them, -1 a bad value (reported). */
typedef struct {
    const char *flag;
    size_t off;
    long long lo, hi;
} cli_int_opt;
int cli_int_flag(const char *cmd, const cli_int_opt *table, size_t n, int argc, char **argv, int *i, void *opts);

/* A progress bar on stderr (only when stderr is a terminal, unless forced). */
void cli_progress(void *user, const char *what, double fraction);

#endif
