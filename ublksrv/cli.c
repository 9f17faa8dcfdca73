// SPDX-License-Identifier: GPL-2.0
/*
 * The command line's machinery: the one option parser every verb goes
 * through, the help printed from the table (cli_table.c), and dispatch.
 * Usage errors all read the same: one line naming the bad option, the
 * missing value or the operand, and where to look ("Try 'imgblk VERB
 * --help'").
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bfile.h"
#include "cli.h"
#include "secret.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

#ifndef IMGBLK_VERSION
#define IMGBLK_VERSION "unknown"
#endif

/* Help's columns: options from 2, their text from 22, lines up to 79. */
#define CLI_HELP_COL	22
#define CLI_WIDTH	79

/* Every verb takes -h/--help; the parser handles it before the verb. */
static const struct cli_opt cli_help_opt = {
	'h', "help", NULL, "show this help and exit",
};

/*
 * Secrets of encrypted images: `--key-file [IMAGE=]FILE` and QEMU's
 * `--object secret,id=ID,file=FILE` (lib/secret.c reads the file at once).
 * Returns 0 or -EINVAL (printed).
 */
static int cli_secret_opt(int key, const char *arg)
{
	int ret = key == CLI_K_KEY_FILE ? secret_add_key_file(arg) : secret_add_object(arg);

	return ret ? -EINVAL : 0;
}

/*
 * Remote files (NBD, RBD): --allow-protocol, --reconnect-delay,
 * --open-timeout, --rbd-conf, --rbd-id, for the whole process.  Returns
 * 0 or -EINVAL (printed).
 */
static int cli_protocol_opt(int key, const char *arg)
{
	static uint64_t reconnect_s, open_s;
	unsigned int set;
	uint64_t *v;

	if (key == CLI_K_RBD_CONF || key == CLI_K_RBD_ID) {
		bfile_rbd_set_defaults(key == CLI_K_RBD_CONF ? arg : NULL,
				       key == CLI_K_RBD_ID ? arg : NULL);
		return 0;
	}
	if (key == CLI_K_ALLOW_PROTOCOL) {
		if (bfile_parse_protocols(arg, &set)) {
			img_err("--allow-protocol takes file, nbd and rbd, comma-separated, not '%s'",
				arg);
			return -EINVAL;
		}
		bfile_set_allowed_protocols(set);
		return 0;
	}
	v = key == CLI_K_RECONNECT_DELAY ? &reconnect_s : &open_s;
	if (parse_uint(arg, 0, 3600, v)) {
		img_err("--%s takes seconds, 0 to 3600, not '%s'",
			key == CLI_K_RECONNECT_DELAY ? "reconnect-delay" : "open-timeout", arg);
		return -EINVAL;
	}
	bfile_nbd_set_timeouts(reconnect_s * 1000, open_s * 1000);
	return 0;
}

bool cli_opt_shared(int key)
{
	switch (key) {
	case CLI_K_KEY_FILE:
	case CLI_K_OBJECT:
	case CLI_K_ALLOW_PROTOCOL:
	case CLI_K_RECONNECT_DELAY:
	case CLI_K_OPEN_TIMEOUT:
	case CLI_K_RBD_CONF:
	case CLI_K_RBD_ID:
		return true;
	}
	return false;
}

int cli_run(int (*body)(void *arg), void *arg)
{
	int ret = exec_run_sync(body, arg);

	if (ret < 0) {
		img_err("cannot set up io_uring: %s", strerror(-ret));
		return CLI_EXIT_ERR;
	}
	return ret;
}

const struct cli_cmd *cli_find(const char *name)
{
	unsigned int i;

	for (i = 0; i < cli_nr_cmds; i++)
		if (!strcmp(cli_cmds[i].name, name))
			return &cli_cmds[i];
	return NULL;
}

const char *cli_opt_name(const struct cli_opt *opt, char *buf, size_t len)
{
	if (opt->name)
		snprintf(buf, len, "--%s", opt->name);
	else
		snprintf(buf, len, "-%c", opt->key);
	return buf;
}

int cli_usage_err(const struct cli_cmd *cmd, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	img_err("%s: %s. Try 'imgblk %s --help'.", cmd->name, msg, cmd->name);
	return -EINVAL;
}

int cli_parse_status(const struct cli_cmd *cmd, int ret)
{
	if (ret == CLI_HELP)
		return CLI_EXIT_OK;
	return cmd->flags & CLI_IMAGE ? CLI_EXIT_ERR : CLI_EXIT_USAGE;
}

static const struct cli_opt *cli_find_short(const struct cli_cmd *cmd, int c)
{
	const struct cli_opt *o;

	if (c == 'h')
		return &cli_help_opt;
	for (o = cmd->opts; o && o->key; o++)
		if (o->key == c && o->key < 0x100)
			return o;
	return NULL;
}

/* Whether @o's long name is, or begins with, @word's @len bytes after "--". */
static int cli_long_match(const struct cli_opt *o, const char *word, size_t len)
{
	if (!o->name || !len || strncmp(o->name, word + 2, len))
		return 0;
	return o->name[len] ? 1 : 2;
}

/*
 * The long option @word names (@len bytes after "--", before any "="):
 * exact, or the one whose name it begins.  Returns it, or NULL after
 * printing why.
 */
static const struct cli_opt *cli_find_long(const struct cli_cmd *cmd, const char *word,
					   size_t len)
{
	const struct cli_opt *o, *found = NULL;
	unsigned int prefixes = 0;
	int m = cli_long_match(&cli_help_opt, word, len);

	if (m == 2)
		return &cli_help_opt;
	if (m) {
		found = &cli_help_opt;
		prefixes++;
	}
	for (o = cmd->opts; o && o->key; o++) {
		m = cli_long_match(o, word, len);
		if (m == 2)
			return o;
		if (m) {
			found = o;
			prefixes++;
		}
	}
	if (prefixes > 1) {
		cli_usage_err(cmd, "option '%.*s' is ambiguous", (int)len + 2, word);
		return NULL;
	}
	if (!found)
		cli_usage_err(cmd, "unknown option '%.*s'", (int)len + 2, word);
	return found;
}

/*
 * Hands @opt and its value to the verb, or prints the help.  A shared
 * option is acted on first, if @act: cli_scan() only looks.
 */
static int cli_give(const struct cli_cmd *cmd, const struct cli_opt *opt, char *arg,
		    cli_opt_fn fn, void *ctx, bool act)
{
	int ret = 0;

	if (opt == &cli_help_opt) {
		cli_help(cmd, stdout);
		return CLI_HELP;
	}
	if (act && cli_opt_shared(opt->key))
		ret = opt->key == CLI_K_KEY_FILE || opt->key == CLI_K_OBJECT ?
		      cli_secret_opt(opt->key, arg) : cli_protocol_opt(opt->key, arg);
	if (ret)
		return ret;
	return fn ? fn(ctx, opt, arg) : 0;
}

/* cli_parse(), and cli_scan() without @act. */
static int cli_parse_as(const struct cli_cmd *cmd, int argc, char **argv, cli_opt_fn fn,
			void *ctx, struct cli_args *args, bool act)
{
	int i, nr = 0, ret;
	bool opts_end = false;
	char name[64];

	/*
	 * Operands are moved down to argv[1..nr] as they come: a write lands
	 * at or before the word being read, never on one still to be read.
	 */
	for (i = 1; i < argc; i++) {
		char *w = argv[i];
		const struct cli_opt *opt;

		if (opts_end || w[0] != '-' || !w[1]) {
			argv[1 + nr++] = w;
			if (cmd->flags & CLI_STOP)
				opts_end = true;
			continue;
		}
		if (!strcmp(w, "--")) {
			opts_end = true;
			continue;
		}
		if (w[1] == '-') {
			char *eq = strchr(w, '=');
			size_t len = eq ? (size_t)(eq - w - 2) : strlen(w + 2);

			opt = cli_find_long(cmd, w, len);
			if (!opt)
				return -EINVAL;
			cli_opt_name(opt, name, sizeof(name));
			if (!opt->arg && eq)
				return cli_usage_err(cmd, "option '%s' takes no value", name);
			if (opt->arg && !eq && i + 1 == argc)
				return cli_usage_err(cmd, "option '%s' needs a value", name);
			ret = cli_give(cmd, opt, !opt->arg ? NULL : eq ? eq + 1 : argv[++i],
				       fn, ctx, act);
			if (ret)
				return ret;
			continue;
		}
		/* A cluster of short options; the first that takes a value ends it. */
		for (w++; *w; w++) {
			opt = cli_find_short(cmd, (unsigned char)*w);
			if (!opt)
				return cli_usage_err(cmd, "unknown option '-%c'", *w);
			if (!opt->arg) {
				ret = cli_give(cmd, opt, NULL, fn, ctx, act);
				if (ret)
					return ret;
				continue;
			}
			if (!w[1] && i + 1 == argc)
				return cli_usage_err(cmd, "option '-%c' needs a value", *w);
			ret = cli_give(cmd, opt, w[1] ? w + 1 : argv[++i], fn, ctx, act);
			if (ret)
				return ret;
			break;
		}
	}
	if ((unsigned int)nr < cmd->min_args)
		return cli_usage_err(cmd, "give %s", cmd->operands);
	if ((unsigned int)nr > cmd->max_args)
		return cli_usage_err(cmd, "unexpected argument '%s'", argv[1 + cmd->max_args]);
	args->argc = nr;
	args->argv = argv + 1;
	argv[1 + nr] = NULL;
	return 0;
}

int cli_parse(const struct cli_cmd *cmd, int argc, char **argv, cli_opt_fn fn,
	      void *ctx, struct cli_args *args)
{
	return cli_parse_as(cmd, argc, argv, fn, ctx, args, true);
}

int cli_scan(const struct cli_cmd *cmd, int argc, char **argv, cli_opt_fn fn,
	     void *ctx, struct cli_args *args)
{
	return cli_parse_as(cmd, argc, argv, fn, ctx, args, false);
}

/*
 * Prints @text from column @col, wrapped at spaces to CLI_WIDTH; the
 * first line continues where the cursor is (@at).
 */
static void cli_wrap(FILE *f, const char *text, int col, int at)
{
	const char *p = text;

	while (*p) {
		const char *end = p;
		int room = CLI_WIDTH - at;

		/* The longest run of words that fits, at least one word. */
		for (;;) {
			const char *sp = strchr(end + (end != p), ' ');
			const char *stop = sp ? sp : p + strlen(p);

			if (end != p && stop - p > room)
				break;
			end = stop;
			if (!sp)
				break;
		}
		fprintf(f, "%.*s\n", (int)(end - p), p);
		p = end;
		while (*p == ' ')
			p++;
		if (*p)
			fprintf(f, "%*s", col, "");
		at = col;
	}
}

/*
 * Prints one synopsis line after @prefix, wrapped between bracketed
 * groups so that none is cut.
 */
static void cli_wrap_synopsis(FILE *f, const char *prefix, const char *line, size_t len)
{
	int col = strlen(prefix), at = col, depth = 0;
	const char *p = line, *end = line + len, *q;

	fputs(prefix, f);
	while (p < end) {
		for (q = p; q < end && (depth || *q != ' ' || q == p); q++) {
			if (*q == '[' || *q == '(')
				depth++;
			else if ((*q == ']' || *q == ')') && depth)
				depth--;
		}
		if (at > col && at + 1 + (q - p) > CLI_WIDTH) {
			fprintf(f, "\n%*s", col, "");
			at = col;
		} else if (at > col) {
			fputc(' ', f);
			at++;
		}
		fprintf(f, "%.*s", (int)(q - p), p);
		at += q - p;
		p = q;
		while (p < end && *p == ' ')
			p++;
	}
	fputc('\n', f);
}

/* Prints the option column of @o ("  -t, --type TYPE"); returns its width. */
static int cli_print_opt(FILE *f, const struct cli_opt *o)
{
	int n;

	if (o->key < 0x100 && o->name)
		n = fprintf(f, "  -%c, --%s", o->key, o->name);
	else if (o->name)
		n = fprintf(f, "      --%s", o->name);
	else
		n = fprintf(f, "  -%c", o->key);
	if (o->arg)
		n += fprintf(f, " %s", o->arg);
	return n;
}

static void cli_help_opt_line(FILE *f, const struct cli_opt *o)
{
	int n = cli_print_opt(f, o);

	if (n + 2 > CLI_HELP_COL) {
		fprintf(f, "\n%*s", CLI_HELP_COL, "");
		n = CLI_HELP_COL;
	} else {
		fprintf(f, "%*s", CLI_HELP_COL - n, "");
	}
	cli_wrap(f, o->help, CLI_HELP_COL, CLI_HELP_COL);
}

void cli_exits(const struct cli_cmd *cmd, struct cli_exit *out, unsigned int max)
{
	unsigned int n = 0;
	const struct cli_exit *e;

	if (cmd->exits) {
		for (e = cmd->exits; e->status >= 0 && n + 1 < max; e++)
			out[n++] = *e;
	} else {
		out[n++] = (struct cli_exit){ 0, "success" };
		out[n++] = (struct cli_exit){ 1, cmd->flags & CLI_IMAGE ?
			"failure, or a usage error (as qemu-img)" : "failure" };
		if (!(cmd->flags & CLI_IMAGE))
			out[n++] = (struct cli_exit){ 2, "a usage error" };
	}
	out[n].status = -1;
}

void cli_help(const struct cli_cmd *cmd, FILE *f)
{
	const char *line = cmd->synopsis, *nl;
	const struct cli_example *ex;
	const struct cli_opt *o;
	struct cli_exit exits[16];
	char prefix[64];
	bool first = true;
	unsigned int i;

	do {
		nl = strchr(line, '\n');
		snprintf(prefix, sizeof(prefix), "%simgblk %s ", first ? "usage: " : "       ",
			 cmd->name);
		if (!*line)
			prefix[strlen(prefix) - 1] = '\0';
		cli_wrap_synopsis(f, prefix, line, nl ? (size_t)(nl - line) : strlen(line));
		first = false;
		line = nl ? nl + 1 : NULL;
	} while (line);
	if (cmd->desc)
		fprintf(f, "\n%s\n", cmd->desc);
	fprintf(f, "\noptions:\n");
	for (o = cmd->opts; o && o->key; o++)
		cli_help_opt_line(f, o);
	cli_help_opt_line(f, &cli_help_opt);
	if (cmd->examples) {
		fprintf(f, "\nexamples:\n");
		for (ex = cmd->examples; ex->cmd; ex++) {
			fprintf(f, "  %s\n", ex->cmd);
			if (ex->what) {
				fprintf(f, "%*s", 6, "");
				cli_wrap(f, ex->what, 6, 6);
			}
		}
	}
	cli_exits(cmd, exits, ARRAY_SIZE(exits));
	fprintf(f, "\nexit status:\n");
	for (i = 0; exits[i].status >= 0; i++) {
		fprintf(f, "  %-4d", exits[i].status);
		cli_wrap(f, exits[i].what, 6, 6);
	}
}

static void cli_usage(FILE *f)
{
	unsigned int i;

	fprintf(f, "usage: imgblk COMMAND [OPTIONS]\n\ncommands:\n");
	for (i = 0; i < cli_nr_cmds; i++)
		if (!(cli_cmds[i].flags & CLI_HIDDEN))
			fprintf(f, "  %-10s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
	fprintf(f, "\ntargets (add -t):\n");
	for (i = 0; i < tgt_table_len; i++)
		fprintf(f, "  %-10s %s\n", tgt_table[i]->name, tgt_table[i]->summary);
	fprintf(f, "\n`imgblk COMMAND --help` shows a command's options; "
		"`imgblk --version` the version.\n");
}

int cli_cmd_help(const struct cli_cmd *cmd, int argc, char **argv)
{
	const struct cli_cmd *which;
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, NULL, NULL, &a);

	if (ret)
		return cli_parse_status(cmd, ret);
	if (!a.argc) {
		cli_usage(stdout);
		return CLI_EXIT_OK;
	}
	which = cli_find(a.argv[0]);
	if (!which) {
		img_err("help: unknown command '%s'", a.argv[0]);
		return CLI_EXIT_USAGE;
	}
	cli_help(which, stdout);
	return CLI_EXIT_OK;
}

int cli_cmd_version(const struct cli_cmd *cmd, int argc, char **argv)
{
	struct cli_args a;
	int ret = cli_parse(cmd, argc, argv, NULL, NULL, &a);

	if (ret)
		return cli_parse_status(cmd, ret);
	printf("imgblk %s\n", IMGBLK_VERSION);
	return CLI_EXIT_OK;
}

const char *cli_version(void)
{
	return IMGBLK_VERSION;
}

int cli_main(int argc, char **argv)
{
	const struct cli_cmd *cmd;
	const char *dbg = getenv("IMGBLK_DEBUG");

	if (dbg) {
		img_debug_mask = strtoul(dbg, NULL, 0);
		/* The lines it enables are at the debug level. */
		if (img_debug_mask)
			img_log_set_level(IMG_LOG_DEBUG);
	}
	if (argc < 2) {
		cli_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_usage(stdout);
		return CLI_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))
		argv[1] = "version";
	cmd = cli_find(argv[1]);
	if (!cmd) {
		img_err("unknown command '%s' (see imgblk help)", argv[1]);
		return CLI_EXIT_USAGE;
	}
	return cmd->run(cmd, argc - 1, argv + 1);
}
