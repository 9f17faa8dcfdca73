/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Run state of the servers: one file per device under /run/imgblk/, so
 * that `list` and `del` find devices added by other invocations.
 */
#ifndef IMGBLK_STATE_H
#define IMGBLK_STATE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "block.h"

/* A device's stable name: letters, digits, '.', '_', '-'; at most this long. */
#define UBLK_NAME_MAX	63

struct ublk_state {
	unsigned int id;
	char target[32];
	char file[PATH_MAX];
	unsigned int queues;
	unsigned int depth;
	pid_t pid;
	bool read_only;
	/* What `recover` needs to open the target again as it was. */
	unsigned int open_flags;
	uint64_t size_bytes;
	bool recoverable;
	unsigned int backing_policy;
	uint64_t l2_cache_bytes;
	bool unprivileged;		/* added by a user: commands need the cdev path */
	bool discard_ignore;
	bool copy_on_read;
	uint64_t throttle[THR_NR];
	unsigned int throttle_burst_ms;
	uint64_t pinned_bytes;
	enum blk_err_action werror;
	enum blk_err_action rerror;
	/* The internal snapshot served (read-only); empty: the current state. */
	char snapshot[256];
	/* The block job running: "TYPE ID TARGET"; empty: none. */
	char job[PATH_MAX + 64];
	/* The stable name (add --name, imgblktab); empty: none. */
	char name[UBLK_NAME_MAX + 1];
	/*
	 * The --key-file arguments ([IMAGE=]FILE, tab-separated) that
	 * `recover` reads again: the paths of the key files, never a key.
	 */
	char key_files[2 * PATH_MAX];
	/*
	 * Remote files: --allow-protocol (BFILE_PROTO_*), the NBD timeouts,
	 * --rbd-conf and --rbd-id (empty: Ceph's defaults).
	 */
	unsigned int allow_protocols;
	unsigned int nbd_reconnect_ms;
	unsigned int nbd_open_timeout_ms;
	char rbd_conf[PATH_MAX];
	char rbd_id[64];
};

/*
 * The id of the device named @name (add --name).  Returns it, or -ENOENT
 * when no device has that name.
 */
int ublk_state_find_name(const char *name);

/* Directory of the state files; IMGBLK_RUN_DIR overrides it (tests). */
const char *ublk_state_dir(void);

/*
 * Creates the directory of the state files (0700 for a user, whose it
 * must be; 0755 for root).  Returns 0 or -errno.
 */
int ublk_state_mkdir(void);

/*
 * The path of device @id's control socket, beside its state file.
 * Returns 0, or -ENAMETOOLONG when it does not fit @len or a socket
 * address.
 */
int ublk_ctl_path(unsigned int id, char *buf, size_t len);

/* Writes the state of device @s->id atomically.  Returns 0 or -errno. */
int ublk_state_write(const struct ublk_state *s);

/*
 * Changes device @id's state file: reads it, lets @fn(@s, @ctx) change
 * what it read, and writes it back unless @fn fails.  The server's
 * threads (control channel, block job, ...) each change their own lines;
 * one lock around every read-modify-write in this process (and around
 * ublk_state_write()) keeps one from undoing another's.  Returns 0 or
 * -errno (@fn's, the read's or the write's).
 */
int ublk_state_update(unsigned int id, int (*fn)(struct ublk_state *s, void *ctx), void *ctx);

/* Reads the state of device @id.  Returns 0, -ENOENT, or -errno. */
int ublk_state_read(unsigned int id, struct ublk_state *s);

/*
 * Removes the state of device @id, and its control socket if left over.
 * Returns 0 or -errno (-ENOENT included) for the state file.
 */
int ublk_state_remove(unsigned int id);

/*
 * Lists the ids that have a state file, ascending, into a malloc'ed array.
 * Returns the count or -errno.
 */
int ublk_state_ids(unsigned int **ids);

#endif
