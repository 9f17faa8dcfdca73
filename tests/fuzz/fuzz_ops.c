// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target with a data oracle: a valid qcow2 or QED image made by
 * the engine's own ->create, then a sequence of guest I/O and metadata
 * operations (resize, snapshots, commit, rebase, amend, reopen), each
 * checked against an in-memory model of what the guest must read.
 * docs/fuzzing.md.
 *
 * An input is three parameter bytes, then 4-byte operations:
 *
 *   p0: bit 0 QED (else qcow2), bits 1-3 cluster size, bit 4 qcow2 v2,
 *       bit 5 lazy refcounts, bit 6 extended L2, bit 7 a backing file
 *   p1: bits 0-2 log2(refcount_bits), bit 3 backing file in the image's
 *       format (else raw), bit 4 a one-table L2 cache, bits 5-7 the size
 *   p2: bits 0-1 the backing file's size, bits 2-3 QED's table size,
 *       bits 4-7 sectors past a 128 KiB multiple in the guest size
 *   op: [kind, a, b, c]: a sector (le16 of a, b) and a count (c + 1)
 *       for I/O, arguments for the rest (fz_op())
 *
 * Parameters the format cannot combine are adjusted, not refused (v2 has
 * 16-bit refcounts, extended L2 needs 16 KiB clusters): every input runs.
 *
 * The model keeps, per 512-byte sector, what a read may return: the
 * pattern of the operation that last wrote it (fz_pattern(): its number
 * and the sector, so a misplaced or stale sector names where it came
 * from), zeros, or what the backing file holds there.  Discard allows
 * the old content or zeros or the backing file (a partial cluster is left
 * alone, a whole one reads zeros, or the backing file on v2); a read
 * narrows a sector to what it returned, so later reads must agree.  A
 * mismatch, a failed I/O, or a check finding anything after a clean
 * close (no crash here, so not even a leak: a refused snapshot create
 * or apply takes back what it did) aborts with a message.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "exec.h"
#include "tgt.h"

#define FZ_SECTOR		512U
#define FZ_MAX_BYTES		(4U << 20)	/* the guest never grows past this */
#define FZ_MAX_SECTORS		(FZ_MAX_BYTES / FZ_SECTOR)
#define FZ_IO_SECTORS		256U
#define FZ_MAX_OPS		32U
#define FZ_MAX_SNAPS		4U
#define FZ_PARAM_BYTES		3U
#define FZ_OP_BYTES		4U
#define FZ_FILE_LIMIT_BYTES	(64ULL << 20)
/* The owner of the backing file's initial content; ops own 1..FZ_MAX_OPS. */
#define FZ_BASE_OWNER		0xffffffffU

/* fz_run.op while the image is created. */
#define FZ_SETUP		UINT_MAX

/* What a sector may read as (fz_sect.ok). */
#define FZ_OWN		(1U << 0)	/* the pattern of .owner */
#define FZ_ZERO		(1U << 1)	/* zeros */
#define FZ_BACK		(1U << 2)	/* the backing file there; zeros without one */
#define FZ_COPY		(1U << 3)	/* the pattern of .copy: the backing file's, copied */

struct fz_sect {
	uint32_t owner;
	uint32_t copy;
	uint8_t ok;
};

struct fz_snap {
	char name[16];
	uint64_t size_bytes;
	struct fz_sect *sect;
};

enum fz_kind {
	FZ_READ, FZ_WRITE, FZ_ZEROES, FZ_DISCARD, FZ_FLUSH, FZ_STATUS, FZ_RESIZE,
	FZ_SNAP_CREATE, FZ_SNAP_APPLY, FZ_SNAP_DELETE, FZ_REOPEN, FZ_AMEND,
	FZ_COMMIT, FZ_REBASE,
};

/* Writes twice as likely as the rest: the metadata changes need data. */
static const enum fz_kind fz_kinds[16] = {
	FZ_READ, FZ_WRITE, FZ_WRITE, FZ_ZEROES, FZ_DISCARD, FZ_FLUSH, FZ_STATUS,
	FZ_RESIZE, FZ_SNAP_CREATE, FZ_SNAP_APPLY, FZ_SNAP_DELETE, FZ_REOPEN,
	FZ_AMEND, FZ_COMMIT, FZ_REBASE, FZ_WRITE,
};

static const char *const fz_kind_names[] = {
	"read", "write", "write_zeroes", "discard", "flush", "block_status", "resize",
	"snapshot create", "snapshot apply", "snapshot delete", "reopen", "amend",
	"commit", "rebase",
};

struct fz_run {
	const char *fmt;
	const char *base_fmt;
	unsigned int cluster_bytes;
	unsigned int cow_sectors;	/* what one allocation covers: a (sub)cluster */
	bool small_cache;
	bool has_backing;

	struct tgt t;
	uint64_t size_bytes;
	struct fz_sect *sect;
	uint32_t *base;			/* per sector of the backing file; 0: zeros */
	uint64_t base_bytes;
	struct fz_snap snaps[FZ_MAX_SNAPS];
	unsigned int nr_snaps;

	const uint8_t *ops;
	unsigned int nr_ops;
	unsigned int op;		/* the one running, for messages */
};

static char fz_dir[PATH_MAX];
static char fz_img[PATH_MAX];
static char fz_base[PATH_MAX];
static struct fz_sect *fz_sect_mem;
static struct fz_sect *fz_snap_mem;
static uint32_t *fz_base_mem;
static uint8_t *fz_buf;
static const uint8_t fz_zeros[FZ_SECTOR];
static bool fz_verbose;

static void fz_cleanup(void)
{
	unlink(fz_img);
	unlink(fz_base);
	rmdir(fz_dir);
}

static void fz_die(const char *what)
{
	dprintf(STDERR_FILENO, "fuzz_ops: %s: %s\n", what, strerror(errno));
	exit(1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("IMGBLK_FUZZ_TMPDIR");
	struct rlimit rl = { FZ_FILE_LIMIT_BYTES, FZ_FILE_LIMIT_BYTES };

	(void)argc;
	(void)argv;
	if (!tmp)
		tmp = access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm";
	snprintf(fz_dir, sizeof(fz_dir), "%s/imgblk-fuzz-ops.XXXXXX", tmp);
	if (!mkdtemp(fz_dir))
		fz_die(fz_dir);
	snprintf(fz_img, sizeof(fz_img), "%s/img", fz_dir);
	snprintf(fz_base, sizeof(fz_base), "%s/base", fz_dir);
	atexit(fz_cleanup);

	fz_sect_mem = calloc(FZ_MAX_SECTORS, sizeof(*fz_sect_mem));
	fz_snap_mem = calloc((size_t)FZ_MAX_SNAPS * FZ_MAX_SECTORS, sizeof(*fz_snap_mem));
	fz_base_mem = calloc(FZ_MAX_SECTORS, sizeof(*fz_base_mem));
	if (!fz_sect_mem || !fz_snap_mem || !fz_base_mem ||
	    posix_memalign((void **)&fz_buf, 4096, FZ_IO_SECTORS * FZ_SECTOR))
		fz_die("out of memory");

	/* An L2 entry gone wild must not fill the tmpfs (image.h). */
	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &rl))
		fz_die("setrlimit");
	/*
	 * The engines explain every refusal on stderr; the oracle's own
	 * messages go to fd 2 directly, like libFuzzer's.
	 */
	fz_verbose = getenv("IMGBLK_FUZZ_VERBOSE");
	if (!fz_verbose) {
		FILE *null = fopen("/dev/null", "w");

		if (null)
			stderr = stdout = null;
	}
	return 0;
}

static uint16_t fz_le16(const uint8_t *p)
{
	return p[0] | p[1] << 8;
}

/* The content @owner wrote to @sector: both are in its first word. */
static void fz_pattern(void *buf, uint32_t owner, uint64_t sector)
{
	uint64_t *w = buf, x = (uint64_t)owner << 32 | (uint32_t)sector;
	unsigned int i;

	w[0] = x;
	for (i = 1; i < FZ_SECTOR / 8; i++) {
		x = x * 6364136223846793005ULL + 1442695040888963407ULL;
		w[i] = x;
	}
}

static bool fz_is_pattern(const uint8_t *data, uint32_t owner, uint64_t sector)
{
	uint64_t want[FZ_SECTOR / 8];

	fz_pattern(want, owner, sector);
	return !memcmp(data, want, FZ_SECTOR);
}

/* The owner of backing sector @s as the top image reads it (0: zeros). */
static uint32_t fz_back_owner(const struct fz_run *r, uint64_t s)
{
	if (!r->has_backing || s >= r->base_bytes / FZ_SECTOR)
		return 0;
	return r->base[s];
}

/* Which of @e's allowed contents is the owner @v's (0: zeros). */
static uint8_t fz_match_owner(const struct fz_run *r, const struct fz_sect *e,
			      uint64_t s, uint32_t v)
{
	uint8_t m = 0;

	if ((e->ok & FZ_OWN) && e->owner == v)
		m |= FZ_OWN;
	if ((e->ok & FZ_ZERO) && !v)
		m |= FZ_ZERO;
	if ((e->ok & FZ_BACK) && fz_back_owner(r, s) == v)
		m |= FZ_BACK;
	if ((e->ok & FZ_COPY) && e->copy == v)
		m |= FZ_COPY;
	return m;
}

/* What the sector @data holds: its owner, 0 for zeros, -1 for neither. */
static int64_t fz_owner_of(const uint8_t *data, uint64_t s)
{
	uint64_t w0;

	if (!memcmp(data, fz_zeros, FZ_SECTOR))
		return 0;
	memcpy(&w0, data, 8);
	if (!fz_is_pattern(data, w0 >> 32, s))
		return -1;
	return w0 >> 32;
}

static void fz_describe(char *out, size_t len, const struct fz_run *r,
			const struct fz_sect *e, uint64_t s)
{
	snprintf(out, len, "%s%s%s%s(owner %u, backing owner %u, copied %u)",
		 e->ok & FZ_OWN ? "own " : "", e->ok & FZ_ZERO ? "zeros " : "",
		 e->ok & FZ_BACK ? "backing " : "", e->ok & FZ_COPY ? "copy " : "",
		 e->owner, fz_back_owner(r, s), e->copy);
}

__attribute__((noreturn, format(printf, 2, 3)))
static void fz_fail(const struct fz_run *r, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dprintf(STDERR_FILENO, "fuzz_ops: %s %s, op %u (%s): %s\n", r->fmt,
		r->has_backing ? "with a backing file" : "alone", r->op,
		r->op < r->nr_ops ? fz_kind_names[fz_kinds[r->ops[r->op * FZ_OP_BYTES] % 16]] :
		r->op == FZ_SETUP ? "setup" : "final pass", msg);
	abort();
}

static void fz_trace(const struct fz_run *r, const char *fmt, ...)
{
	va_list ap;

	if (!fz_verbose)
		return;
	va_start(ap, fmt);
	dprintf(STDERR_FILENO, "fuzz_ops: op %u: ", r->op);
	vdprintf(STDERR_FILENO, fmt, ap);
	dprintf(STDERR_FILENO, " (size %llu)\n", (unsigned long long)r->size_bytes);
	va_end(ap);
}

/*
 * Reads @n sectors at sector @s through @t (the open image) and compares
 * each with the model, narrowing it to what was read.
 */
static void fz_read_check(struct fz_run *r, uint64_t s, unsigned int n)
{
	unsigned int i;
	int ret;

	ret = r->t.ops->read(&r->t, fz_buf, n * FZ_SECTOR, s * FZ_SECTOR);
	if (ret != (int)(n * FZ_SECTOR))
		fz_fail(r, "read of %u sectors at %llu: %d", n, (unsigned long long)s, ret);
	for (i = 0; i < n; i++) {
		struct fz_sect *e = &r->sect[s + i];
		const uint8_t *d = fz_buf + i * FZ_SECTOR;
		int64_t v = fz_owner_of(d, s + i);
		char want[128];
		uint8_t m;

		m = v < 0 ? 0 : fz_match_owner(r, e, s + i, v);
		if (m) {
			e->ok = m;
			continue;
		}
		fz_describe(want, sizeof(want), r, e, s + i);
		if (v < 0) {
			uint64_t w0;

			memcpy(&w0, d, 8);
			fz_fail(r, "sector %llu reads garbage (first word %#llx), expected %s",
				(unsigned long long)(s + i), (unsigned long long)w0, want);
		}
		if (!v)
			fz_fail(r, "sector %llu reads zeros, expected %s",
				(unsigned long long)(s + i), want);
		fz_fail(r, "sector %llu reads the data of owner %u, expected %s",
			(unsigned long long)(s + i), (unsigned int)v, want);
	}
}

static void fz_read_all(struct fz_run *r)
{
	uint64_t s, end = r->size_bytes / FZ_SECTOR;

	for (s = 0; s < end; s += FZ_IO_SECTORS)
		fz_read_check(r, s, end - s < FZ_IO_SECTORS ? end - s : FZ_IO_SECTORS);
}

static void fz_open(struct fz_run *r, unsigned int flags)
{
	int ret;

	memset(&r->t, 0, sizeof(r->t));
	r->t.cfg.backing_policy = TGT_BACKING_SAME_DIR;
	if (r->small_cache)
		r->t.cfg.l2_cache_bytes = 1;
	ret = tgt_open_file(&r->t, fz_img, r->fmt, TGT_O_BUFFERED | flags);
	if (ret)
		fz_fail(r, "open: %d", ret);
	/* Offsets and lengths below are in 512-byte sectors. */
	if (r->t.caps.logical_bs_shift != 9)
		fz_fail(r, "logical block size 2^%u", r->t.caps.logical_bs_shift);
	if (r->t.caps.size_bytes != r->size_bytes)
		fz_fail(r, "the image opens with %llu bytes, not %llu",
			(unsigned long long)r->t.caps.size_bytes,
			(unsigned long long)r->size_bytes);
}

static void fz_close(struct fz_run *r)
{
	int ret = tgt_close(&r->t);

	if (ret)
		fz_fail(r, "close: %d", ret);
}

/*
 * Closes the image and opens it for ->check, as `imgblk check` does (no
 * repair at open), leaving it open read-only.  After a clean close
 * nothing may be wrong, a leak included: every path that frees clusters
 * runs to its end without a crash.
 */
static void fz_close_check(struct fz_run *r)
{
	struct tgt_check_result res = { 0 };
	int ret;

	fz_close(r);
	fz_open(r, TGT_O_CHECK | TGT_O_RDONLY);
	ret = r->t.ops->check(&r->t, 0, &res);
	if (ret || res.corruptions || res.check_errors || res.leaks)
		fz_fail(r, "check: %d, %llu corruptions, %llu leaks, %llu check errors", ret,
			(unsigned long long)res.corruptions, (unsigned long long)res.leaks,
			(unsigned long long)res.check_errors);
}

/* A clean close, a check, an open: what every metadata verb ends with. */
static void fz_reopen(struct fz_run *r)
{
	fz_close_check(r);
	fz_close(r);
	fz_open(r, 0);
}

/*
 * A write to [@s, @s + @n) may allocate the (sub)clusters around it and
 * copy into them what the backing file holds there now (COW): from then
 * on those sectors keep that content whatever happens to the backing
 * file (commit, rebase -u).  So "the backing file" becomes "what it
 * holds now" around every write, beyond the guest's end too.
 */
static void fz_freeze(struct fz_run *r, uint64_t s, unsigned int n)
{
	uint64_t i = s / r->cow_sectors * r->cow_sectors;
	uint64_t end = (s + n + r->cow_sectors - 1) / r->cow_sectors * r->cow_sectors;

	for (; i < end && i < FZ_MAX_SECTORS; i++) {
		struct fz_sect *e = &r->sect[i];
		uint32_t v;

		if (!(e->ok & FZ_BACK))
			continue;
		v = fz_back_owner(r, i);
		e->ok &= ~FZ_BACK;
		if (!v) {
			e->ok |= FZ_ZERO;
		} else {
			e->ok |= FZ_COPY;
			e->copy = v;
		}
	}
}

static void fz_write(struct fz_run *r, uint64_t s, unsigned int n, unsigned int flags)
{
	uint32_t owner = r->op + 1;
	unsigned int i;
	int ret;

	for (i = 0; i < n; i++)
		fz_pattern(fz_buf + i * FZ_SECTOR, owner, s + i);
	ret = r->t.ops->write(&r->t, fz_buf, n * FZ_SECTOR, s * FZ_SECTOR, flags);
	if (ret != (int)(n * FZ_SECTOR))
		fz_fail(r, "write of %u sectors at %llu: %d", n, (unsigned long long)s, ret);
	fz_freeze(r, s, n);
	for (i = 0; i < n; i++)
		r->sect[s + i] = (struct fz_sect){ .owner = owner, .ok = FZ_OWN };
}

/*
 * ->block_status of [@s, @s + @n) must agree with the model: a zero run
 * reads zeros, an unallocated one the backing file.
 */
static void fz_status(struct fz_run *r, uint64_t s, unsigned int n)
{
	uint64_t off = s * FZ_SECTOR, end = off + (uint64_t)n * FZ_SECTOR;

	while (off < end) {
		struct tgt_extent ext;
		int64_t len = r->t.ops->block_status(&r->t, off, end - off, &ext);
		uint64_t i;

		if (len <= 0 || len % FZ_SECTOR || (uint64_t)len > end - off)
			fz_fail(r, "block status at %llu: %lld", (unsigned long long)off,
				(long long)len);
		for (i = off / FZ_SECTOR; i < (off + len) / FZ_SECTOR; i++) {
			struct fz_sect *e = &r->sect[i];
			uint32_t v;
			char want[128];
			uint8_t m;

			if (ext.flags & TGT_EXT_ZERO)
				v = 0;
			else if (!(ext.flags & TGT_EXT_ALLOCATED))
				v = fz_back_owner(r, i);
			else
				continue;
			m = fz_match_owner(r, e, i, v);
			if (!m) {
				fz_describe(want, sizeof(want), r, e, i);
				fz_fail(r, "block status says sector %llu reads %s, expected %s",
					(unsigned long long)i,
					ext.flags & TGT_EXT_ZERO ? "zeros" : "the backing file",
					want);
			}
			e->ok = m;
		}
		off += len;
	}
}

/*
 * Resize to @size: on success the model follows the engine's rules
 * (targets/qcow2/README.md, "Resize"): whole clusters past a new end
 * are dropped and read the backing file again if the guest grows back,
 * while the cluster holding the new end keeps what it had, as in QEMU.
 * A grown range reads zeros when the backing file reaches past the old
 * end (it would show through: the engine hides it, as QEMU does, or
 * refuses the grow), else what it read before, zeros or the backing file.
 * Hiding writes zeros over the rest of the old end's (sub)cluster, which
 * copies the backing file's data below the old end into it.  The same
 * size again grows nothing and so copies nothing.
 */
static void fz_resize(struct fz_run *r, uint64_t size, unsigned int flags)
{
	uint64_t old = r->size_bytes, s;
	int ret;

	ret = r->t.ops->resize(&r->t, size, flags);
	if (ret) {
		if (r->t.caps.size_bytes != old)
			fz_fail(r, "a failed resize (%d) changed the size", ret);
		return;
	}
	if (r->t.caps.size_bytes != size)
		fz_fail(r, "resize to %llu gives %llu", (unsigned long long)size,
			(unsigned long long)r->t.caps.size_bytes);
	if (size < old) {
		uint64_t keep = (size + r->cluster_bytes - 1) / r->cluster_bytes * r->cluster_bytes;

		for (s = size / FZ_SECTOR; s < old / FZ_SECTOR; s++)
			r->sect[s].ok = s * FZ_SECTOR < keep ? r->sect[s].ok | FZ_ZERO | FZ_BACK :
							       FZ_BACK;
	} else if (size > old) {
		bool hide = r->has_backing && r->base_bytes > old;

		if (hide && old / FZ_SECTOR % r->cow_sectors)
			fz_freeze(r, old / FZ_SECTOR, 1);
		for (s = old / FZ_SECTOR; s < size / FZ_SECTOR; s++)
			r->sect[s].ok = hide ? FZ_ZERO : r->sect[s].ok | FZ_ZERO | FZ_BACK;
	}
	r->size_bytes = size;
}

static void fz_snapshot(struct fz_run *r, enum tgt_snapshot_op op, unsigned int pick)
{
	struct fz_snap *sn;
	unsigned int i;
	int ret;

	if (op == TGT_SNAPSHOT_CREATE) {
		if (r->nr_snaps == FZ_MAX_SNAPS)
			return;
		sn = &r->snaps[r->nr_snaps];
		snprintf(sn->name, sizeof(sn->name), "s%u", r->op);
	} else {
		if (!r->nr_snaps)
			return;
		sn = &r->snaps[pick % r->nr_snaps];
	}
	ret = r->t.ops->snapshot(&r->t, op, sn->name);
	fz_trace(r, "snapshot %d %s: %d", op, sn->name, ret);
	if (ret) {
		if (op == TGT_SNAPSHOT_APPLY && r->t.caps.size_bytes != r->size_bytes)
			fz_fail(r, "a failed apply (%d) changed the size", ret);
		return;
	}
	switch (op) {
	case TGT_SNAPSHOT_CREATE:
		sn->size_bytes = r->size_bytes;
		memcpy(sn->sect, r->sect, FZ_MAX_SECTORS * sizeof(*r->sect));
		r->nr_snaps++;
		break;
	case TGT_SNAPSHOT_APPLY:
		r->size_bytes = sn->size_bytes;
		memcpy(r->sect, sn->sect, FZ_MAX_SECTORS * sizeof(*r->sect));
		if (r->t.caps.size_bytes != r->size_bytes)
			fz_fail(r, "apply of %s gives %llu bytes, not %llu", sn->name,
				(unsigned long long)r->t.caps.size_bytes,
				(unsigned long long)r->size_bytes);
		break;
	case TGT_SNAPSHOT_DELETE: {
		struct fz_sect *mem = sn->sect;

		i = sn - r->snaps;
		memmove(sn, sn + 1, (r->nr_snaps - i - 1) * sizeof(*sn));
		r->nr_snaps--;
		r->snaps[r->nr_snaps].sect = mem;
		break;
	}
	}
}

static void fz_amend(struct fz_run *r, uint8_t a, uint8_t b)
{
	static const char *const opts[] = {
		"lazy_refcounts=on", "lazy_refcounts=off", "compat=0.10", "compat=1.1",
	};
	char opt[32], *optv = opt;
	int ret;

	if (a % 5 < 4)
		snprintf(opt, sizeof(opt), "%s", opts[a % 5]);
	else
		snprintf(opt, sizeof(opt), "refcount_bits=%u", 1U << (b % 7));
	ret = r->t.ops->amend(&r->t, &optv, 1);
	fz_trace(r, "amend %s: %d", opt, ret);
	if (!ret)
		fz_reopen(r);
}

/*
 * Copies what the top image allocates into the backing file and empties
 * the top, as `imgblk commit` does (ublksrv/cmd_commit.c), through the
 * ops: the top must read the same before and after.
 */
static void fz_commit(struct fz_run *r)
{
	struct tgt base = { 0 };
	uint64_t off = 0, s;
	int ret;

	if (!r->has_backing || !r->t.ops->make_empty)
		return;
	/* The chain's handle must let the writer in, as in cmd_commit.c. */
	ret = tgt_set_role(r->t.backing, TGT_ROLE_WRITTEN_BASE);
	if (!ret)
		ret = tgt_open_file(&base, fz_base, r->base_fmt, TGT_O_BUFFERED);
	if (ret)
		fz_fail(r, "open of the backing file for commit: %d", ret);
	if (base.caps.size_bytes < r->size_bytes) {
		ret = base.ops->resize ? base.ops->resize(&base, r->size_bytes, 0) : -ENOTSUP;
		if (ret) {
			tgt_close(&base);
			if (tgt_set_role(r->t.backing, TGT_ROLE_BACKING))
				fz_fail(r, "the backing file's locks after a refused resize");
			return;
		}
		/* The backing file's new sectors read zeros: fz_base_mem is 0 past its end. */
		r->base_bytes = r->size_bytes;
	}
	while (off < r->size_bytes) {
		struct tgt_extent ext;
		int64_t len = r->t.ops->block_status(&r->t, off, r->size_bytes - off, &ext);
		uint64_t s0 = off / FZ_SECTOR, n = len / FZ_SECTOR, i;

		if (len <= 0 || len % FZ_SECTOR)
			fz_fail(r, "block status at %llu: %lld", (unsigned long long)off,
				(long long)len);
		off += len;
		if (!(ext.flags & TGT_EXT_ALLOCATED))
			continue;
		for (i = 0; i < n; i += FZ_IO_SECTORS) {
			unsigned int k = n - i < FZ_IO_SECTORS ? n - i : FZ_IO_SECTORS, j;

			fz_read_check(r, s0 + i, k);
			if ((ext.flags & TGT_EXT_ZERO) && base.caps.can_write_zeroes)
				ret = base.ops->write_zeroes(&base, (s0 + i) * FZ_SECTOR,
							     k * FZ_SECTOR, 0);
			else
				ret = base.ops->write(&base, fz_buf, k * FZ_SECTOR,
						      (s0 + i) * FZ_SECTOR, 0) == (int)(k * FZ_SECTOR) ?
				      0 : -EIO;
			if (ret)
				fz_fail(r, "commit write at sector %llu: %d",
					(unsigned long long)(s0 + i), ret);
			for (j = 0; j < k; j++)
				r->base[s0 + i + j] = fz_owner_of(fz_buf + j * FZ_SECTOR, s0 + i + j);
		}
	}
	ret = base.ops->flush ? base.ops->flush(&base) : 0;
	if (ret)
		fz_fail(r, "flush of the backing file: %d", ret);
	ret = tgt_close(&base);
	if (!ret)
		ret = tgt_set_role(r->t.backing, TGT_ROLE_BACKING);
	if (ret)
		fz_fail(r, "close of the backing file: %d", ret);
	ret = r->t.ops->make_empty(&r->t);
	if (ret)
		fz_fail(r, "make_empty: %d", ret);
	for (s = 0; s < FZ_MAX_SECTORS; s++)
		r->sect[s].ok = FZ_BACK;
	fz_reopen(r);
}

/*
 * Drops the backing file: @safe first copies into the top image what it
 * reads from there (rebase), else the top reads zeros there (rebase -u).
 */
static void fz_rebase(struct fz_run *r, bool safe)
{
	uint64_t off = 0, s;
	unsigned int i;
	int ret;

	if (!r->has_backing || !r->t.ops->set_backing)
		return;
	while (safe && off < r->size_bytes) {
		struct tgt_extent ext;
		int64_t len = r->t.ops->block_status(&r->t, off, r->size_bytes - off, &ext);
		uint64_t s0 = off / FZ_SECTOR, n = len / FZ_SECTOR, k;

		if (len <= 0 || len % FZ_SECTOR)
			fz_fail(r, "block status at %llu: %lld", (unsigned long long)off,
				(long long)len);
		off += len;
		if (ext.flags & TGT_EXT_ALLOCATED)
			continue;
		for (k = 0; k < n; k += FZ_IO_SECTORS) {
			unsigned int c = n - k < FZ_IO_SECTORS ? n - k : FZ_IO_SECTORS;

			fz_read_check(r, s0 + k, c);
			ret = r->t.ops->write(&r->t, fz_buf, c * FZ_SECTOR, (s0 + k) * FZ_SECTOR, 0);
			if (ret != (int)(c * FZ_SECTOR))
				fz_fail(r, "rebase copy at sector %llu: %d",
					(unsigned long long)(s0 + k), ret);
			fz_freeze(r, s0 + k, c);
			for (i = 0; i < c; i++) {
				uint32_t v = fz_owner_of(fz_buf + i * FZ_SECTOR, s0 + k + i);

				r->sect[s0 + k + i] = (struct fz_sect){ .owner = v,
									.ok = v ? FZ_OWN : FZ_ZERO };
			}
		}
	}
	ret = r->t.ops->flush ? r->t.ops->flush(&r->t) : 0;
	if (ret)
		fz_fail(r, "flush before rebase: %d", ret);
	ret = r->t.ops->set_backing(&r->t, NULL, NULL);
	fz_trace(r, "rebase %s: %d", safe ? "safe" : "unsafe", ret);
	if (ret)
		return;
	r->has_backing = false;
	/* Whatever read the backing file now reads zeros, in snapshots too. */
	for (s = 0; s < FZ_MAX_SECTORS; s++) {
		if (r->sect[s].ok & FZ_BACK)
			r->sect[s].ok = (r->sect[s].ok & ~FZ_BACK) | FZ_ZERO;
		for (i = 0; i < r->nr_snaps; i++)
			if (r->snaps[i].sect[s].ok & FZ_BACK)
				r->snaps[i].sect[s].ok = (r->snaps[i].sect[s].ok & ~FZ_BACK) | FZ_ZERO;
	}
	fz_reopen(r);
}

static void fz_op(struct fz_run *r, const uint8_t *c)
{
	const struct tgt_ops *ops = r->t.ops;
	enum fz_kind kind = fz_kinds[c[0] % 16];
	unsigned int fua = c[0] & 0x80 ? TGT_W_FUA : 0;
	uint64_t sectors = r->size_bytes / FZ_SECTOR, s = 0, size;
	unsigned int n = 0, i;
	int ret;

	if (sectors) {
		s = fz_le16(c + 1) % sectors;
		n = c[3] + 1;
		if (n > sectors - s)
			n = sectors - s;
	}
	fz_trace(r, "%s sector %llu, %u sectors%s", fz_kind_names[kind],
		 (unsigned long long)s, n, fua ? ", FUA" : "");
	switch (kind) {
	case FZ_READ:
		if (n)
			fz_read_check(r, s, n);
		break;
	case FZ_WRITE:
		if (n)
			fz_write(r, s, n, fua && r->t.caps.can_fua ? TGT_W_FUA : 0);
		break;
	case FZ_ZEROES:
		if (!n || !r->t.caps.can_write_zeroes)
			break;
		ret = ops->write_zeroes(&r->t, s * FZ_SECTOR, n * FZ_SECTOR,
					fua && r->t.caps.can_fua ? TGT_W_FUA : 0);
		if (ret)
			fz_fail(r, "write_zeroes of %u sectors at %llu: %d", n,
				(unsigned long long)s, ret);
		/* Partial clusters are written zeros: an allocating write. */
		fz_freeze(r, s, n);
		for (i = 0; i < n; i++)
			r->sect[s + i] = (struct fz_sect){ .ok = FZ_ZERO };
		break;
	case FZ_DISCARD:
		if (!n || !r->t.caps.can_discard)
			break;
		ret = ops->discard(&r->t, s * FZ_SECTOR, n * FZ_SECTOR);
		if (ret)
			fz_fail(r, "discard of %u sectors at %llu: %d", n,
				(unsigned long long)s, ret);
		for (i = 0; i < n; i++)
			r->sect[s + i].ok |= FZ_ZERO | FZ_BACK;
		break;
	case FZ_FLUSH:
		ret = ops->flush && r->t.caps.can_flush ? ops->flush(&r->t) : 0;
		if (ret)
			fz_fail(r, "flush: %d", ret);
		break;
	case FZ_STATUS:
		if (n && ops->block_status)
			fz_status(r, s, n);
		break;
	case FZ_RESIZE:
		if (!ops->resize)
			break;
		/* c[3] bit 0: shrink; bit 1: even over data. */
		size = (uint64_t)(fz_le16(c + 1) % 2048 + 1) * FZ_SECTOR;
		if (c[3] & 1)
			size = size < r->size_bytes ? r->size_bytes - size : FZ_SECTOR;
		else
			size += r->size_bytes;
		if (size > FZ_MAX_BYTES)
			size = FZ_MAX_BYTES;
		fz_resize(r, size, c[3] & 2 ? TGT_RESIZE_SHRINK : 0);
		break;
	case FZ_SNAP_CREATE:
	case FZ_SNAP_APPLY:
	case FZ_SNAP_DELETE:
		if (ops->snapshot)
			fz_snapshot(r, kind == FZ_SNAP_CREATE ? TGT_SNAPSHOT_CREATE :
				       kind == FZ_SNAP_APPLY ? TGT_SNAPSHOT_APPLY :
				       TGT_SNAPSHOT_DELETE, c[1]);
		break;
	case FZ_REOPEN:
		r->small_cache = c[1] & 1;
		fz_reopen(r);
		break;
	case FZ_AMEND:
		if (ops->amend)
			fz_amend(r, c[1], c[2]);
		break;
	case FZ_COMMIT:
		fz_commit(r);
		break;
	case FZ_REBASE:
		fz_rebase(r, c[1] & 1);
		break;
	}
}

/* Creates the backing file, every sector holding FZ_BASE_OWNER's pattern. */
static void fz_make_base(struct fz_run *r, const struct tgt_create_opts *top)
{
	uint64_t s, n = r->base_bytes / FZ_SECTOR;
	struct tgt_create_opts o = *top;
	struct tgt b = { 0 };
	int ret;

	for (s = 0; s < n; s++)
		r->base[s] = FZ_BASE_OWNER;
	if (!strcmp(r->base_fmt, "raw")) {
		int fd = open(fz_base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		if (fd < 0)
			fz_die(fz_base);
		for (s = 0; s < n; s++) {
			fz_pattern(fz_buf, FZ_BASE_OWNER, s);
			if (pwrite(fd, fz_buf, FZ_SECTOR, s * FZ_SECTOR) != FZ_SECTOR)
				fz_die(fz_base);
		}
		close(fd);
		return;
	}
	o.file = fz_base;
	o.size_bytes = r->base_bytes;
	o.backing_file = NULL;
	o.backing_fmt = NULL;
	ret = tgt_find(r->base_fmt)->create(&o);
	if (!ret)
		ret = tgt_open_file(&b, fz_base, r->base_fmt, TGT_O_BUFFERED);
	if (ret)
		fz_fail(r, "create of the backing file: %d", ret);
	for (s = 0; s < n && !ret; s += FZ_IO_SECTORS) {
		unsigned int k = n - s < FZ_IO_SECTORS ? n - s : FZ_IO_SECTORS, i;

		for (i = 0; i < k; i++)
			fz_pattern(fz_buf + i * FZ_SECTOR, FZ_BASE_OWNER, s + i);
		ret = b.ops->write(&b, fz_buf, k * FZ_SECTOR, s * FZ_SECTOR, 0);
		ret = ret == (int)(k * FZ_SECTOR) ? 0 : ret;
	}
	if (tgt_close(&b) || ret)
		fz_fail(r, "filling the backing file: %d", ret);
}

/* Decodes the parameters and creates the image (and its backing file). */
static void fz_create(struct fz_run *r, const uint8_t *p)
{
	char opt[5][32], *optv[5];
	struct tgt_create_opts o = { 0 };
	unsigned int nr = 0, cbits = (p[0] >> 1) & 7, i;
	bool qcow2 = !(p[0] & 1), v2 = p[0] & 0x10, lazy = p[0] & 0x20, extl2 = p[0] & 0x40;
	unsigned int rc_order = (p[1] & 7) % 7;
	int ret;

	r->fmt = qcow2 ? "qcow2" : "qed";
	r->small_cache = p[1] & 0x10;
	r->has_backing = p[0] & 0x80;
	r->base_fmt = p[1] & 8 ? r->fmt : "raw";
	r->size_bytes = (uint64_t)(((p[1] >> 5) & 7) + 1) * (128U << 10) +
			(p[2] >> 4) * FZ_SECTOR;
	/* The backing file: 3/4, 1, 5/4 or 1/2 of the guest. */
	r->base_bytes = r->size_bytes / 4 * ((unsigned int[]){ 3, 4, 5, 2 })[p[2] & 3];
	r->base_bytes -= r->base_bytes % FZ_SECTOR;

	if (qcow2) {
		/* 512 B to 64 KiB; extended L2 needs 32 subclusters of 512 B. */
		if (extl2 && cbits < 5)
			cbits = 5;
		/* v2 has none of these. */
		if (v2)
			lazy = extl2 = false, rc_order = 4;
		r->cluster_bytes = 512U << cbits;
		r->cow_sectors = r->cluster_bytes / FZ_SECTOR / (extl2 ? 32 : 1);
		snprintf(opt[nr++], sizeof(opt[0]), "cluster_size=%u", r->cluster_bytes);
		snprintf(opt[nr++], sizeof(opt[0]), "compat=%s", v2 ? "0.10" : "1.1");
		snprintf(opt[nr++], sizeof(opt[0]), "refcount_bits=%u", 1U << rc_order);
		snprintf(opt[nr++], sizeof(opt[0]), "lazy_refcounts=%s", lazy ? "on" : "off");
		snprintf(opt[nr++], sizeof(opt[0]), "extended_l2=%s", extl2 ? "on" : "off");
	} else {
		r->cluster_bytes = 4096U << (cbits % 5);
		r->cow_sectors = r->cluster_bytes / FZ_SECTOR;
		snprintf(opt[nr++], sizeof(opt[0]), "cluster_size=%u", r->cluster_bytes);
		snprintf(opt[nr++], sizeof(opt[0]), "table_size=%u", 1U << ((p[2] >> 2) & 3));
	}
	for (i = 0; i < nr; i++)
		optv[i] = opt[i];
	o.options = optv;
	o.nr_options = nr;
	if (r->has_backing)
		fz_make_base(r, &o);
	o.file = fz_img;
	o.size_bytes = r->size_bytes;
	if (r->has_backing) {
		o.backing_file = "base";
		o.backing_fmt = r->base_fmt;
	}
	ret = tgt_find(r->fmt)->create(&o);
	if (ret)
		fz_fail(r, "create with %s %s %s: %d", opt[0], opt[1], nr > 2 ? opt[2] : "", ret);
}

static int fz_body(void *arg)
{
	struct fz_run *r = arg;

	r->op = FZ_SETUP;
	fz_create(r, r->ops - FZ_PARAM_BYTES);
	fz_open(r, 0);
	for (r->op = 0; r->op < r->nr_ops; r->op++)
		fz_op(r, r->ops + r->op * FZ_OP_BYTES);
	/* Everything must check clean and read back after a close. */
	fz_close_check(r);
	fz_read_all(r);
	fz_close(r);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz_run r;
	unsigned int i;
	uint64_t s;

	if (size < FZ_PARAM_BYTES)
		return 0;
	memset(&r, 0, sizeof(r));
	r.sect = fz_sect_mem;
	r.base = fz_base_mem;
	for (i = 0; i < FZ_MAX_SNAPS; i++)
		r.snaps[i].sect = fz_snap_mem + (size_t)i * FZ_MAX_SECTORS;
	/* Every sector starts unallocated: the backing file, or zeros. */
	for (s = 0; s < FZ_MAX_SECTORS; s++)
		r.sect[s] = (struct fz_sect){ .ok = FZ_BACK };
	memset(r.base, 0, FZ_MAX_SECTORS * sizeof(*r.base));
	r.ops = data + FZ_PARAM_BYTES;
	r.nr_ops = (size - FZ_PARAM_BYTES) / FZ_OP_BYTES;
	if (r.nr_ops > FZ_MAX_OPS)
		r.nr_ops = FZ_MAX_OPS;
	unlink(fz_base);
	if (exec_run_sync(fz_body, &r) < 0)
		fz_die("exec_run_sync");
	return 0;
}
