// SPDX-License-Identifier: GPL-2.0
/*
 * Logging and number parsing shared by the CLI, the server and the
 * engines.  Every message goes through img_vprint(): to stderr, or to
 * syslog (the journal) once a background server has left its terminal.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "util.h"

unsigned int img_debug_mask;
const char *img_prog = "imgblk";

/* Where lines go: stderr, or syslog with a prefix naming the device. */
static int img_level = IMG_LOG_INFO;
static bool img_syslog;
static char img_syslog_prefix[64];
/* What the lines on stderr are about (img_log_context()); "" for nothing. */
static char img_context[PATH_MAX + 16];

void img_log_set_level(int level)
{
	img_level = level;
}

int img_log_parse_level(const char *s, int *level)
{
	static const struct { const char *name; int level; } names[] = {
		{ "err", IMG_LOG_ERR }, { "warning", IMG_LOG_WARNING },
		{ "info", IMG_LOG_INFO }, { "debug", IMG_LOG_DEBUG },
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(s, names[i].name)) {
			*level = names[i].level;
			return 0;
		}
	}
	return -EINVAL;
}

void img_log_context(const char *ctx)
{
	snprintf(img_context, sizeof(img_context), "%s", ctx ? ctx : "");
}

void img_log_to_syslog(const char *prefix)
{
	snprintf(img_syslog_prefix, sizeof(img_syslog_prefix), "%s", prefix);
	/* LOG_NDELAY: connect now, while /dev/log is known to be there. */
	openlog(img_prog, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	img_syslog = true;
}

static void img_vprint(int level, const char *fmt, va_list ap)
{
	char line[1024];

	if (level > img_level)
		return;
	/* One write per line so lines from several threads do not interleave. */
	vsnprintf(line, sizeof(line), fmt, ap);
	if (img_syslog)
		syslog(level, "%s%s", img_syslog_prefix, line);
	else
		fprintf(stderr, "%s: %s%s\n", img_prog, img_context, line);
}

void img_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	img_vprint(IMG_LOG_ERR, fmt, ap);
	va_end(ap);
}

void img_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	img_vprint(IMG_LOG_INFO, fmt, ap);
	va_end(ap);
}

void img_debug(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	img_vprint(IMG_LOG_DEBUG, fmt, ap);
	va_end(ap);
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	/* strtoull accepts leading blanks and a minus sign: we do not. */
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*end)
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t *out_bytes)
{
	static const char suffixes[] = "kmgtpe";
	unsigned long long v;
	unsigned int shift = 0;
	const char *p;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (*end) {
		p = strchr(suffixes, tolower((unsigned char)*end));
		if (p) {
			shift = 10 * (unsigned int)(p - suffixes + 1);
			end++;
			if (*end == 'i')
				end++;
		}
		if (*end == 'B' || *end == 'b')
			end++;
		if (*end || (end > s && end[-1] == 'i'))
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out_bytes = (uint64_t)v << shift;
	return 0;
}

void format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
	unsigned int i = 0;

	/*
	 * As qemu's size_to_str(), whose output tests compare with ours: the
	 * next unit from 1000 of this one (1024000 bytes is "0.977 MiB"), and
	 * three significant digits (999.5 KiB is "1e+03 KiB" there too).
	 */
	while (i < ARRAY_SIZE(units) - 1 && bytes >= 1000ULL << (10 * i))
		i++;
	snprintf(buf, len, "%.3g %s", (double)bytes / (double)(1ULL << (10 * i)),
		 units[i]);
}

int img_write_zeros_fd(int fd, uint64_t bytes)
{
	static const char zeros[65536];
	uint64_t off = 0;

	while (off < bytes) {
		size_t n = MIN(sizeof(zeros), bytes - off);
		ssize_t w = pwrite(fd, zeros, n, off);

		if (w < 0)
			return -errno;
		off += w;
	}
	return 0;
}

bool buf_is_zero(const void *buf, size_t len)
{
	const unsigned char *p = buf;

	/* Compare the buffer with itself shifted by one byte: one memcmp pass. */
	return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}
