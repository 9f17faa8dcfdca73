// SPDX-License-Identifier: GPL-2.0
/*
 * A device's disk as the kernel shows it: the partitions it found in
 * the image's partition table (sysfs), and whether anyone uses the disk
 * or a partition, so that `del` can refuse to pull a disk from under a
 * mounted filesystem.  Deleting such a device fails the filesystem's
 * I/O and, while it holds the disk, makes the kernel's removal wait.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "disk.h"
#include "util.h"

static int cmp_uint(const void *a, const void *b)
{
	unsigned int x = *(const unsigned int *)a, y = *(const unsigned int *)b;

	return x < y ? -1 : x > y;
}

int ublk_disk_partitions(unsigned int id, unsigned int *nums)
{
	char dir[64], prefix[32];
	struct dirent *de;
	size_t plen;
	DIR *d;
	int n = 0;

	snprintf(dir, sizeof(dir), "/sys/block/ublkb%u", id);
	/* A disk name ending in a digit gets "p" before the partition number. */
	plen = snprintf(prefix, sizeof(prefix), "ublkb%up", id);
	d = opendir(dir);
	if (!d)
		return 0;
	while ((de = readdir(d)) && n < UBLK_MAX_PARTS) {
		uint64_t num;

		if (strncmp(de->d_name, prefix, plen) ||
		    parse_uint(de->d_name + plen, 1, UBLK_MAX_PARTS, &num))
			continue;
		nums[n++] = num;
	}
	closedir(d);
	qsort(nums, n, sizeof(*nums), cmp_uint);
	return n;
}

/* The sysfs directory and /dev node of the disk (@part 0) or a partition. */
static void disk_paths(unsigned int id, unsigned int part, char *sys, size_t slen,
		       char *node, size_t nlen)
{
	if (part) {
		snprintf(sys, slen, "/sys/block/ublkb%u/ublkb%up%u", id, id, part);
		snprintf(node, nlen, "/dev/ublkb%up%u", id, part);
	} else {
		snprintf(sys, slen, "/sys/block/ublkb%u", id);
		snprintf(node, nlen, "/dev/ublkb%u", id);
	}
}

/* The device number sysfs gives for @sys ("MAJ:MIN").  Returns 0 or -errno. */
static int disk_devt(const char *sys, dev_t *devt)
{
	char path[128], buf[32];
	unsigned int maj, min;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/dev", sys);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -EIO;
	buf[n] = '\0';
	if (sscanf(buf, "%u:%u", &maj, &min) != 2)
		return -EIO;
	*devt = makedev(maj, min);
	return 0;
}

/* Is one of @devs[@n] mounted?  Names the first mount found in @why. */
static bool disk_mounted(const dev_t *devs, char (*nodes)[48], int n, char *why,
			 size_t len)
{
	char line[4096], mnt[4096];
	unsigned int maj, min;
	bool found = false;
	FILE *f;
	int i;

	f = fopen("/proc/self/mountinfo", "re");
	if (!f)
		return false;
	/* "ID PARENT MAJ:MIN ROOT MOUNTPOINT ..." */
	while (!found && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*u %*u %u:%u %*s %4095s", &maj, &min, mnt) != 3)
			continue;
		for (i = 0; i < n; i++) {
			if (devs[i] == makedev(maj, min)) {
				snprintf(why, len, "%s is mounted on %s", nodes[i], mnt);
				found = true;
				break;
			}
		}
	}
	fclose(f);
	return found;
}

/* Does a stacked device (dm, md, bcache) hold @sys?  Names it in @why. */
static bool disk_held(const char *sys, const char *node, char *why, size_t len)
{
	char path[128];
	struct dirent *de;
	bool found = false;
	DIR *d;

	snprintf(path, sizeof(path), "%s/holders", sys);
	d = opendir(path);
	if (!d)
		return false;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(why, len, "%s is held by /dev/%s", node, de->d_name);
		found = true;
		break;
	}
	closedir(d);
	return found;
}

/*
 * Is one of @devs[@n] open by another process?  Looks at every process's
 * open files; names the first one found in @why.  Processes we may not
 * look into (another user's, without root) are not seen.
 */
static bool disk_open_by_process(const dev_t *devs, char (*nodes)[48], int n,
				 char *why, size_t len)
{
	struct dirent *pe, *fe;
	bool found = false;
	DIR *proc, *fds;
	pid_t self = getpid();

	proc = opendir("/proc");
	if (!proc)
		return false;
	while (!found && (pe = readdir(proc))) {
		char path[600], comm[32] = "?";
		uint64_t pid;
		struct stat st;
		int i, fd;

		if (parse_uint(pe->d_name, 1, INT32_MAX, &pid) || (pid_t)pid == self)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", pe->d_name);
		fds = opendir(path);
		if (!fds)
			continue;
		while (!found && (fe = readdir(fds))) {
			if (fe->d_name[0] == '.')
				continue;
			snprintf(path, sizeof(path), "/proc/%s/fd/%s", pe->d_name, fe->d_name);
			if (stat(path, &st) || !S_ISBLK(st.st_mode))
				continue;
			for (i = 0; i < n; i++) {
				if (st.st_rdev != devs[i])
					continue;
				snprintf(path, sizeof(path), "/proc/%s/comm", pe->d_name);
				fd = open(path, O_RDONLY | O_CLOEXEC);
				if (fd >= 0) {
					ssize_t r = read(fd, comm, sizeof(comm) - 1);

					comm[r > 0 ? r : 0] = '\0';
					comm[strcspn(comm, "\n")] = '\0';
					close(fd);
				}
				snprintf(why, len, "%s is open by process %s (%s)", nodes[i],
					 pe->d_name, comm);
				found = true;
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	return found;
}

enum ublk_disk_user ublk_disk_busy(unsigned int id, char *why, size_t len)
{
	unsigned int parts[UBLK_MAX_PARTS], nums[UBLK_MAX_PARTS + 1];
	char (*nodes)[48];
	char sys[UBLK_MAX_PARTS + 1][64];
	dev_t devs[UBLK_MAX_PARTS + 1];
	enum ublk_disk_user busy = UBLK_DISK_FREE;
	int np, n = 0, i, fd;

	nodes = calloc(UBLK_MAX_PARTS + 1, sizeof(*nodes));
	if (!nodes)
		return UBLK_DISK_FREE;
	np = ublk_disk_partitions(id, parts);
	nums[0] = 0;
	memcpy(nums + 1, parts, np * sizeof(*parts));
	/* The disk first, then its partitions; the gone are skipped. */
	for (i = 0; i <= np; i++) {
		disk_paths(id, nums[i], sys[n], sizeof(sys[n]), nodes[n], sizeof(nodes[n]));
		if (disk_devt(sys[n], &devs[n]) == 0)
			n++;
	}
	/* The clearest holder first: a mount, a stacked device, then any open. */
	if (disk_mounted(devs, nodes, n, why, len)) {
		busy = UBLK_DISK_MOUNTED;
		goto out;
	}
	for (i = 0; i < n; i++) {
		if (disk_held(sys[i], nodes[i], why, len)) {
			busy = UBLK_DISK_HELD;
			goto out;
		}
	}
	/*
	 * The kernel refuses an exclusive open of a node that a filesystem
	 * (also one mounted in another namespace) or a claimer holds.
	 */
	for (i = 0; i < n; i++) {
		fd = open(nodes[i], O_RDONLY | O_EXCL | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0) {
			close(fd);
		} else if (errno == EBUSY) {
			snprintf(why, len, "%s is in use (held exclusively)", nodes[i]);
			busy = UBLK_DISK_CLAIMED;
			goto out;
		}
	}
	if (disk_open_by_process(devs, nodes, n, why, len))
		busy = UBLK_DISK_OPEN;
out:
	free(nodes);
	return busy;
}
