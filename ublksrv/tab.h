/* SPDX-License-Identifier: GPL-2.0 */
/*
 * imgblktab: the devices to attach at boot, one a line
 * "NAME IMAGE [OPTIONS]", OPTIONS comma-separated as in fstab.
 */
#ifndef IMGBLK_TAB_H
#define IMGBLK_TAB_H

#include <limits.h>

#include "state.h"

/* The default path; IMGBLK_TAB in the environment overrides it. */
#define UBLK_TAB_PATH	"/etc/imgblk/imgblktab"

struct ublk_tab_entry {
	unsigned int line;		/* 1-based, for messages */
	char name[UBLK_NAME_MAX + 1];
	char image[PATH_MAX];
	char options[1024];		/* as written; empty: none */
};

/* The imgblktab in force: $IMGBLK_TAB or UBLK_TAB_PATH. */
const char *ublk_tab_path(void);

/*
 * Reads the imgblktab at @path into a malloc'ed array *@out (NULL when
 * empty).  Every line is checked (fields, name, unique names); each bad
 * one is reported as "PATH:LINE: why", left out and counted in *@bad, so
 * that one bad line does not keep the other devices from booting.
 * Returns the number of good entries, or -errno when the file cannot be
 * read.
 */
int ublk_tab_read(const char *path, struct ublk_tab_entry **out, unsigned int *bad);

/*
 * The command-line words of add for @e: "--name NAME -f IMAGE" and one
 * word per option ("format=qcow2" becomes "--type=qcow2", "readonly"
 * "--read-only", KEY=VALUE "--KEY=VALUE", KEY "--KEY"), into @argv
 * (room for @max words; they point into @e and @buf of @len bytes).
 * Returns the number of words, or -E2BIG.
 */
int ublk_tab_argv(const struct ublk_tab_entry *e, char **argv, int max, char *buf,
		  size_t len);

/* Whether @name is a valid stable name: [A-Za-z0-9._-], 1..UBLK_NAME_MAX. */
bool ublk_name_valid(const char *name);

#endif
