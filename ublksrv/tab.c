// SPDX-License-Identifier: GPL-2.0
/*
 * imgblktab, the devices to attach at boot (as nbd-client's nbdtab and
 * Ceph's rbdmap): reading and checking the file, and turning an entry's
 * options into the words of `imgblk add`, so that the table takes every
 * option of add, checked by the same parser.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tab.h"
#include "util.h"

const char *ublk_tab_path(void)
{
	const char *p = getenv("IMGBLK_TAB");

	return p && *p ? p : UBLK_TAB_PATH;
}

bool ublk_name_valid(const char *name)
{
	size_t n = strlen(name), i;

	if (!n || n > UBLK_NAME_MAX)
		return false;
	for (i = 0; i < n; i++) {
		if (!isalnum((unsigned char)name[i]) && !strchr("._-", name[i]))
			return false;
	}
	return true;
}

/* Splits one line into @e.  Returns 1 for an entry, 0 for none, -EINVAL. */
static int tab_parse_line(const char *path, unsigned int lineno, char *line,
			  struct ublk_tab_entry *e)
{
	char *fields[4], *p = line, *save;
	int n = 0;

	line[strcspn(line, "\n")] = '\0';
	/* "#" starts a comment only at the start of a field, as in fstab. */
	while (n < 4 && (fields[n] = strtok_r(p, " \t", &save))) {
		if (fields[n][0] == '#')
			break;
		p = NULL;
		n++;
	}
	if (n == 0)
		return 0;
	if (n < 2) {
		img_err("%s:%u: want NAME IMAGE [OPTIONS], found only '%s'", path, lineno,
			fields[0]);
		return -EINVAL;
	}
	if (n == 4 && fields[3][0] != '#') {
		img_err("%s:%u: unexpected '%s' after the options (options are separated by commas, without blanks)",
			path, lineno, fields[3]);
		return -EINVAL;
	}
	if (!ublk_name_valid(fields[0])) {
		img_err("%s:%u: bad name '%s': use 1 to %d letters, digits, '.', '_' or '-'",
			path, lineno, fields[0], UBLK_NAME_MAX);
		return -EINVAL;
	}
	memset(e, 0, sizeof(*e));
	e->line = lineno;
	snprintf(e->name, sizeof(e->name), "%s", fields[0]);
	if (snprintf(e->image, sizeof(e->image), "%s", fields[1]) >= (int)sizeof(e->image) ||
	    (n > 2 && snprintf(e->options, sizeof(e->options), "%s", fields[2]) >=
	     (int)sizeof(e->options))) {
		img_err("%s:%u: line too long", path, lineno);
		return -EINVAL;
	}
	return 1;
}

int ublk_tab_read(const char *path, struct ublk_tab_entry **out, unsigned int *bad)
{
	struct ublk_tab_entry *tab = NULL, e;
	char line[PATH_MAX + 1100];
	unsigned int lineno = 0;
	int n = 0, i, ret;
	FILE *f;

	*bad = 0;
	f = fopen(path, "re");
	if (!f) {
		ret = -errno;
		img_err("%s: %s", path, strerror(errno));
		return ret;
	}
	while (fgets(line, sizeof(line), f)) {
		lineno++;
		ret = tab_parse_line(path, lineno, line, &e);
		if (ret <= 0) {
			*bad += ret < 0;
			continue;
		}
		for (i = 0; i < n; i++) {
			if (!strcmp(tab[i].name, e.name)) {
				img_err("%s:%u: name '%s' already used on line %u", path, lineno,
					e.name, tab[i].line);
				(*bad)++;
				break;
			}
		}
		if (i < n)
			continue;
		if (!(n & (n - 1))) {
			struct ublk_tab_entry *t = realloc(tab, (n ? 2 * n : 1) * sizeof(*t));

			if (!t) {
				fclose(f);
				free(tab);
				return -ENOMEM;
			}
			tab = t;
		}
		tab[n++] = e;
	}
	fclose(f);
	*out = tab;
	return n;
}

int ublk_tab_argv(const struct ublk_tab_entry *e, char **argv, int max, char *buf,
		  size_t len)
{
	static const struct { const char *tab, *add; } aliases[] = {
		{ "format", "type" },
		{ "readonly", "read-only" },
		{ "ro", "read-only" },
	};
	char opts[sizeof(e->options)], *o, *save;
	int n = 0;
	size_t i;

	if (max < 4)
		return -E2BIG;
	argv[n++] = "--name";
	argv[n++] = (char *)e->name;
	argv[n++] = "-f";
	argv[n++] = (char *)e->image;
	snprintf(opts, sizeof(opts), "%s", e->options);
	for (o = strtok_r(opts, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
		size_t klen = strcspn(o, "=");
		const char *key = o;
		int w;

		for (i = 0; i < sizeof(aliases) / sizeof(aliases[0]); i++) {
			if (strlen(aliases[i].tab) == klen && !strncmp(o, aliases[i].tab, klen)) {
				key = aliases[i].add;
				klen = strlen(key);
				break;
			}
		}
		if (n == max)
			return -E2BIG;
		w = snprintf(buf, len, "--%.*s%s", (int)klen, key, o + strcspn(o, "="));
		if (w < 0 || (size_t)w >= len)
			return -E2BIG;
		argv[n++] = buf;
		buf += w + 1;
		len -= w + 1;
	}
	return n;
}
