// SPDX-License-Identifier: GPL-2.0
/*
 * Adding, serving and deleting a device.
 *
 * `imgblk add` checks what it can in the foreground (options, root, the
 * driver, the target file), then forks the server.  The server adds the
 * device, starts the queue threads, starts the device, waits for the
 * kernel's uevent and a test read, and only then tells the waiting parent
 * the device id over a pipe and detaches.  Every failure before that
 * point undoes what was done, so a failed add leaves nothing behind.
 *
 * Shutdown: SIGTERM/SIGINT/SIGHUP, or the kernel aborting the queues'
 * fetches (someone ran STOP_DEV or DEL_DEV, e.g. `imgblk del`).  Either
 * way: STOP_DEV, join the queue threads, close the char device, DEL_DEV,
 * remove the state file.  DEL_DEV must come after the close: the kernel
 * waits for the char device to be released before it returns.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "bfile.h"
#include "control.h"
#include "job.h"
#include "disk.h"
#include "secret.h"
#include "server.h"
#include "state.h"
#include "ublk.h"
#include "uevent.h"
#include "util.h"

/*
 * The housekeeping thread: calls the top target's ->tick about once a
 * second in a coroutine of its own executor, for metadata work that must
 * happen while the device is idle (QED clears need-check after 5 s
 * without allocating writes).  It runs whatever the top is: the chain
 * may change to a top that ticks.
 */
struct ublk_housekeeper {
	struct blk_dev *blk;
	pthread_t thread;
	bool started;
	bool stop;		/* read and written with __atomic builtins */
};

static void ublk_hk_main(void *arg)
{
	struct ublk_housekeeper *hk = arg;

	while (!__atomic_load_n(&hk->stop, __ATOMIC_ACQUIRE)) {
		exec_sleep_ms(1000);
		if (__atomic_load_n(&hk->stop, __ATOMIC_ACQUIRE))
			break;
		blk_chain_tick(hk->blk);
	}
}

static void *ublk_hk_thread(void *arg)
{
	struct img_exec e;

	if (exec_init(&e, 16)) {
		img_err("housekeeping thread: cannot set up io_uring");
		return NULL;
	}
	if (exec_spawn(&e, ublk_hk_main, arg) == 0)
		exec_run(&e);
	exec_exit(&e);
	return NULL;
}

static void ublk_hk_start(struct ublk_housekeeper *hk, struct blk_dev *blk)
{
	sigset_t all, old;

	hk->blk = blk;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	hk->started = pthread_create(&hk->thread, NULL, ublk_hk_thread, hk) == 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!hk->started)
		img_err("cannot start the housekeeping thread");
}

/* Returns within about a second: the thread notices @stop after its sleep. */
static void ublk_hk_stop(struct ublk_housekeeper *hk)
{
	if (!hk->started)
		return;
	__atomic_store_n(&hk->stop, true, __ATOMIC_RELEASE);
	pthread_join(hk->thread, NULL);
	hk->started = false;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Opens the char device; retries while a udev-managed /dev catches up. */
static int ublk_open_cdev(unsigned int dev_id)
{
	int64_t deadline = mono_ms() + UBLK_READY_TIMEOUT_MS;
	char path[64];
	int fd;

	snprintf(path, sizeof(path), UBLK_CDEV_FMT, dev_id);
	/* ENOENT until udev made the node, EACCES until it gave it to its owner. */
	while ((fd = open(path, O_RDWR | O_CLOEXEC)) < 0) {
		if ((errno != ENOENT && errno != EACCES) || mono_ms() > deadline) {
			fd = -errno;
			img_err("%s: %s", path, strerror(errno));
			return fd;
		}
		usleep(10000);
	}
	return fd;
}

/*
 * The device works when its node exists and a read of its first block
 * completes.  Returns 0 or -errno, printing why.
 */
static int ublk_test_read(const struct ublk_dev *dev, int64_t deadline)
{
	unsigned int lbs = 1U << dev->params.basic.logical_bs_shift;
	char path[64];
	void *buf;
	ssize_t n;
	int fd, ret;

	snprintf(path, sizeof(path), UBLK_BDEV_FMT, dev->info.dev_id);
	/* devtmpfs creates the node before the uevent; udev may lag behind it. */
	while ((fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC)) < 0) {
		if ((errno != ENOENT && errno != EACCES) || mono_ms() > deadline) {
			ret = errno == ENOENT ? -ETIMEDOUT : -errno;
			img_err("%s did not appear: %s", path, strerror(-ret));
			return ret;
		}
		usleep(10000);
	}
	ret = -posix_memalign(&buf, 4096, lbs);
	if (!ret) {
		n = pread(fd, buf, lbs, 0);
		if (n != (ssize_t)lbs) {
			ret = n < 0 ? -errno : -EIO;
			img_err("test read of %s failed: %s", path, strerror(-ret));
		}
		free(buf);
	}
	close(fd);
	return ret;
}

/*
 * The partitions of the image's partition table are ready when the
 * kernel announced each and its node opens, so that `add` returns with
 * /dev/ublkbNp1... usable, as the disk.  The kernel (6.12) reads the
 * table inside START_DEV: by the disk's uevent sysfs lists every
 * partition, whose own uevents follow the disk's.  Returns 0 or -errno,
 * printing why.
 */
static int ublk_wait_partitions(struct uevent_listener *u, unsigned int id,
				int64_t deadline)
{
	unsigned int nums[UBLK_MAX_PARTS];
	char names[UBLK_MAX_PARTS][32], *ptrs[UBLK_MAX_PARTS];
	bool seen[UBLK_MAX_PARTS] = { false };
	char path[64];
	int n, i, fd, ret;

	n = ublk_disk_partitions(id, nums);
	for (i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "ublkb%up%u", id, nums[i]);
		ptrs[i] = names[i];
	}
	ret = uevent_wait_block_adds(u, ptrs, seen, n, MAX(deadline - mono_ms(), 1));
	for (i = 0; ret && i < n; i++) {
		if (seen[i])
			continue;
		if (ret == -ETIMEDOUT)
			img_err("timed out after %d s waiting for the kernel to announce partition /dev/%s",
				UBLK_READY_TIMEOUT_MS / 1000, names[i]);
		else
			img_err("waiting for partition /dev/%s: %s", names[i], strerror(-ret));
		return ret;
	}
	for (i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "/dev/%s", names[i]);
		/* As for the disk: udev may still be making or chowning the node. */
		while ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
			if ((errno != ENOENT && errno != EACCES) || mono_ms() > deadline) {
				ret = errno == ENOENT ? -ETIMEDOUT : -errno;
				img_err("partition %s did not appear: %s", path, strerror(-ret));
				return ret;
			}
			usleep(10000);
		}
		close(fd);
	}
	if (n)
		img_dbg(IMG_DBG_CTRL, "device %u: %d partitions ready", id, n);
	return 0;
}

/*
 * A new device is ready when the kernel announced it, it answers a read,
 * and its partitions are there.  Returns 0 or -errno, printing why.
 */
static int ublk_wait_ready(struct uevent_listener *u, const struct ublk_dev *dev)
{
	int64_t deadline = mono_ms() + UBLK_READY_TIMEOUT_MS;
	char name[32];
	int ret;

	snprintf(name, sizeof(name), "ublkb%u", dev->info.dev_id);
	ret = uevent_wait_block_add(u, name, UBLK_READY_TIMEOUT_MS);
	if (ret) {
		if (ret == -ETIMEDOUT)
			img_err("timed out after %d s waiting for the kernel to announce /dev/%s",
				UBLK_READY_TIMEOUT_MS / 1000, name);
		else
			img_err("waiting for /dev/%s: %s", name, strerror(-ret));
		return ret;
	}
	ret = ublk_test_read(dev, deadline);
	if (ret)
		return ret;
	return ublk_wait_partitions(u, dev->info.dev_id, deadline);
}

static int ublk_write_state(const struct ublk_add_opts *o, const struct ublk_dev *dev)
{
	const char *rbd_conf, *rbd_id;
	struct ublk_state s = {
		.id = dev->info.dev_id,
		.queues = dev->info.nr_hw_queues,
		.depth = dev->info.queue_depth,
		.pid = getpid(),
		.read_only = dev->tgt->caps.read_only,
		.open_flags = o->cfg.open_flags,
		.size_bytes = o->cfg.size_bytes,
		.recoverable = dev->info.flags & UBLK_F_USER_RECOVERY,
		.backing_policy = o->cfg.backing_policy,
		.l2_cache_bytes = o->cfg.l2_cache_bytes,
		.unprivileged = dev->info.flags & UBLK_F_UNPRIVILEGED_DEV,
		.discard_ignore = o->feat.blk.discard_ignore,
		.copy_on_read = o->feat.blk.copy_on_read,
		.throttle_burst_ms = o->feat.blk.throttle.burst_ms,
		.werror = o->feat.blk.werror,
		.rerror = o->feat.blk.rerror,
		.pinned_bytes = o->feat.pinned_bytes,
	};

	memcpy(s.throttle, o->feat.blk.throttle.rate, sizeof(s.throttle));
	snprintf(s.target, sizeof(s.target), "%s", o->ops->name);
	if (o->cfg.snapshot)
		snprintf(s.snapshot, sizeof(s.snapshot), "%s", o->cfg.snapshot);
	if (o->name)
		snprintf(s.name, sizeof(s.name), "%s", o->name);
	if (!o->cfg.file || !realpath(o->cfg.file, s.file))
		snprintf(s.file, sizeof(s.file), "%s", o->cfg.file ? o->cfg.file : "-");
	s.allow_protocols = bfile_allowed_protocols();
	bfile_nbd_get_timeouts(&s.nbd_reconnect_ms, &s.nbd_open_timeout_ms);
	bfile_rbd_get_defaults(&rbd_conf, &rbd_id);
	snprintf(s.rbd_conf, sizeof(s.rbd_conf), "%s", rbd_conf ?: "");
	snprintf(s.rbd_id, sizeof(s.rbd_id), "%s", rbd_id ?: "");
	if (secret_key_file_args(s.key_files, sizeof(s.key_files)))
		img_err("device %u: key file names too long for the state file; recover will need them",
			s.id);
	return ublk_state_write(&s);
}

/*
 * The kernel's timeout for the requests of device @dev_id in ms, from
 * /sys/block/ublkbN/queue/io_timeout, which root may change at any time
 * (the driver applies it to requests that start afterwards).  *@fd keeps
 * the file open between calls, -1 at first: one pread() a tick.  Returns
 * 0 if it cannot be read.
 */
static unsigned int ublk_io_timeout_ms(unsigned int dev_id, int *fd)
{
	char buf[64];
	ssize_t n;

	if (*fd < 0) {
		snprintf(buf, sizeof(buf), "/sys/block/ublkb%u/queue/io_timeout", dev_id);
		*fd = open(buf, O_RDONLY | O_CLOEXEC);
		if (*fd < 0)
			return 0;
	}
	n = pread(*fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	return strtoul(buf, NULL, 10);
}

/*
 * An unprivileged device's hold limit follows its io_timeout: ublk_timeout()
 * SIGKILLs the server at the first request that outlives it, so a request
 * waiting in a pause must fail well before.  Returns the limit now in force,
 * @cur if io_timeout cannot be read.
 */
static unsigned int ublk_unpriv_hold_ms(struct ublk_dev *dev, int *fd, unsigned int cur)
{
	unsigned int tmo = ublk_io_timeout_ms(dev->info.dev_id, fd);
	unsigned int hold = (uint64_t)tmo * UBLK_UNPRIV_HOLD_NUM / UBLK_UNPRIV_HOLD_DEN;

	if (!hold || hold == cur)
		return cur;
	blk_set_hold_limit(&dev->blk, hold);
	img_log("device %u: io_timeout is %u ms: requests wait in a pause for at most %u ms",
		dev->info.dev_id, tmo, hold);
	return hold;
}

/*
 * Blocks until a shutdown signal arrives or a queue thread ends; the
 * block layer's clock ticks meanwhile: every second, or every quarter of
 * the hold limit when that is shorter, so that a request never waits more
 * than 5/4 of the limit (5/6 of an unprivileged device's io_timeout).
 */
static void ublk_wait_shutdown(struct ublk_dev *dev, int sig_fd)
{
	struct pollfd pfd[2] = {
		{ .fd = sig_fd, .events = POLLIN },
		{ .fd = dev->event_fd, .events = POLLIN },
	};
	bool unpriv = dev->info.flags & UBLK_F_UNPRIVILEGED_DEV;
	unsigned int hold_ms = UBLK_UNPRIV_HOLD_MS, tick_ms = 1000;
	int n, tmo_fd = -1;

	for (;;) {
		if (unpriv) {
			hold_ms = ublk_unpriv_hold_ms(dev, &tmo_fd, hold_ms);
			tick_ms = MAX(MIN(hold_ms / 4, 1000U), 10U);
		}
		n = poll(pfd, 2, tick_ms);
		if (n > 0)
			break;
		if (n < 0 && errno != EINTR)
			break;
		blk_tick(&dev->blk);
	}
	if (tmo_fd >= 0)
		close(tmo_fd);
	if (pfd[0].revents & POLLIN) {
		struct signalfd_siginfo si;

		if (read(sig_fd, &si, sizeof(si)) == sizeof(si))
			img_log("device %u: signal %u, shutting down",
				dev->info.dev_id, si.ssi_signo);
	}
}

/*
 * After the device works: our messages go to syslog (the journal), each
 * naming the device, when a logger listens on /dev/log; stdio goes to a
 * log beside the state file, which also gets the messages when there is
 * no logger.
 */
static void ublk_detach_stdio(unsigned int dev_id)
{
	char path[PATH_MAX];
	struct stat st;
	int fd;

	if (stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode)) {
		snprintf(path, sizeof(path), "ublkb%u: ", dev_id);
		img_log_to_syslog(path);
	}

	snprintf(path, sizeof(path), "%s/%u.log", ublk_state_dir(), dev_id);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	close(fd);
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	dup2(fd, STDIN_FILENO);
	close(fd);
}

static void ublk_report(int report_fd, int val)
{
	if (report_fd >= 0) {
		if (write(report_fd, &val, sizeof(val)) != sizeof(val))
			img_err("cannot report to the waiting command: %s", strerror(errno));
		close(report_fd);
	}
}

/*
 * The udev rule names a device's nodes (/dev/disk/by-imgblk/NAME) from its
 * state file, which is written only after the kernel announced them: a
 * "change" uevent for the disk and each partition makes udev look again.
 */
static void ublk_name_announce(unsigned int id)
{
	unsigned int parts[UBLK_MAX_PARTS];
	char path[96];
	int n, i, fd;

	n = ublk_disk_partitions(id, parts);
	for (i = -1; i < n; i++) {
		if (i < 0)
			snprintf(path, sizeof(path), "/sys/block/ublkb%u/uevent", id);
		else
			snprintf(path, sizeof(path), "/sys/block/ublkb%u/ublkb%up%u/uevent",
				 id, id, parts[i]);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if (write(fd, "change", 6) != 6)
			img_dbg(IMG_DBG_CTRL, "%s: %s", path, strerror(errno));
		close(fd);
	}
}

/*
 * The device's block layer, once ADD_DEV or recovery told its id and
 * queues.  Returns 0 or -errno, printing why.
 */
static int ublk_blk_init(struct ublk_dev *dev)
{
	struct blk_config cfg = dev->feat.blk;
	int ret;

	/*
	 * The driver kills an unprivileged device's server when a request
	 * outlives io_timeout (ublk_timeout() in 6.12; a privileged one
	 * waits for ever): a pause then holds requests for at most two
	 * thirds of it (ublk_wait_shutdown() follows io_timeout), and fails
	 * them after that rather than losing the whole device.
	 */
	if (dev->info.flags & UBLK_F_UNPRIVILEGED_DEV)
		cfg.hold_limit_ms = UBLK_UNPRIV_HOLD_MS;
	ret = blk_dev_init(&dev->blk, dev->info.dev_id, dev->tgt, &cfg,
			   dev->info.nr_hw_queues);
	if (ret)
		img_err("cannot set up the block layer: %s", strerror(-ret));
	return ret;
}

/* ADD_DEV for a new device.  Returns 0 or -errno, printing why. */
static int ublk_add_begin(struct ublk_ctrl *ctrl, struct ublk_dev *dev,
			  const struct ublk_add_opts *o)
{
	int ret;

	dev->info.nr_hw_queues = o->nr_queues;
	dev->info.queue_depth = o->depth;
	dev->info.max_io_buf_bytes = UBLK_IO_BUF_BYTES;
	dev->info.dev_id = o->dev_id < 0 ? -1U : (unsigned int)o->dev_id;
	/*
	 * Recoverable: when the server dies the driver holds the requests
	 * instead of failing them, and reissues those the dead server had
	 * taken (a block write may be repeated safely).
	 */
	if (o->recoverable)
		dev->info.flags |= UBLK_F_USER_RECOVERY | UBLK_F_USER_RECOVERY_REISSUE;
	/*
	 * Not root: an unprivileged device, which only its owner can
	 * control and which the kernel never scans for partitions.  A udev
	 * rule gives the owner its nodes (imgblk udev-chown).
	 */
	if (geteuid() != 0) {
		dev->info.flags |= UBLK_F_UNPRIVILEGED_DEV;
		ctrl->unprivileged = true;
	}
	ret = ublk_ctrl_add_dev(ctrl, &dev->info);
	if (ret) {
		if (ret == -EEXIST)
			img_err("device id %d is already in use", o->dev_id);
		else
			img_err("cannot add a ublk device: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

/*
 * SET_PARAMS from the target's capabilities.  After the char device is
 * open: for an unprivileged device the driver checks our access to it,
 * which udev grants only after ADD_DEV.  Returns 0 or -errno, printing why.
 */
static int ublk_set_params(struct ublk_ctrl *ctrl, struct ublk_dev *dev)
{
	int ret;

	ublk_params_from_caps(&dev->tgt->caps, dev->info.max_io_buf_bytes, &dev->params);
	/* Ignored discards are still offered: a guest may rely on them. */
	if (dev->feat.blk.discard_ignore && !dev->tgt->caps.read_only &&
	    !dev->params.discard.max_discard_sectors) {
		struct tgt_caps caps = dev->tgt->caps;

		caps.can_discard = true;
		ublk_params_from_caps(&caps, dev->info.max_io_buf_bytes, &dev->params);
	}
	ret = ublk_ctrl_set_params(ctrl, dev->info.dev_id, &dev->params);
	if (ret)
		img_err("cannot set the device parameters: %s", strerror(-ret));
	return ret;
}

/*
 * START_USER_RECOVERY of a device whose server died, once the driver has
 * quiesced it.  Returns 0 or -errno, printing why.
 */
static int ublk_recover_begin(struct ublk_ctrl *ctrl, struct ublk_dev *dev,
			      unsigned int dev_id)
{
	int64_t deadline = mono_ms() + UBLK_READY_TIMEOUT_MS;
	int ret;

	for (;;) {
		ret = ublk_ctrl_get_dev_info(ctrl, dev_id, &dev->info);
		if (ret) {
			img_err("device %u: %s", dev_id, strerror(-ret));
			return ret;
		}
		ctrl->unprivileged = dev->info.flags & UBLK_F_UNPRIVILEGED_DEV;
		if (!(dev->info.flags & UBLK_F_USER_RECOVERY)) {
			img_err("device %u was not added with --recoverable", dev_id);
			return -EINVAL;
		}
		if (dev->info.state == UBLK_S_DEV_LIVE) {
			img_err("device %u is live: its server is running", dev_id);
			return -EBUSY;
		}
		if (dev->info.state == UBLK_S_DEV_DEAD) {
			img_err("device %u is stopped: it can only be deleted", dev_id);
			return -ENODEV;
		}
		/* -EBUSY until the dead server's char device is released. */
		ret = ublk_ctrl_start_recovery(ctrl, dev_id);
		if (ret != -EBUSY || mono_ms() > deadline)
			break;
		usleep(50000);
	}
	if (ret) {
		img_err("cannot start the recovery of device %u: %s", dev_id, strerror(-ret));
		return ret;
	}
	ret = ublk_ctrl_get_params(ctrl, dev_id, &dev->params);
	if (ret)
		img_err("device %u: cannot read its parameters: %s", dev_id, strerror(-ret));
	return ret;
}

/*
 * The server: runs in the forked child (or in the foreground).  Reports
 * the device id, or a negative errno after printing why, on @report_fd.
 * *@tp is the top image; the chain may change while the device runs, so
 * on return it is the top the device ended with, for the caller to close.
 * Returns the exit status.
 */
static int ublk_serve_dev(const struct ublk_add_opts *o, struct tgt **tp, int report_fd)
{
	struct ublk_dev dev = { .tgt = *tp, .cdev_fd = -1, .feat = o->feat };
	struct uevent_listener uev = { 0 };
	struct ublk_housekeeper hk = { 0 };
	struct ublk_ctrl ctrl;
	bool queues_started = false, served = false, added = false, blk_ready = false;
	bool in_use = false;
	char log_path[PATH_MAX], why[512];
	sigset_t sigs;
	int sig_fd = -1, ret;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	sig_fd = signalfd(-1, &sigs, SFD_CLOEXEC);
	if (sig_fd < 0) {
		ret = -errno;
		img_err("signalfd: %s", strerror(errno));
		goto out_report;
	}

	ret = ublk_ctrl_open(&ctrl);
	if (ret) {
		ublk_ctrl_explain(ret);
		goto out_report;
	}

	ret = o->recover ? ublk_recover_begin(&ctrl, &dev, o->dev_id) :
			   ublk_add_begin(&ctrl, &dev, o);
	if (ret)
		goto out_ctrl;
	added = !o->recover;

	ret = ublk_blk_init(&dev);
	if (ret)
		goto out_del;
	blk_ready = true;
	ret = ublk_open_cdev(dev.info.dev_id);
	if (ret < 0)
		goto out_del;
	dev.cdev_fd = ret;
	if (!o->recover) {
		ret = ublk_set_params(&ctrl, &dev);
		if (ret)
			goto out_close;
	}

	/* Subscribe before START_DEV: its uevent is sent while it runs. */
	if (!o->recover) {
		ret = uevent_open(&uev);
		if (ret)
			goto out_close;
	}

	ret = ublk_queues_start(&dev, &ctrl);
	queues_started = true;
	if (ret) {
		img_err("cannot start the queue threads: %s", strerror(-ret));
		goto out_stop;
	}
	if (o->recover) {
		/* Returns once every tag of the new server has fetched. */
		ret = ublk_ctrl_end_recovery(&ctrl, dev.info.dev_id, getpid());
		if (ret)
			img_err("cannot end the recovery of device %u: %s", dev.info.dev_id,
				strerror(-ret));
		else
			ret = ublk_test_read(&dev, mono_ms() + UBLK_READY_TIMEOUT_MS);
	} else {
		ret = ublk_ctrl_start_dev(&ctrl, dev.info.dev_id, getpid());
		if (ret)
			img_err("cannot start device %u: %s", dev.info.dev_id,
				strerror(-ret));
		else
			ret = ublk_wait_ready(&uev, &dev);
		uevent_close(&uev);
	}
	if (ret)
		goto out_stop;
	ret = ublk_ctl_start(&dev);
	if (ret)
		goto out_stop;
	ret = ublk_write_state(o, &dev);
	if (ret) {
		img_err("cannot write the state file in %s: %s", ublk_state_dir(),
			strerror(-ret));
		goto out_stop;
	}

	if (o->name)
		ublk_name_announce(dev.info.dev_id);
	img_dbg(IMG_DBG_CTRL, "device %u ready", dev.info.dev_id);
	if (o->foreground) {
		printf(UBLK_BDEV_FMT "\n", dev.info.dev_id);
		fflush(stdout);
		/* Under systemd (Type=notify): the device and partitions are ready. */
		sd_notifyf(0, "READY=1\nSTATUS=serving " UBLK_BDEV_FMT, dev.info.dev_id);
	} else {
		ublk_detach_stdio(dev.info.dev_id);
	}
	ublk_report(report_fd, dev.info.dev_id);
	report_fd = -1;
	served = true;

	ublk_hk_start(&hk, &dev.blk);
	ublk_wait_shutdown(&dev, sig_fd);
	/*
	 * `del --force` of a mounted device: DEL_DEV would wait until the
	 * filesystem lets go of the disk, i.e. for ever; the asynchronous
	 * one deletes it now and leaves the id taken until then.
	 */
	in_use = ublk_disk_busy(dev.info.dev_id, why, sizeof(why)) != UBLK_DISK_FREE;
	if (in_use)
		img_log("device %u: %s; deleting it anyway", dev.info.dev_id, why);

out_stop:
	if (uev.sk)
		uevent_close(&uev);
	/*
	 * A recovery that failed must not stop the device it meant to save:
	 * exiting closes our rings, and the driver quiesces it again for the
	 * next attempt.
	 */
	if (!served && o->recover) {
		ublk_report(report_fd, ret < 0 ? ret : -EIO);
		_exit(1);
	}
	/*
	 * Requests held by a pause must complete before the kernel can
	 * stop the device: its removal waits for every request it issued.
	 */
	/* A job stops before the layer fails what waits: it may wait at the gate too. */
	if (blk_ready) {
		blk_job_shutdown(&dev.blk);
		blk_shutdown(&dev.blk);
	}
	if (queues_started) {
		/* Aborts every pending fetch, so the queue threads end. */
		ublk_ctrl_stop_dev(&ctrl, dev.info.dev_id);
		ublk_queues_join(&dev);
	}
	/* No I/O is left: the target's own deferred work can stop too. */
	ublk_hk_stop(&hk);
	ublk_ctl_stop(&dev);
out_close:
	if (dev.cdev_fd >= 0)
		close(dev.cdev_fd);
out_del:
	if (in_use)
		ublk_ctrl_del_dev_async(&ctrl, dev.info.dev_id);
	else if (added || served)
		ublk_ctrl_del_dev(&ctrl, dev.info.dev_id);
	if (served) {
		ublk_state_remove(dev.info.dev_id);
		snprintf(log_path, sizeof(log_path), "%s/%u.log", ublk_state_dir(),
			 dev.info.dev_id);
		unlink(log_path);
	}
out_ctrl:
	if (blk_ready) {
		*tp = dev.blk.top;
		blk_dev_exit(&dev.blk);
	}
	ublk_ctrl_close(&ctrl);
out_report:
	if (sig_fd >= 0)
		close(sig_fd);
	if (served)
		return 0;
	ublk_report(report_fd, ret < 0 ? ret : -EIO);
	return 1;
}

/* Frees the chain @t heads (see ublk_add()).  Returns 0 or -errno. */
static int ublk_free_top(struct tgt *t)
{
	int ret = tgt_close(t);

	free((char *)t->cfg.file);
	free(t);
	return ret;
}

/*
 * Opens the device's image as @o says into *@tp.  Returns 0, or 1 after
 * printing why.  Allocated as tgt_open_backing() allocates backing files,
 * as every node of a device's chain must be (block.h): a live snapshot
 * makes it one.
 */
static int ublk_open_top(const struct ublk_add_opts *o, struct tgt **tp)
{
	struct tgt *t = calloc(1, sizeof(*t));

	if (!t) {
		img_err("%s", strerror(ENOMEM));
		return 1;
	}
	t->ops = o->ops;
	t->cfg = o->cfg;
	t->cfg.file = o->cfg.file ? strdup(o->cfg.file) : NULL;
	if (o->cfg.file && !t->cfg.file) {
		free(t);
		img_err("%s", strerror(ENOMEM));
		return 1;
	}
	t->cfg.open_flags |= TGT_O_FIXED_SIZE;
	if (o->recoverable)
		t->cfg.open_flags |= TGT_O_RECOVERABLE;
	if (tgt_open(t)) {
		free((char *)t->cfg.file);
		free(t);
		return 1;
	}
	*tp = t;
	return 0;
}

int ublk_add(const struct ublk_add_opts *o)
{
	struct tgt *t;
	struct ublk_ctrl ctrl;
	int pipefd[2], val, status, ret;
	ssize_t n;
	pid_t pid;

	if (o->log_level) {
		img_log_set_level(o->log_level);
		/* debug shows the control plane's own debug lines. */
		if (o->log_level >= IMG_LOG_DEBUG)
			img_debug_mask |= IMG_DBG_CTRL;
	}
	if (o->name && !o->recover) {
		int other = ublk_state_find_name(o->name);

		if (other >= 0) {
			img_err("the name '%s' is taken by " UBLK_BDEV_FMT, o->name, other);
			return 1;
		}
	}
	/* The driver keeps no recovery for devices of unprivileged users. */
	if (geteuid() != 0 && o->recoverable) {
		img_err("--recoverable needs root: the driver offers recovery only for privileged devices");
		return 1;
	}
	/*
	 * An unqualified --key-file is for the image added: bound to it by
	 * path, it keeps unlocking that image once a snapshot makes it a
	 * backing file, and the state file records it so.
	 */
	if (o->cfg.file && secret_bind_unnamed(o->cfg.file)) {
		img_err("out of memory");
		return 1;
	}
	/* Say "driver not loaded" before touching the image. */
	ret = ublk_ctrl_open(&ctrl);
	if (ret) {
		ublk_ctrl_explain(ret);
		return 1;
	}
	ublk_ctrl_close(&ctrl);

	/*
	 * The image locks are taken here, before the kernel hears of a
	 * device, so that a refused image leaves nothing behind.  The forked
	 * server shares their open file description: our exit drops nothing,
	 * and they last until the server closes the target.  The device's
	 * size is fixed: nobody may resize the file under it (as qemu-nbd).
	 */
	if (ublk_open_top(o, &t))
		return 1;

	if (o->foreground) {
		ret = ublk_serve_dev(o, &t, -1);
		ublk_free_top(t);
		return ret;
	}

	/*
	 * librados is not fork-safe (bfile_rbd_in_use()): with RBD in the
	 * chain the image was opened to check it, and the server opens it
	 * again.  Image locks are not held in between.
	 */
	if (bfile_rbd_in_use()) {
		ublk_free_top(t);
		t = NULL;
	}
	if (pipe2(pipefd, O_CLOEXEC)) {
		img_err("pipe: %s", strerror(errno));
		if (t)
			ublk_free_top(t);
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		img_err("fork: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		if (t)
			ublk_free_top(t);
		return 1;
	}
	if (pid == 0) {
		close(pipefd[0]);
		/* Out of the caller's session: a terminal hangup must not stop us. */
		setsid();
		if (!t && ublk_open_top(o, &t))
			_exit(1);
		ret = ublk_serve_dev(o, &t, pipefd[1]);
		ublk_free_top(t);
		_exit(ret);
	}

	/*
	 * The server owns the image now.  Our copy of the target is dropped
	 * at exit without ->close, which would write metadata behind its back.
	 */
	close(pipefd[1]);
	do {
		n = read(pipefd[0], &val, sizeof(val));
	} while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	if (n == sizeof(val) && val >= 0) {
		printf(UBLK_BDEV_FMT "\n", val);
		return 0;
	}
	/* The server printed why; reap it so it leaves no zombie behind. */
	waitpid(pid, &status, 0);
	if (n != sizeof(val))
		img_err("the server exited during setup");
	return 1;
}

int ublk_recover(unsigned int id, bool foreground)
{
	struct ublk_add_opts o = {
		.dev_id = id,
		.foreground = foreground,
		.recover = true,
		.recoverable = true,
	};
	struct ublk_state s;

	if (ublk_state_read(id, &s)) {
		img_err("no imgblk device with id %u", id);
		return 1;
	}
	if (!s.recoverable) {
		img_err("device %u was not added with --recoverable", id);
		return 1;
	}
	if (s.pid > 0 && kill(s.pid, 0) == 0) {
		img_err("device %u: its server %d is still running", id, (int)s.pid);
		return 1;
	}
	/*
	 * A job dies with its server.  The state file names the image the
	 * device served: a pivot records its new top before the device
	 * serves it, a stream or commit leaves the chain its headers name.
	 */
	if (s.job[0]) {
		char type[16] = "", jid[64] = "";
		int n = 0;

		sscanf(s.job, "%15s %63s %n", type, jid, &n);
		img_err("device %u: block job %s (%s of %s) ended with its server and is gone%s; the device serves %s",
			id, jid, type, s.job + n,
			!strcmp(type, "backup") || !strcmp(type, "mirror") ?
			": its target is incomplete" : "", s.file);
	}
	o.ops = tgt_find(s.target);
	if (!o.ops) {
		img_err("device %u: unknown target '%s' in its state file", id, s.target);
		return 1;
	}
	if (strcmp(s.file, "-"))
		o.cfg.file = s.file;
	if (s.name[0])
		o.name = s.name;
	o.cfg.size_bytes = s.size_bytes;
	o.cfg.open_flags = s.open_flags;
	o.cfg.backing_policy = s.backing_policy;
	/* Remote files as add had them; a state file from before names none. */
	if (s.allow_protocols)
		bfile_set_allowed_protocols(s.allow_protocols);
	bfile_nbd_set_timeouts(s.nbd_reconnect_ms, s.nbd_open_timeout_ms);
	bfile_rbd_set_defaults(s.rbd_conf[0] ? s.rbd_conf : NULL, s.rbd_id[0] ? s.rbd_id : NULL);
	o.cfg.l2_cache_bytes = s.l2_cache_bytes;
	if (s.snapshot[0])
		o.cfg.snapshot = s.snapshot;
	/* An encrypted image's keys: read again from their files, as add read them. */
	for (char *save, *k = strtok_r(s.key_files, "\t", &save); k;
	     k = strtok_r(NULL, "\t", &save))
		if (secret_add_key_file(k))
			return 1;
	o.feat.blk.discard_ignore = s.discard_ignore;
	o.feat.blk.copy_on_read = s.copy_on_read;
	o.feat.blk.throttle.burst_ms = s.throttle_burst_ms;
	o.feat.blk.werror = s.werror;
	o.feat.blk.rerror = s.rerror;
	o.feat.pinned_bytes = s.pinned_bytes;
	memcpy(o.feat.blk.throttle.rate, s.throttle, sizeof(s.throttle));
	o.nr_queues = s.queues;
	o.depth = s.depth;
	return ublk_add(&o);
}

/* Waits up to @timeout_ms for process @pid to exit.  Returns true if it did. */
static bool ublk_wait_pid_gone(pid_t pid, int timeout_ms)
{
	int64_t deadline = mono_ms() + timeout_ms;

	while (kill(pid, 0) == 0 || errno == EPERM) {
		if (mono_ms() > deadline)
			return false;
		usleep(10000);
	}
	return true;
}

/*
 * Is @pid an imgblk process?  A state file left by a server that died
 * long ago may name a pid the system has since given to another program,
 * which must not get our signal.
 */
static bool ublk_is_server(pid_t pid)
{
	char path[64], comm[32] = "";
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, comm, sizeof(comm) - 1);
	close(fd);
	return n > 0 && !strncmp(comm, "imgblk", 6);
}

/*
 * Deletes one device known to have state @s; with @force also one whose
 * disk is still held.  Returns 0 or -errno.
 */
static int ublk_del_one(struct ublk_ctrl *ctrl, const struct ublk_state *s, bool force)
{
	int ret;

	/*
	 * A live server is asked to stop: it fails the requests it holds
	 * for a pause, which the kernel would otherwise wait for for ever
	 * in DEL_DEV, and then stops and deletes the device itself.
	 * DEL_DEV below finds the device gone (or deletes it, if the server
	 * could not).
	 */
	if (s->pid > 0 && ublk_is_server(s->pid) && kill(s->pid, SIGTERM) == 0 &&
	    !ublk_wait_pid_gone(s->pid, UBLK_STOP_TIMEOUT_MS))
		img_err("device %u: server %d did not stop in %d s; deleting the device",
			s->id, (int)s->pid, UBLK_STOP_TIMEOUT_MS / 1000);
	ctrl->unprivileged = s->unprivileged;
	/* A mounted filesystem would make DEL_DEV wait for its umount. */
	ret = force ? ublk_ctrl_del_dev_async(ctrl, s->id) : ublk_ctrl_del_dev(ctrl, s->id);

	/* -ENODEV: the kernel no longer has it; only the state file was left. */
	if (ret && ret != -ENODEV) {
		img_err("cannot delete device %u: %s", s->id, strerror(-ret));
		return ret;
	}
	/*
	 * DEL_DEV returns once the server closed the char device; give it a
	 * moment to remove its state file and exit.
	 */
	if (s->pid > 0 && !ublk_wait_pid_gone(s->pid, 5000))
		img_err("device %u: server %d did not exit", s->id, (int)s->pid);
	ret = ublk_state_remove(s->id);
	return ret == -ENOENT ? 0 : ret;
}

/*
 * Whether device @id may be deleted: not while its disk or a partition is
 * mounted or open elsewhere, unless @force.  Says why not.
 */
static bool ublk_del_allowed(unsigned int id, bool force)
{
	int64_t deadline = mono_ms() + UBLK_DEL_OPEN_WAIT_MS;
	enum ublk_disk_user user;
	char why[512];

	if (force)
		return true;
	/*
	 * A plain or exclusive open may be fleeting: udev's blkid probes a
	 * new disk and its partitions just after add.  Give those a moment;
	 * a mount or a stacked device does not go away by itself.
	 */
	while ((user = ublk_disk_busy(id, why, sizeof(why))) >= UBLK_DISK_CLAIMED &&
	       mono_ms() < deadline)
		usleep(100000);
	if (user == UBLK_DISK_FREE)
		return true;
	img_err("%s", why);
	return false;
}

int ublk_del(unsigned int id, bool force)
{
	struct ublk_state s;
	struct ublk_ctrl ctrl;
	int ret;

	ret = ublk_state_read(id, &s);
	if (ret) {
		img_err("no imgblk device with id %u", id);
		return 1;
	}
	if (!ublk_del_allowed(id, force))
		return 1;
	ret = ublk_ctrl_open(&ctrl);
	if (ret) {
		ublk_ctrl_explain(ret);
		return 1;
	}
	ret = ublk_del_one(&ctrl, &s, force);
	ublk_ctrl_close(&ctrl);
	return ret ? 1 : 0;
}

int ublk_del_all(bool force)
{
	struct ublk_ctrl ctrl;
	unsigned int *ids;
	int n, i, ret, status = 0;

	n = ublk_state_ids(&ids);
	if (n < 0) {
		img_err("%s: %s", ublk_state_dir(), strerror(-n));
		return 1;
	}
	if (n == 0)
		return 0;
	ret = ublk_ctrl_open(&ctrl);
	if (ret) {
		ublk_ctrl_explain(ret);
		free(ids);
		return 1;
	}
	for (i = 0; i < n; i++) {
		struct ublk_state s;

		if (ublk_state_read(ids[i], &s))
			continue;	/* deleted meanwhile */
		if (!ublk_del_allowed(s.id, force) || ublk_del_one(&ctrl, &s, force))
			status = 1;
	}
	ublk_ctrl_close(&ctrl);
	free(ids);
	return status;
}
