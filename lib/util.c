// SPDX-License-Identifier: GPL-2.0
/* Logging and number parsing shared by the CLI, the server and the engines. */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

unsigned int img_debug_mask;
const char *img_prog = "imgblk";

static void img_vprint(const char *fmt, va_list ap)
{
	char line[1024];

	/* One write per line so lines from several threads do not interleave. */
	vsnprintf(line, sizeof(line), fmt, ap);
	fprintf(stderr, "%s: %s\n", img_prog, line);
}

void img_err(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	img_vprint(fmt, ap);
	va_end(ap);
}

void img_log(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	img_vprint(fmt, ap);
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
