/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The body shared by the image fuzz targets (fuzz_qcow2.c, fuzz_qed.c):
 * each defines FUZZ_FORMAT and includes this file.  docs/fuzzing.md.
 *
 * An input is an image followed by a tail of I/O commands:
 *
 *   [image bytes][cmd 0]...[cmd N-1][mode][N]
 *
 * Each command is 8 bytes: op (low bits; bit 7 asks for FUA), the offset
 * in 512-byte sectors (le32, modulo the device size), the length in
 * sectors - 1 (le16, modulo 256) and a fill byte for writes.  mode picks
 * the open flags, a tiny L2 cache and what the final check repairs.
 *
 * One run: the image is written to a file in a private directory, opened
 * with tgt_open_file(TGT_O_BUFFERED) (O_DIRECT does not work on tmpfs),
 * the commands run, it is closed, then opened again for ->check like
 * `imgblk check [-r]` and closed.  Everything runs in one coroutine
 * (exec_run_sync), as the verbs do.
 *
 * Backing files: the directory holds only the image and a fixed raw file
 * made here, backing.raw, and the backing policy (which covers a qcow2
 * data file too) is same-dir, so the only other file an image can name
 * and get opened is backing.raw.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "exec.h"
#include "tgt.h"

#define FUZZ_CMD_BYTES		8
#define FUZZ_MAX_IO_BYTES	(256U * 512)
#define FUZZ_BACKING_BYTES	(1U << 20)
/*
 * No file may grow past this: an L2 entry pointing 1 TiB out is written
 * in place (docs/hostile-images.md), and a repair then walks the whole
 * file.  Past the limit a write fails with EFBIG (SIGXFSZ is ignored).
 */
#define FUZZ_FILE_LIMIT_BYTES	(64ULL << 20)

enum fuzz_op {
	FUZZ_READ,
	FUZZ_WRITE,
	FUZZ_ZEROES,
	FUZZ_DISCARD,
	FUZZ_FLUSH,
	FUZZ_STATUS,
	FUZZ_NR_OPS,
};

/* mode bits */
#define FUZZ_M_RDONLY		(1U << 0)
#define FUZZ_M_SMALL_CACHE	(1U << 1)	/* one L2 table cached: eviction */
#define FUZZ_M_FIX_SHIFT	2		/* 2 bits: 1 leaks, 2 all, else none */
#define FUZZ_M_NO_CLOSE_CHECK	(1U << 4)	/* skip the ->check pass */

struct fuzz_run {
	const uint8_t *img;
	size_t img_bytes;
	const uint8_t *cmds;
	unsigned int nr_cmds;
	unsigned int mode;
};

static char fuzz_dir[PATH_MAX];
static char fuzz_img[PATH_MAX];
static char fuzz_backing[PATH_MAX];
static void *fuzz_buf;

static void fuzz_cleanup(void)
{
	unlink(fuzz_img);
	unlink(fuzz_backing);
	rmdir(fuzz_dir);
}

static void fuzz_die(const char *what)
{
	fprintf(stderr, "fuzz: %s: %s\n", what, strerror(errno));
	exit(1);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *tmp = getenv("IMGBLK_FUZZ_TMPDIR");
	struct rlimit rl = { FUZZ_FILE_LIMIT_BYTES, FUZZ_FILE_LIMIT_BYTES };
	unsigned int i;
	int fd;

	(void)argc;
	(void)argv;
	if (!tmp)
		tmp = access("/dev/shm", W_OK) ? "/tmp" : "/dev/shm";
	snprintf(fuzz_dir, sizeof(fuzz_dir), "%s/imgblk-fuzz.XXXXXX", tmp);
	if (!mkdtemp(fuzz_dir))
		fuzz_die(fuzz_dir);
	snprintf(fuzz_img, sizeof(fuzz_img), "%s/img", fuzz_dir);
	snprintf(fuzz_backing, sizeof(fuzz_backing), "%s/backing.raw", fuzz_dir);
	atexit(fuzz_cleanup);

	if (posix_memalign(&fuzz_buf, 4096, FUZZ_MAX_IO_BYTES))
		fuzz_die("posix_memalign");
	/* backing.raw: each 512-byte sector filled with its number's low byte. */
	fd = open(fuzz_backing, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fuzz_die(fuzz_backing);
	for (i = 0; i < FUZZ_BACKING_BYTES / FUZZ_MAX_IO_BYTES; i++) {
		unsigned int s;

		for (s = 0; s < FUZZ_MAX_IO_BYTES / 512; s++)
			memset((char *)fuzz_buf + s * 512, s + i, 512);
		if (write(fd, fuzz_buf, FUZZ_MAX_IO_BYTES) != FUZZ_MAX_IO_BYTES)
			fuzz_die(fuzz_backing);
	}
	close(fd);

	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &rl))
		fuzz_die("setrlimit");
	/*
	 * The engines report every malformed image on stderr: keep the
	 * stdio streams quiet unless asked.  libFuzzer and the sanitizers
	 * keep their own handle on fd 2, so crash reports still show.
	 */
	if (!getenv("IMGBLK_FUZZ_VERBOSE")) {
		FILE *null = fopen("/dev/null", "w");

		if (null)
			stderr = stdout = null;
	}
	return 0;
}

static uint32_t fuzz_le32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Runs one decoded command on the open image; errors are answers too. */
static void fuzz_cmd(struct tgt *t, const uint8_t *c)
{
	const struct tgt_ops *ops = t->ops;
	unsigned int op = (c[0] & 0x7f) % FUZZ_NR_OPS;
	unsigned int flags = (c[0] & 0x80) && t->caps.can_fua ? TGT_W_FUA : 0;
	uint64_t unit = 1ULL << t->caps.logical_bs_shift;
	uint64_t units = t->caps.size_bytes >> t->caps.logical_bs_shift;
	uint64_t off, len;
	struct tgt_extent ext;

	if (op == FUZZ_FLUSH) {
		if (ops->flush && t->caps.can_flush)
			ops->flush(t);
		return;
	}
	if (!units)
		return;
	off = fuzz_le32(c + 1) % units * unit;
	len = ((uint64_t)((c[5] | c[6] << 8) % 256) + 1) * 512;
	len = (len + unit - 1) / unit * unit;
	if (len > FUZZ_MAX_IO_BYTES)
		len = FUZZ_MAX_IO_BYTES;
	if (len > t->caps.size_bytes - off)
		len = t->caps.size_bytes - off;

	switch (op) {
	case FUZZ_READ:
		ops->read(t, fuzz_buf, len, off);
		break;
	case FUZZ_WRITE:
		if (t->caps.read_only || !ops->write)
			break;
		memset(fuzz_buf, c[7], len);
		ops->write(t, fuzz_buf, len, off, flags);
		break;
	case FUZZ_ZEROES:
		if (t->caps.can_write_zeroes && ops->write_zeroes)
			ops->write_zeroes(t, off, len, flags);
		break;
	case FUZZ_DISCARD:
		if (t->caps.can_discard && ops->discard)
			ops->discard(t, off, len);
		break;
	case FUZZ_STATUS:
		if (ops->block_status)
			ops->block_status(t, off, len, &ext);
		break;
	}
}

static int fuzz_body(void *arg)
{
	const struct fuzz_run *r = arg;
	unsigned int fix, flags, i;
	struct tgt_check_result res;
	struct tgt t;

	/* The I/O pass, as a device would serve the image. */
	memset(&t, 0, sizeof(t));
	t.cfg.backing_policy = TGT_BACKING_SAME_DIR;
	if (r->mode & FUZZ_M_SMALL_CACHE)
		t.cfg.l2_cache_bytes = 1;
	flags = TGT_O_BUFFERED | (r->mode & FUZZ_M_RDONLY ? TGT_O_RDONLY : 0);
	if (tgt_open_file(&t, fuzz_img, FUZZ_FORMAT, flags) == 0) {
		for (i = 0; i < r->nr_cmds; i++)
			fuzz_cmd(&t, r->cmds + i * FUZZ_CMD_BYTES);
		tgt_close(&t);
	}
	if (r->mode & FUZZ_M_NO_CLOSE_CHECK)
		return 0;

	/* The check pass, as `imgblk check [-r leaks|all]` does it. */
	switch ((r->mode >> FUZZ_M_FIX_SHIFT) & 3) {
	case 1: fix = TGT_FIX_LEAKS; break;
	case 2: fix = TGT_FIX_LEAKS | TGT_FIX_ERRORS; break;
	default: fix = 0; break;
	}
	memset(&t, 0, sizeof(t));
	t.cfg.backing_policy = TGT_BACKING_SAME_DIR;
	flags = TGT_O_BUFFERED | TGT_O_CHECK | (fix ? 0 : TGT_O_RDONLY);
	if (tgt_open_file(&t, fuzz_img, FUZZ_FORMAT, flags))
		return 0;
	memset(&res, 0, sizeof(res));
	if (t.ops->check(&t, fix, &res) == 0 && fix &&
	    (res.leaks_fixed || res.corruptions_fixed)) {
		memset(&res, 0, sizeof(res));
		t.ops->check(&t, 0, &res);
	}
	tgt_close(&t);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_run r;
	size_t tail;
	int fd;

	if (size < 2)
		return 0;
	r.nr_cmds = data[size - 1];
	r.mode = data[size - 2];
	size -= 2;
	if ((size_t)r.nr_cmds * FUZZ_CMD_BYTES > size)
		r.nr_cmds = size / FUZZ_CMD_BYTES;
	tail = (size_t)r.nr_cmds * FUZZ_CMD_BYTES;
	r.img = data;
	r.img_bytes = size - tail;
	r.cmds = data + r.img_bytes;

	fd = open(fuzz_img, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		fuzz_die(fuzz_img);
	if (r.img_bytes && write(fd, r.img, r.img_bytes) != (ssize_t)r.img_bytes)
		fuzz_die(fuzz_img);
	close(fd);
	if (exec_run_sync(fuzz_body, &r) < 0)
		fuzz_die("exec_run_sync");
	return 0;
}
