/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Small helpers shared by every part of imgblk: logging, number parsing,
 * alignment arithmetic.  Nothing here knows about ublk or image formats.
 */
#ifndef IMGBLK_UTIL_H
#define IMGBLK_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ARRAY_SIZE(a)	(sizeof(a) / sizeof((a)[0]))
#define MIN(a, b)	((a) < (b) ? (a) : (b))
#define MAX(a, b)	((a) > (b) ? (a) : (b))
#define DIV_ROUND_UP(n, d)	(((n) + (d) - 1) / (d))
/* Power-of-two alignment only: every caller aligns to sectors or clusters. */
#define ALIGN_DOWN(x, a)	((x) & ~((__typeof__(x))(a) - 1))
#define ALIGN_UP(x, a)		ALIGN_DOWN((x) + (a) - 1, (a))
#define IS_ALIGNED(x, a)	(((x) & ((__typeof__(x))(a) - 1)) == 0)

#define container_of(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x)	__builtin_expect(!!(x), 0)

#define __printf(a, b)	__attribute__((format(printf, a, b)))

/* Debug masks for img_dbg(); enabled with IMGBLK_DEBUG=<mask> in the environment. */
#define IMG_DBG_CTRL	(1U << 0)
#define IMG_DBG_QUEUE	(1U << 1)
#define IMG_DBG_IO	(1U << 2)
#define IMG_DBG_FORMAT	(1U << 3)

extern unsigned int img_debug_mask;
extern const char *img_prog;

/* Log levels, syslog's numbers: a message is shown if its level <= the set one. */
#define IMG_LOG_ERR	3
#define IMG_LOG_WARNING	4
#define IMG_LOG_INFO	6
#define IMG_LOG_DEBUG	7

/*
 * One line, the newline added: on stderr prefixed with the program name,
 * or to syslog after img_log_to_syslog().  img_err at IMG_LOG_ERR,
 * img_log at IMG_LOG_INFO, img_debug (and img_dbg) at IMG_LOG_DEBUG.
 */
void img_err(const char *fmt, ...) __printf(1, 2);
void img_log(const char *fmt, ...) __printf(1, 2);
void img_debug(const char *fmt, ...) __printf(1, 2);
#define img_dbg(mask, fmt, ...)						\
	do {								\
		if (unlikely(img_debug_mask & (mask)))			\
			img_debug("%s: " fmt, __func__, ##__VA_ARGS__); \
	} while (0)

/* Messages above @level (IMG_LOG_*; default IMG_LOG_INFO) are dropped. */
void img_log_set_level(int level);

/* "err", "warning", "info" or "debug" to its IMG_LOG_*.  Returns 0 or -EINVAL. */
int img_log_parse_level(const char *s, int *level);

/*
 * Prefixes the lines on stderr with @ctx (e.g. "imgblktab:3: ", saying
 * which line of a file they are about) until called again; NULL for none.
 */
void img_log_context(const char *ctx);

/*
 * From now on, messages go to syslog (facility daemon, ident the program
 * name with its pid), each prefixed with @prefix (e.g. "ublkb0: ").
 */
void img_log_to_syslog(const char *prefix);

/*
 * Parses a decimal unsigned integer in [min, max].
 * Returns 0 on success, -EINVAL if @s is not a number, -ERANGE if out of range.
 */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);

/*
 * Parses a size with qemu-img's suffixes (none = bytes, k/K, M, G, T, P, E,
 * powers of 1024; an optional trailing 'B' or 'iB' is accepted).
 * Returns 0 on success, -EINVAL on a malformed string, -ERANGE on overflow.
 */
int parse_size(const char *s, uint64_t *out_bytes);

/* Formats @bytes the way qemu-img info does ("64 MiB", "1.5 GiB"). */
void format_size(uint64_t bytes, char *buf, size_t len);

/* Writes @bytes of zeros from offset 0 of @fd (full preallocation).  Returns 0 or -errno. */
int img_write_zeros_fd(int fd, uint64_t bytes);

/* True if the @len bytes at @buf are all zero. */
bool buf_is_zero(const void *buf, size_t len);

static inline bool is_pow2(uint64_t x)
{
	return x && !(x & (x - 1));
}

static inline unsigned int ilog2_u64(uint64_t x)
{
	return 63 - __builtin_clzll(x);
}

/* Big- and little-endian accessors for on-disk fields (unaligned-safe). */
static inline uint64_t get_be64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return __builtin_bswap64(v);
}

static inline uint32_t get_be32(const void *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return __builtin_bswap32(v);
}

static inline uint16_t get_be16(const void *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return __builtin_bswap16(v);
}

static inline void put_be64(void *p, uint64_t v)
{
	v = __builtin_bswap64(v);
	memcpy(p, &v, 8);
}

static inline void put_be32(void *p, uint32_t v)
{
	v = __builtin_bswap32(v);
	memcpy(p, &v, 4);
}

static inline void put_be16(void *p, uint16_t v)
{
	v = __builtin_bswap16(v);
	memcpy(p, &v, 2);
}

static inline uint64_t get_le64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

static inline uint32_t get_le32(const void *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static inline void put_le64(void *p, uint64_t v)
{
	memcpy(p, &v, 8);
}

static inline void put_le32(void *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

#endif
