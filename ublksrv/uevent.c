// SPDX-License-Identifier: GPL-2.0
/*
 * Readiness: learn from the kernel's uevents (NETLINK_KOBJECT_UEVENT) that
 * the block device was added, instead of polling /dev.
 */
#include <errno.h>
#include <netlink/netlink.h>
#include <netlink/socket.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "uevent.h"
#include "util.h"

/* Multicast group of uevents sent by the kernel itself (not udev's). */
#define UEVENT_GROUP_KERNEL	1

int uevent_open(struct uevent_listener *u)
{
	int ret;

	u->sk = nl_socket_alloc();
	if (!u->sk)
		return -ENOMEM;
	/* Uevents carry no netlink sequence numbers. */
	nl_socket_disable_seq_check(u->sk);
	ret = nl_connect(u->sk, NETLINK_KOBJECT_UEVENT);
	if (ret < 0)
		goto err;
	ret = nl_socket_add_membership(u->sk, UEVENT_GROUP_KERNEL);
	if (ret < 0)
		goto err;
	ret = nl_socket_set_nonblocking(u->sk);
	if (ret < 0)
		goto err;
	return 0;
err:
	img_err("uevent socket: %s", nl_geterror(ret));
	nl_socket_free(u->sk);
	u->sk = NULL;
	return -EIO;
}

void uevent_close(struct uevent_listener *u)
{
	nl_socket_free(u->sk);
	u->sk = NULL;
}

/*
 * A uevent is "ACTION@DEVPATH" followed by NUL-separated KEY=VALUE pairs.
 * Returns true if it announces the addition of block device @devname.
 */
bool uevent_is_block_add(const char *msg, size_t len, const char *devname)
{
	bool add = false, block = false, name = false;
	const char *p = msg, *end = msg + len;
	size_t n = strlen(devname);

	while (p < end) {
		size_t l = strnlen(p, end - p);

		if (l == 10 && !memcmp(p, "ACTION=add", 10))
			add = true;
		else if (l == 15 && !memcmp(p, "SUBSYSTEM=block", 15))
			block = true;
		else if (l == 8 + n && !memcmp(p, "DEVNAME=", 8) &&
			 !memcmp(p + 8, devname, n))
			name = true;
		p += l + 1;
	}
	return add && block && name;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int uevent_wait_block_adds(struct uevent_listener *u, char *const *names,
			   bool *seen, unsigned int n, int timeout_ms)
{
	int64_t deadline = now_ms() + timeout_ms;
	struct pollfd pfd = { .fd = nl_socket_get_fd(u->sk), .events = POLLIN };
	unsigned int left_names = 0, i;

	for (i = 0; i < n; i++)
		left_names += !seen[i];
	while (left_names) {
		int64_t left = deadline - now_ms();
		struct sockaddr_nl peer;
		unsigned char *buf = NULL;
		int len, ret;

		if (left <= 0)
			return -ETIMEDOUT;
		ret = poll(&pfd, 1, left);
		if (ret < 0 && errno != EINTR)
			return -errno;
		if (ret <= 0)
			continue;
		len = nl_recv(u->sk, &peer, &buf, NULL);
		if (len == -NLE_AGAIN)
			continue;
		if (len < 0)
			return -EIO;
		/* Only the kernel (port 0) speaks for devices; ignore forgeries. */
		for (i = 0; peer.nl_pid == 0 && i < n; i++) {
			if (!seen[i] && uevent_is_block_add((char *)buf, len, names[i])) {
				seen[i] = true;
				left_names--;
				break;
			}
		}
		free(buf);
	}
	return 0;
}

int uevent_wait_block_add(struct uevent_listener *u, const char *devname,
			  int timeout_ms)
{
	char *names[1] = { (char *)devname };
	bool seen[1] = { false };

	return uevent_wait_block_adds(u, names, seen, 1, timeout_ms);
}
