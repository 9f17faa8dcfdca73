/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The protocol layer under the formats: the file a format engine reads and
 * writes, named as QEMU names it.  A local path is a file or block device
 * served by the executor's io_uring; `nbd://HOST[:PORT]/EXPORT`,
 * `nbd+unix:///EXPORT?socket=PATH` (over TLS: nbds://, nbds+unix://) and
 * QEMU's `json:{"driver":"nbd",...}` name an NBD export reached through
 * libnbd (lib/bfile_nbd.c).  Engines hold
 * a struct bfile * where they held a descriptor and call bfile_pread() and
 * friends where they called exec_pread(); for a local file those are the
 * same calls behind one predictable branch, so the local path costs what
 * it did.  See docs/protocols.md.
 */
#ifndef IMGBLK_BFILE_H
#define IMGBLK_BFILE_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "exec.h"
#include "util.h"

#define BFILE_RDONLY	(1U << 0)	/* never written */
#define BFILE_DIRECT	(1U << 1)	/* local: O_DIRECT */
/*
 * The name was given by the user (command line, control channel, state
 * file), not read from an image: it may make the protocol read local
 * files, as an NBD URI's tls-psk-file and tls-certificates do.  Without
 * it such a name is refused: a backing name in an untrusted image must
 * not turn the server into a reader of host files.
 */
#define BFILE_USER_NAME	(1U << 2)

/* Protocols, as bits for the --allow-protocol set. */
enum bfile_proto {
	BFILE_PROTO_FILE = 1U << 0,
	BFILE_PROTO_NBD = 1U << 1,
	BFILE_PROTO_RBD = 1U << 2,
};

#define BFILE_PROTO_ALL	(BFILE_PROTO_FILE | BFILE_PROTO_NBD | BFILE_PROTO_RBD)

struct bfile;

/*
 * A remote protocol's operations, called from a coroutine of the calling
 * thread's executor (or, for pread and size only, from a thread without
 * one: probing).  Each returns what the bfile_*() wrapper below says.
 * The local file has no ops table: its calls are inline.
 */
struct bfile_ops {
	const char *name;
	/* Required.  Reads [off, off + len); short only at the end. */
	ssize_t (*pread)(struct bfile *f, void *buf, size_t len, uint64_t off);
	/* Required.  RWF_DSYNC in @rw_flags asks for FUA. */
	ssize_t (*pwrite)(struct bfile *f, const void *buf, size_t len, uint64_t off,
			  int rw_flags);
	/* Required.  Makes every completed write durable. */
	int (*flush)(struct bfile *f);
	/*
	 * Required.  FALLOC_FL_ZERO_RANGE or FALLOC_FL_PUNCH_HOLE (both read
	 * back as zeros), or 0 (reserve: a no-op where space is not the
	 * file's to reserve); -EOPNOTSUPP when the server cannot.
	 */
	int (*fallocate)(struct bfile *f, int mode, uint64_t off, uint64_t len);
	/*
	 * Optional: a server-sized file (NBD) has none.  Sets the size
	 * (blocking: once per growth step, as ftruncate).  Returns 0 or -errno.
	 */
	int (*truncate)(struct bfile *f, uint64_t bytes);
	/* Optional.  Whether [off, off + *len) is a hole; trims *len. */
	int (*block_status)(struct bfile *f, uint64_t off, uint64_t *len, bool *hole);
	/* Required.  Releases everything. */
	void (*close)(struct bfile *f);
};

/* One open file.  Remote protocols embed it first in their own struct. */
struct bfile {
	int fd;				/* the local descriptor, -1 when remote */
	const struct bfile_ops *ops;	/* NULL when local */
	enum bfile_proto proto;
	unsigned int flags;		/* BFILE_* */
	uint64_t size_bytes;		/* remote: the export's size, fixed */
	/* Remote: what the server does (a local file does all of it). */
	bool can_flush, can_fua, can_trim, can_zero;
	char *name;			/* as opened, for messages */
};

/*
 * Which protocol @name uses: BFILE_PROTO_FILE for anything that is not
 * one of the remote forms above.
 */
enum bfile_proto bfile_name_proto(const char *name);

/* True if @name names a remote file (NBD, RBD). */
static inline bool bfile_name_remote(const char *name)
{
	return bfile_name_proto(name) != BFILE_PROTO_FILE;
}

/*
 * Parses a --allow-protocol list ("file,nbd,rbd") into *@set.  Returns 0,
 * or -EINVAL for an unknown name.
 */
int bfile_parse_protocols(const char *list, unsigned int *set);

/*
 * The protocols a name found inside an image (a backing or data file) may
 * use, for the whole process: all until bfile_set_allowed_protocols().
 */
void bfile_set_allowed_protocols(unsigned int set);
bool bfile_protocol_allowed(enum bfile_proto proto);
/* The set bfile_set_allowed_protocols() gave (BFILE_PROTO_ALL before). */
unsigned int bfile_allowed_protocols(void);

/*
 * Opens @name with BFILE_* @flags.  Prints one line naming @name and the
 * reason on failure (a refused connection, a missing export, no O_DIRECT
 * on this filesystem).  Returns 0 and sets *@fp, or -errno.
 */
int bfile_open(const char *name, unsigned int flags, struct bfile **fp);

/* Closes @f (NULL: nothing). */
void bfile_close(struct bfile *f);

static inline bool bfile_is_local(const struct bfile *f)
{
	return f->fd >= 0;
}

/* Whether @f's size is ours to set (a local file, RBD), not its server's (NBD). */
static inline bool bfile_resizable(const struct bfile *f)
{
	return f->fd >= 0 || f->ops->truncate;
}

/* The bytes read (fewer than @len only at the end), or -errno. */
static inline ssize_t bfile_pread(struct bfile *f, void *buf, size_t len, uint64_t off)
{
	if (likely(f->fd >= 0))
		return exec_pread(f->fd, buf, len, off);
	return f->ops->pread(f, buf, len, off);
}

/* @len, or -errno.  RWF_DSYNC in @rw_flags: durable on return (FUA). */
static inline ssize_t bfile_pwrite(struct bfile *f, const void *buf, size_t len,
				   uint64_t off, int rw_flags)
{
	if (likely(f->fd >= 0))
		return exec_pwrite(f->fd, buf, len, off, rw_flags);
	return f->ops->pwrite(f, buf, len, off, rw_flags);
}

/* Makes completed writes durable.  Returns 0 or -errno. */
static inline int bfile_flush(struct bfile *f)
{
	if (likely(f->fd >= 0))
		return exec_fdatasync(f->fd);
	return f->ops->flush(f);
}

/* As fallocate(2) with @mode (see bfile_ops.fallocate).  Returns 0 or -errno. */
static inline int bfile_fallocate(struct bfile *f, int mode, uint64_t off, uint64_t len)
{
	if (likely(f->fd >= 0))
		return exec_fallocate(f->fd, mode, off, len);
	return f->ops->fallocate(f, mode, off, len);
}

/*
 * Issues the writes of @w (at most EXEC_WRITE_ALL_MAX, their fd ignored)
 * to @f together where the protocol can, else one after the other.  Sets
 * each res.  Returns 0 or the first failure's -errno.
 */
int bfile_pwrite_all(struct bfile *f, struct exec_write *w, unsigned int n);

/* Sets *@bytes to @f's size.  Returns 0 or -errno. */
int bfile_size(struct bfile *f, uint64_t *bytes);

/*
 * Sets @f's size to @bytes.  An NBD export has the size its server gives
 * it: -EOPNOTSUPP unless @bytes is that size.  Returns 0 or -errno.
 */
int bfile_truncate(struct bfile *f, uint64_t bytes);

/*
 * Grows @f from @from to @to bytes ahead of allocation, with blocks
 * reserved where the filesystem can (see lib/bfile.c for why), else as a
 * hole; the growth reads as zeros.  An RBD image is resized; an NBD
 * export cannot grow: 0 if @to fits in it, else -ENOSPC.  Returns 0 or
 * -errno.
 */
int bfile_grow(struct bfile *f, uint64_t from, uint64_t to);

/*
 * Whether [@off, @off + *@len) of @f reads as zeros without being stored
 * (*@hole), with *@len trimmed to the run that is the same.  Returns 0,
 * or -EOPNOTSUPP when the protocol cannot tell.
 */
int bfile_block_status(struct bfile *f, uint64_t off, uint64_t *len, bool *hole);

/*
 * Reads [@off, @off + @len) of @name, opened with BFILE_* @flags (read-only
 * always), into @buf outside any executor (format probing).  Returns the
 * bytes read or -errno, after one line on failure.
 */
ssize_t bfile_read_name(const char *name, unsigned int flags, void *buf, size_t len,
			uint64_t off);

/* NBD (lib/bfile_nbd.c): bfile_open() for an NBD name. */
int bfile_nbd_open(const char *name, unsigned int flags, struct bfile **fp);

/*
 * The first query parameter of the NBD URI @name that makes libnbd read a
 * local file ("tls-psk-file", "tls-certificates"), which only a name with
 * BFILE_USER_NAME may carry; NULL if none (or @name is no NBD URI).
 */
const char *bfile_nbd_local_param(const char *name);

/*
 * Whether @name is in QEMU's older NBD syntax, nbd:HOST:PORT or
 * nbd:unix:PATH (either with :exportname=NAME), which QEMU still opens.
 */
static inline bool bfile_nbd_name_legacy(const char *name)
{
	return !strncmp(name, "nbd:", 4) && name[4] && name[4] != '/';
}

/*
 * As QEMU's nbd options: a lost connection is made again while requests
 * wait up to @reconnect_delay_ms (0: they fail at once), and an open
 * retries a refused connection for @open_timeout_ms (0: once).  For the
 * whole process; set before opening.
 */
void bfile_nbd_set_timeouts(unsigned int reconnect_delay_ms, unsigned int open_timeout_ms);
/* What bfile_nbd_set_timeouts() set (0 and 0 before). */
void bfile_nbd_get_timeouts(unsigned int *reconnect_delay_ms, unsigned int *open_timeout_ms);

/* RBD (lib/bfile_rbd.c): bfile_open() for an RBD name. */
int bfile_rbd_open(const char *name, unsigned int flags, struct bfile **fp);

/*
 * What in the RBD name @name only a name with BFILE_USER_NAME may set: a
 * conf= other than --rbd-conf's or /etc/ceph/ceph.conf, or a Ceph option
 * beyond those that say how to reach the cluster (mon_host, auth_*), as
 * options such as keyring= or log_file= make the server read or write a
 * local file.  NULL if none (or @name is no RBD name).
 */
const char *bfile_rbd_local_param(const char *name);

/*
 * The Ceph config file and client id for RBD names that give none
 * (--rbd-conf, --rbd-id); NULL leaves one as it is (Ceph's defaults).
 */
void bfile_rbd_set_defaults(const char *conf, const char *id);
/* What bfile_rbd_set_defaults() set; NULL for Ceph's defaults. */
void bfile_rbd_get_defaults(const char **conf, const char **id);
/*
 * Whether an RBD file is open in this process.  librados is not fork-safe:
 * a child forked meanwhile has the handles but not the threads behind
 * them, and its requests never complete; close them before forking and
 * open them again in the child.
 */
bool bfile_rbd_in_use(void);

#endif
