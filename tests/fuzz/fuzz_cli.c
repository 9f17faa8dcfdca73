// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: the option parsers of add, del and list
 * (cli_parse_add/del/list).  The first byte picks the parser; the rest,
 * split at NUL bytes, is argv[1..] (at most FUZZ_MAX_ARGS strings).
 * The parsers' contract (tests/host/cli.c) is checked too: a result of
 * 0, CLI_HELP or -EINVAL, nothing else.  docs/fuzzing.md.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define FUZZ_MAX_ARGS	32

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	/* Every bad option prints a line; usage goes to stdout. */
	if (!getenv("IMGBLK_FUZZ_VERBOSE")) {
		FILE *null = fopen("/dev/null", "w");

		if (null)
			stderr = stdout = null;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "add", "del", "list" };
	char *argv[FUZZ_MAX_ARGS + 2];
	unsigned int which;
	struct ublk_add_opts add;
	struct cli_del_opts del;
	struct cli_list_opts list;
	char *copy;
	size_t i, start;
	int argc = 1, ret;

	if (size < 1)
		return 0;
	/*
	 * add probes the image it is given, and an nbd:// or rbd: name would
	 * make it connect (and wait) somewhere: the parser is what is
	 * fuzzed here, not the network.
	 */
	if (memmem(data, size, "nbd", 3) || memmem(data, size, "rbd", 3))
		return 0;
	which = data[0] % 3;
	data++;
	size--;
	/* One NUL-terminated copy, cut into strings at each NUL. */
	copy = malloc(size + 1);
	if (!copy)
		abort();
	memcpy(copy, data, size);
	copy[size] = '\0';
	argv[0] = (char *)names[which];
	/* A NUL ends an argument; a last one without it is taken too. */
	for (i = 0, start = 0; i < size && argc <= FUZZ_MAX_ARGS; i++) {
		if (copy[i] == '\0') {
			argv[argc++] = copy + start;
			start = i + 1;
		}
	}
	if (start < size && argc <= FUZZ_MAX_ARGS)
		argv[argc++] = copy + start;
	argv[argc] = NULL;

	switch (which) {
	case 0:
		ret = cli_parse_add(argc, argv, &add);
		break;
	case 1:
		ret = cli_parse_del(argc, argv, &del);
		break;
	default:
		ret = cli_parse_list(argc, argv, &list);
		break;
	}
	if (ret != 0 && ret != CLI_HELP && ret != -EINVAL)
		abort();
	free(copy);
	return 0;
}
