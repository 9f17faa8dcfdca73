// SPDX-License-Identifier: GPL-2.0
/* The command table, help, and dispatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "tgt.h"
#include "util.h"

int cli_cmd_add(int argc, char **argv);
int cli_cmd_del(int argc, char **argv);
int cli_cmd_list(int argc, char **argv);
static int cli_cmd_help(int argc, char **argv);

static const struct cli_cmd cli_cmds[] = {
	{
		.name = "add",
		.summary = "serve an image as /dev/ublkbN",
		.usage =
"usage: imgblk add -t TYPE [-f FILE] [-n ID] [-q QUEUES] [-d DEPTH] [-r]\n"
"                  [--buffered] [--size SIZE] [--foreground]\n"
"\n"
"Adds a ublk device served by TYPE and prints its path (/dev/ublkbN) once\n"
"the device works; the server then runs in the background until deleted.\n"
"\n"
"  -t, --type TYPE     target: see `imgblk help` for the list\n"
"  -f, --file FILE     the image file or block device\n"
"  -n, --number ID     device id (default: the first free one)\n"
"  -q, --queues N      hardware queues, one server thread each (default 1)\n"
"  -d, --depth N       requests in flight per queue, 1-4096 (default 128)\n"
"  -r, --read-only     the device refuses writes\n"
"      --buffered      raw: use the host page cache instead of O_DIRECT\n"
"      --size SIZE     null: device size (suffixes K, M, G, T)\n"
"      --foreground    serve in this process; Ctrl-C deletes the device",
		.run = cli_cmd_add,
	},
	{
		.name = "del",
		.summary = "delete a device and stop its server",
		.usage =
"usage: imgblk del -n ID | -a\n"
"\n"
"  -n, --number ID     delete device ID\n"
"  -a, --all           delete every imgblk device",
		.run = cli_cmd_del,
	},
	{
		.name = "list",
		.summary = "list the devices and their servers",
		.usage =
"usage: imgblk list [-n ID] [--json]\n"
"\n"
"Shows id, target, queues, depth, state (LIVE, QUIESCED, DEAD), server pid,\n"
"device path and file of each device.\n"
"\n"
"  -n, --number ID     only device ID\n"
"      --json          machine-readable output",
		.run = cli_cmd_list,
	},
	{
		.name = "help",
		.summary = "show this help, or a command's",
		.usage = "usage: imgblk help [COMMAND]",
		.run = cli_cmd_help,
	},
};

const struct cli_cmd *cli_find(const char *name)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cli_cmds); i++)
		if (!strcmp(cli_cmds[i].name, name))
			return &cli_cmds[i];
	return NULL;
}

static void cli_usage(FILE *f)
{
	unsigned int i;

	fprintf(f, "usage: imgblk COMMAND [OPTIONS]\n\ncommands:\n");
	for (i = 0; i < ARRAY_SIZE(cli_cmds); i++)
		fprintf(f, "  %-8s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
	fprintf(f, "\ntargets (add -t):\n");
	for (i = 0; i < tgt_table_len; i++)
		fprintf(f, "  %-8s %s\n", tgt_table[i]->name, tgt_table[i]->summary);
	fprintf(f, "\n`imgblk COMMAND --help` shows a command's options.\n");
}

static int cli_cmd_help(int argc, char **argv)
{
	const struct cli_cmd *cmd;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_usage(stdout);
		return CLI_EXIT_OK;
	}
	cmd = cli_find(argv[1]);
	if (!cmd) {
		img_err("help: unknown command '%s'", argv[1]);
		return CLI_EXIT_USAGE;
	}
	puts(cmd->usage);
	return CLI_EXIT_OK;
}

int cli_main(int argc, char **argv)
{
	const struct cli_cmd *cmd;
	const char *dbg = getenv("IMGBLK_DEBUG");

	if (dbg)
		img_debug_mask = strtoul(dbg, NULL, 0);
	if (argc < 2) {
		cli_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cli_cmd_help(1, argv);
	cmd = cli_find(argv[1]);
	if (!cmd) {
		img_err("unknown command '%s' (see imgblk help)", argv[1]);
		return CLI_EXIT_USAGE;
	}
	return cmd->run(argc - 1, argv + 1);
}
