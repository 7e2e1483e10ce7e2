/*
 * cli — the `shoal` command line. Each subcommand is one cmd_*.c file with an entry point
 * `int cmd_NAME(int argc, char **argv)` (argv[0] is the subcommand name) that returns the
 * process exit status. Only code under src/cli/ may print usage, exit or read the environment
 * for user-facing defaults.
 */
#ifndef SHOAL_CLI_CLI_H
#define SHOAL_CLI_CLI_H

#include <stddef.h>
#include <stdint.h>

int cmd_inspect(int argc, char **argv);
int cmd_gen_model(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench_encoder(int argc, char **argv); /* shoal bench on an encoder file */
int cmd_embed(int argc, char **argv);
int cmd_classify(int argc, char **argv);
int cmd_rerank(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_cache(int argc, char **argv);

/* Prints "shoal: error: ..." to stderr; returns 1 (the exit status for errors). */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Option values: s must be a whole decimal integer in [lo, hi] / a whole number; otherwise
 * an error naming the option is printed and 1 returned (*out untouched). 0 on success. */
int cli_long(const char *opt, const char *s, long lo, long hi, long *out);
int cli_int(const char *opt, const char *s, long lo, long hi, int *out);
int cli_float(const char *opt, const char *s, float *out);
int cli_u64(const char *opt, const char *s, uint64_t *out); /* any unsigned 64-bit integer */

/* In-place unescape of \n \t \r \\ \xHH in s[0..n) (other backslashes stay); returns
 * the new length. The escapes of the line-oriented commands' input (tokenize, embed, ...). */
size_t cli_unescape(char *s, size_t n);

#endif
