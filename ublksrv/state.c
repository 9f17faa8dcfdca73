// SPDX-License-Identifier: GPL-2.0
/*
 * State files: "KEY=VALUE" lines in /run/imgblk/ID.state.  Written by the
 * server once its device works, removed when it shuts down; a file left
 * by a killed server is how `list` shows a DEAD device and `del` finds it.
 * The device's control socket (control.h) is ID.sock beside it.
 */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "block.h"
#include "state.h"
#include "ublk.h"
#include "util.h"

const char *ublk_state_dir(void)
{
	static char user_dir[PATH_MAX];
	const char *d = getenv("IMGBLK_RUN_DIR");

	if (d && *d)
		return d;
	if (geteuid() == 0)
		return UBLK_STATE_DIR;
	/* A user's devices are recorded where only that user writes. */
	if (!user_dir[0]) {
		d = getenv("XDG_RUNTIME_DIR");
		if (d && *d)
			snprintf(user_dir, sizeof(user_dir), "%s/imgblk", d);
		else
			snprintf(user_dir, sizeof(user_dir), "/tmp/imgblk-%u", (unsigned int)geteuid());
	}
	return user_dir;
}

static void ublk_state_path(unsigned int id, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%u.state", ublk_state_dir(), id);
}

int ublk_ctl_path(unsigned int id, char *buf, size_t len)
{
	struct sockaddr_un sa;
	int n;

	n = snprintf(buf, len, "%s/%u.sock", ublk_state_dir(), id);
	return n < 0 || (size_t)n >= MIN(len, sizeof(sa.sun_path)) ? -ENAMETOOLONG : 0;
}

int ublk_state_mkdir(void)
{
	struct stat st;

	if (mkdir(ublk_state_dir(), geteuid() ? 0700 : 0755) && errno != EEXIST)
		return -errno;
	/* A user's directory under /tmp must be that user's, not a trap laid by another. */
	if (lstat(ublk_state_dir(), &st) || !S_ISDIR(st.st_mode) || st.st_uid != geteuid())
		return -EPERM;
	return 0;
}

/* Serializes the writes of this process's threads (ublk_state_update()). */
static pthread_mutex_t ublk_state_lock = PTHREAD_MUTEX_INITIALIZER;

static int ublk_state_write_locked(const struct ublk_state *s)
{
	char path[PATH_MAX], tmp[PATH_MAX + 8];
	unsigned int k;
	FILE *f;
	int ret;

	ret = ublk_state_mkdir();
	if (ret)
		return ret;
	ublk_state_path(s->id, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return -errno;
	fprintf(f, "id=%u\ntarget=%s\nfile=%s\nqueues=%u\ndepth=%u\npid=%d\nread_only=%d\n"
		"open_flags=%u\nsize=%llu\nrecoverable=%d\nbacking_policy=%u\n"
		"l2_cache=%llu\n",
		s->id, s->target, s->file, s->queues, s->depth, (int)s->pid,
		s->read_only, s->open_flags, (unsigned long long)s->size_bytes,
		s->recoverable, s->backing_policy, (unsigned long long)s->l2_cache_bytes);
	fprintf(f, "discard_ignore=%d\ncopy_on_read=%d\nthrottle_burst_ms=%u\nunprivileged=%d\n"
		"pinned=%llu\nwerror=%s\nrerror=%s\n",
		s->discard_ignore, s->copy_on_read, s->throttle_burst_ms, s->unprivileged,
		(unsigned long long)s->pinned_bytes, blk_err_action_name(s->werror),
		blk_err_action_name(s->rerror));
	if (s->snapshot[0])
		fprintf(f, "snapshot=%s\n", s->snapshot);
	if (s->job[0])
		fprintf(f, "job=%s\n", s->job);
	if (s->name[0])
		fprintf(f, "name=%s\n", s->name);
	if (s->key_files[0])
		fprintf(f, "key_files=%s\n", s->key_files);
	fprintf(f, "allow_protocols=%u\nnbd_reconnect_ms=%u\nnbd_open_timeout_ms=%u\n",
		s->allow_protocols, s->nbd_reconnect_ms, s->nbd_open_timeout_ms);
	if (s->rbd_conf[0])
		fprintf(f, "rbd_conf=%s\n", s->rbd_conf);
	if (s->rbd_id[0])
		fprintf(f, "rbd_id=%s\n", s->rbd_id);
	for (k = 0; k < THR_NR; k++)
		fprintf(f, "throttle%u=%llu\n", k, (unsigned long long)s->throttle[k]);
	if (fflush(f) || ferror(f))
		ret = -EIO;
	if (fclose(f) && !ret)
		ret = -errno;
	/* rename() so a reader never sees half a file. */
	if (!ret && rename(tmp, path))
		ret = -errno;
	if (ret)
		unlink(tmp);
	return ret;
}

int ublk_state_write(const struct ublk_state *s)
{
	int ret;

	pthread_mutex_lock(&ublk_state_lock);
	ret = ublk_state_write_locked(s);
	pthread_mutex_unlock(&ublk_state_lock);
	return ret;
}

int ublk_state_update(unsigned int id, int (*fn)(struct ublk_state *s, void *ctx), void *ctx)
{
	struct ublk_state s;
	int ret;

	pthread_mutex_lock(&ublk_state_lock);
	ret = ublk_state_read(id, &s);
	if (!ret)
		ret = fn(&s, ctx);
	if (!ret)
		ret = ublk_state_write_locked(&s);
	pthread_mutex_unlock(&ublk_state_lock);
	return ret;
}

int ublk_state_read(unsigned int id, struct ublk_state *s)
{
	char path[PATH_MAX], line[PATH_MAX + 32];
	unsigned int k;
	FILE *f;

	ublk_state_path(id, path, sizeof(path));
	f = fopen(path, "r");
	if (!f)
		return -errno;
	memset(s, 0, sizeof(*s));
	s->id = id;
	/* What an older server, which wrote no policy, did. */
	s->werror = BLK_ERR_REPORT;
	s->rerror = BLK_ERR_REPORT;
	/* Written by a server from before --pinned-buffers: its default. */
	s->pinned_bytes = UBLK_DEF_PINNED_BYTES;
	while (fgets(line, sizeof(line), f)) {
		char *v = strchr(line, '=');

		if (!v)
			continue;
		*v++ = '\0';
		v[strcspn(v, "\n")] = '\0';
		if (!strcmp(line, "target"))
			snprintf(s->target, sizeof(s->target), "%s", v);
		else if (!strcmp(line, "file"))
			snprintf(s->file, sizeof(s->file), "%s", v);
		else if (!strcmp(line, "queues"))
			s->queues = strtoul(v, NULL, 10);
		else if (!strcmp(line, "depth"))
			s->depth = strtoul(v, NULL, 10);
		else if (!strcmp(line, "pid"))
			s->pid = strtol(v, NULL, 10);
		else if (!strcmp(line, "read_only"))
			s->read_only = atoi(v);
		else if (!strcmp(line, "open_flags"))
			s->open_flags = strtoul(v, NULL, 10);
		else if (!strcmp(line, "size"))
			s->size_bytes = strtoull(v, NULL, 10);
		else if (!strcmp(line, "recoverable"))
			s->recoverable = atoi(v);
		else if (!strcmp(line, "backing_policy"))
			s->backing_policy = strtoul(v, NULL, 10);
		else if (!strcmp(line, "snapshot"))
			snprintf(s->snapshot, sizeof(s->snapshot), "%s", v);
		else if (!strcmp(line, "job"))
			snprintf(s->job, sizeof(s->job), "%s", v);
		else if (!strcmp(line, "name"))
			snprintf(s->name, sizeof(s->name), "%s", v);
		else if (!strcmp(line, "key_files"))
			snprintf(s->key_files, sizeof(s->key_files), "%s", v);
		else if (!strcmp(line, "allow_protocols"))
			s->allow_protocols = strtoul(v, NULL, 10);
		else if (!strcmp(line, "nbd_reconnect_ms"))
			s->nbd_reconnect_ms = strtoul(v, NULL, 10);
		else if (!strcmp(line, "nbd_open_timeout_ms"))
			s->nbd_open_timeout_ms = strtoul(v, NULL, 10);
		else if (!strcmp(line, "rbd_conf"))
			snprintf(s->rbd_conf, sizeof(s->rbd_conf), "%s", v);
		else if (!strcmp(line, "rbd_id"))
			snprintf(s->rbd_id, sizeof(s->rbd_id), "%s", v);
		else if (!strcmp(line, "l2_cache"))
			s->l2_cache_bytes = strtoull(v, NULL, 10);
		else if (!strcmp(line, "discard_ignore"))
			s->discard_ignore = atoi(v);
		else if (!strcmp(line, "copy_on_read"))
			s->copy_on_read = atoi(v);
		else if (!strcmp(line, "unprivileged"))
			s->unprivileged = atoi(v);
		else if (!strcmp(line, "pinned"))
			s->pinned_bytes = strtoull(v, NULL, 10);
		else if (!strcmp(line, "werror"))
			blk_err_action_parse(v, &s->werror);
		else if (!strcmp(line, "rerror"))
			blk_err_action_parse(v, &s->rerror);
		else if (!strcmp(line, "throttle_burst_ms"))
			s->throttle_burst_ms = strtoul(v, NULL, 10);
		else if (sscanf(line, "throttle%u", &k) == 1 && k < THR_NR)
			s->throttle[k] = strtoull(v, NULL, 10);
	}
	fclose(f);
	return 0;
}

int ublk_state_remove(unsigned int id)
{
	char path[PATH_MAX];
	int ret;

	ublk_state_path(id, path, sizeof(path));
	ret = unlink(path) ? -errno : 0;
	/* A killed server's control socket goes with its state. */
	if (!ublk_ctl_path(id, path, sizeof(path)))
		unlink(path);
	return ret;
}

static int cmp_uint(const void *a, const void *b)
{
	unsigned int x = *(const unsigned int *)a, y = *(const unsigned int *)b;

	return (x > y) - (x < y);
}

int ublk_state_ids(unsigned int **ids)
{
	unsigned int *v = NULL, n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	*ids = NULL;
	d = opendir(ublk_state_dir());
	if (!d)
		return errno == ENOENT ? 0 : -errno;
	while ((de = readdir(d))) {
		uint64_t id;
		char *dot = strrchr(de->d_name, '.');

		if (!dot || strcmp(dot, ".state"))
			continue;
		*dot = '\0';
		if (parse_uint(de->d_name, 0, UINT32_MAX, &id))
			continue;
		if (n == cap) {
			unsigned int *nv;

			cap = cap ? 2 * cap : 16;
			nv = realloc(v, cap * sizeof(*v));
			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = id;
	}
	closedir(d);
	qsort(v, n, sizeof(*v), cmp_uint);
	*ids = v;
	return n;
}

int ublk_state_find_name(const char *name)
{
	unsigned int *ids;
	int n, i, ret = -ENOENT;

	n = ublk_state_ids(&ids);
	if (n < 0)
		return n;
	for (i = 0; i < n && ret < 0; i++) {
		struct ublk_state s;

		if (ublk_state_read(ids[i], &s) == 0 && !strcmp(s.name, name))
			ret = ids[i];
	}
	free(ids);
	return ret;
}
