/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The imgblk command line: one table of commands, each with its parser
 * kept apart from its action so the parsers can be tested alone.
 */
#ifndef IMGBLK_CLI_H
#define IMGBLK_CLI_H

#include <stdbool.h>
#include <stddef.h>

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

struct cli_cmd {
	const char *name;
	const char *summary;
	const char *usage;
	/* Returns the process exit status. */
	int (*run)(int argc, char **argv);
};

/*
 * Runs a verb's body in a coroutine (the engines need one) and returns
 * its exit status; CLI_EXIT_ERR if no executor could be set up.
 */
int cli_run(int (*body)(void *arg), void *arg);

/* Returns the command named @name, or NULL. */
const struct cli_cmd *cli_find(const char *name);

/* Runs imgblk with @argv[1] as the command.  Returns the exit status. */
int cli_main(int argc, char **argv);

/*
 * Option parsers.  Each returns 0, CLI_HELP after printing the usage, or
 * -EINVAL after printing one line that says what is wrong.
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

/*
 * Whether running device @id is paused (its server says so); @reason (of
 * @len bytes) gets why.  A server that does not answer counts as not
 * paused.
 */
int cli_live_pause_state(unsigned int id, char *reason, size_t len);

#endif
