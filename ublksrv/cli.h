/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The imgblk command line: one table of commands, each with its parser
 * kept apart from its action so the parsers can be tested alone.
 */
#ifndef IMGBLK_CLI_H
#define IMGBLK_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "server.h"

/* Returned by a parser when --help was given and printed. */
#define CLI_HELP	1

/*
 * The image verbs' own sizes, not the ublk plane's: the largest piece a
 * verb hands a target at once (big enough that the per-call cost is
 * small, as large as the largest device request so the engines see the
 * same sizes), and the buffer memory `bench` registers with its ring.
 */
#define CLI_CHUNK_BYTES		(512U << 10)
#define CLI_PINNED_BYTES	(32U << 20)

/* Exit statuses. */
#define CLI_EXIT_OK	0
#define CLI_EXIT_ERR	1
#define CLI_EXIT_USAGE	2

/*
 * The keys of the options that have no short form, one namespace for
 * all verbs (a key means the same wherever it is used); an option with a
 * short form has its letter as key.  See the comment atop cli_table.c.
 */
enum cli_key {
	CLI_K_BUFFERED = 0x100,
	CLI_K_SIZE,
	CLI_K_FOREGROUND,
	CLI_K_RECOVERABLE,
	CLI_K_BACKING,
	CLI_K_L2_CACHE,
	CLI_K_DISCARD,
	CLI_K_COR,
	CLI_K_BURST,
	CLI_K_SNAPSHOT,
	CLI_K_PINNED,
	CLI_K_WERROR,
	CLI_K_RERROR,
	CLI_K_JSON,
	CLI_K_INTERVAL,
	CLI_K_COUNT,
	CLI_K_PRETTY,
	CLI_K_EVENTS,
	CLI_K_RAW,
	CLI_K_OUTPUT,
	CLI_K_BACKING_CHAIN,
	CLI_K_SHRINK,
	CLI_K_PATTERN,
	CLI_K_RANDOM,
	CLI_K_FLUSH_INTERVAL,
	CLI_K_KEY_FILE,
	CLI_K_OBJECT,
	CLI_K_BITMAP,
	CLI_K_BITMAPS,
	CLI_K_SKIP_BROKEN,
	CLI_K_SYNC,		/* the block job verbs' (cmd_job.c) */
	CLI_K_EXISTING,
	CLI_K_SPEED,
	CLI_K_JOB_ID,
	CLI_K_WAIT,
	CLI_K_PIVOT,
	CLI_K_TOP,
	CLI_K_EXTERNAL,		/* snapshot --external NEW */
	CLI_K_FREEZE,		/* snapshot --freeze */
	CLI_K_BITMAP_OP,	/* + enum tgt_bitmap_op: bitmap's --add ... --flush */
	CLI_K_BITMAP_OP_END = CLI_K_BITMAP_OP + TGT_BITMAP_FLUSH,
	CLI_K_NAME,
	CLI_K_TAB,
	CLI_K_LOG_LEVEL,
	CLI_K_FORCE,
	CLI_K_ALLOW_PROTOCOL,
	CLI_K_RECONNECT_DELAY,
	CLI_K_OPEN_TIMEOUT,
	CLI_K_RBD_CONF,
	CLI_K_RBD_ID,
	CLI_K_THROTTLE,		/* + enum throttle_kind: the six limits */
	CLI_K_THROTTLE_END = CLI_K_THROTTLE + THR_NR - 1,
};

/* One option of a verb. */
struct cli_opt {
	/* A letter (its short form, -K) or an enum cli_key; 0 ends a list. */
	int key;
	/* The long form (--NAME), or NULL for a short-only option. */
	const char *name;
	/*
	 * The value's name as help shows it, NULL for a flag.  It also
	 * guides completion: a list "a|b|c" completes those words, ID the
	 * device ids, FILE (or a name ending in FILE, PATH, BACKING, BASE,
	 * SOCKET) file names.
	 */
	const char *arg;
	/* What it does: sentences, wrapped by the printers. */
	const char *help;
};

struct cli_example {
	const char *cmd;	/* NULL ends a list */
	const char *what;
};

struct cli_exit {
	int status;		/* -1 ends a list */
	const char *what;
};

/* cli_cmd.flags */
#define CLI_IMAGE	0x1	/* an image verb: a usage error exits 1, as qemu-img */
#define CLI_STOP	0x2	/* options end at the first operand ("-1G" is one) */
#define CLI_HIDDEN	0x4	/* not in help, man page or completion */

struct cli_cmd;

/*
 * A verb's action: @argv[0] is the verb's name.  It calls cli_parse()
 * with its own option callback.  Returns the process exit status.
 */
typedef int (*cli_run_fn)(const struct cli_cmd *cmd, int argc, char **argv);

struct cli_cmd {
	const char *name;
	const char *summary;	/* one line, lower case, no full stop */
	/*
	 * What follows "imgblk NAME" in the usage; each line another form.
	 * The operands are its last words; min_args..max_args of them.
	 */
	const char *synopsis;
	/*
	 * The operands as errors name them ("FILE [SIZE]"); completion too:
	 * FILE completes file names, a word "a|b|c" those choices for the
	 * first operand, and a verb with --tab completes imgblktab's names.
	 */
	const char *operands;
	/*
	 * Paragraphs separated by blank lines; a paragraph whose lines start
	 * with two spaces is shown as it is (a list, a table).
	 */
	const char *desc;
	const struct cli_opt *opts;		/* ends with key 0; may be NULL */
	unsigned int min_args, max_args;
	const struct cli_example *examples;	/* may be NULL */
	/* Exit statuses beyond the usual 0, 1 and the usage error. */
	const struct cli_exit *exits;
	unsigned int flags;
	cli_run_fn run;
};

/* The verbs' handlers (cmd_*.c; help and version in cli.c, __gen in cli_gen.c). */
int cli_cmd_add(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_del(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_recover(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_udev_chown(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_udev_name(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_list(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_qmp(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_create(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_info(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_check(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_map(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_convert(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_io(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_bench(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_resize(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_rebase(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_commit(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_snapshot(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_bitmap(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_measure(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_amend(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_stats(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_query(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_set(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_pause(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_resume(const struct cli_cmd *cmd, int argc, char **argv);
/*
 * Starts the job @cmd names (backup, mirror, stream, and commit -n ID,
 * which cli_cmd_commit() hands over) on a served device.
 */
int cli_cmd_job_start(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_job(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_help(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_version(const struct cli_cmd *cmd, int argc, char **argv);
int cli_cmd_gen(const struct cli_cmd *cmd, int argc, char **argv);

/* The verbs, in the order help lists them (cli_table.c). */
extern const struct cli_cmd cli_cmds[];
extern const unsigned int cli_nr_cmds;

/* The operands cli_parse() leaves: argv[0..argc). */
struct cli_args {
	int argc;
	char **argv;
};

/*
 * A verb's option callback: @opt was given, with value @arg (NULL for a
 * flag).  Returns 0, or -EINVAL after printing one line that says what
 * is wrong with the value.
 */
typedef int (*cli_opt_fn)(void *ctx, const struct cli_opt *opt, char *arg);

/*
 * The one option parser.  Walks @argv (argv[0] the verb) as getopt_long
 * does (clusters "-rq", values attached "-q4" or apart, "--name=value",
 * unambiguous prefixes of long names, "--" ending the options, operands
 * anywhere unless the verb has CLI_STOP), calls @fn for each option of
 * @cmd, and checks the number of operands, which it stores in @args
 * (@argv reordered: the operands follow argv[0]).  -h and --help print
 * the verb's help.  The shared options (cli_opt_shared()) are acted on
 * before @fn sees them.  @fn may be NULL for a verb without options.  Returns 0, CLI_HELP after printing the help, or
 * -EINVAL after printing one line (@fn's, or one naming the bad option,
 * missing value or operand with a pointer to --help).
 */
int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, cli_opt_fn fn,
	      void *ctx, struct cli_args *args);

/*
 * As cli_parse(), but acting on no shared option: for a verb that looks
 * at its options first to choose how to parse them (commit, -n or not),
 * so a secret is not registered twice.
 */
int cli_scan(const struct cli_cmd *cmd, int argc, char **argv, cli_opt_fn fn,
	     void *ctx, struct cli_args *args);

/* The exit status for cli_parse()'s non-zero result @ret. */
int cli_parse_status(const struct cli_cmd *cmd, int ret);

/*
 * Prints a usage error of @cmd as cli_parse() does: one line, then where
 * to look.  Returns -EINVAL.
 */
int cli_usage_err(const struct cli_cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* "--name" or "-k": how help names @opt. */
const char *cli_opt_name(const struct cli_opt *opt, char *buf, size_t len);

/*
 * The exit statuses @cmd documents, or the usual ones, into @out (at most
 * @max, the last with status -1).
 */
void cli_exits(const struct cli_cmd *cmd, struct cli_exit *out, unsigned int max);

/* The version the build was made from (git describe, or the VERSION file). */
const char *cli_version(void);

/* Prints @cmd's help (usage, description, options, examples, exit statuses). */
void cli_help(const struct cli_cmd *cmd, FILE *f);

/* The hidden `__gen man|bash`: the man page or the bash completion on @f.  Return 0. */
int cli_gen_man(FILE *f);
int cli_gen_bash(FILE *f);

/*
 * Runs a verb's body in a coroutine (the engines need one) and returns
 * its exit status; CLI_EXIT_ERR if no executor could be set up.
 */
int cli_run(int (*body)(void *arg), void *arg);

/*
 * Whether @key is one of the options that cli_parse() acts on itself, for
 * the whole process, before handing them to the verb like any other: the
 * secrets of encrypted images (OPT_SECRETS in cli_table.c: --key-file,
 * --object) and the remote file options (OPT_PROTOCOLS: --allow-protocol,
 * --reconnect-delay, --open-timeout, --rbd-conf, --rbd-id).  A verb lists
 * them in its options and need do nothing else with them.
 */
bool cli_opt_shared(int key);

/* Returns the command named @name, or NULL. */
const struct cli_cmd *cli_find(const char *name);

/* Runs imgblk with @argv[1] as the command.  Returns the exit status. */
int cli_main(int argc, char **argv);

/*
 * Option parsers.  Each returns 0, CLI_HELP after printing the usage, or
 * -EINVAL after printing one line that says what is wrong.  add --tab,
 * whose device comes from imgblktab, is cli_cmd_add()'s alone:
 * cli_parse_add() refuses it.
 */
int cli_parse_add(int argc, char **argv, struct ublk_add_opts *o);

struct cli_del_opts {
	bool all;
	bool force;		/* delete even a device in use */
	bool tab;		/* the devices of imgblktab */
	const char *tab_name;	/* its one entry to delete, or NULL: all */
	unsigned int id;
};
int cli_parse_del(int argc, char **argv, struct cli_del_opts *o);

struct cli_list_opts {
	bool json;
	bool have_id;
	unsigned int id;
};
int cli_parse_list(int argc, char **argv, struct cli_list_opts *o);

/* One row of qemu-img's snapshot table (snapshot -l, info); @si NULL: the header row. */
void cli_snapshot_row(const struct tgt_snapshot_info *si);

/*
 * Whether running device @id is paused (its server says so); @reason (of
 * @len bytes) gets why.  A server that does not answer counts as not
 * paused.
 */
int cli_live_pause_state(unsigned int id, char *reason, size_t len);

#endif
