// SPDX-License-Identifier: GPL-2.0
/*
 * notify-recv SOCKET NPARTS TIMEOUT_S CMD [ARG...]: plays systemd for a
 * Type=notify service in the VM, where there is no systemd (nor python):
 * binds a Unix datagram socket at SOCKET, runs CMD with NOTIFY_SOCKET set
 * to it, and at the moment READY=1 arrives checks that the device its
 * STATUS names ("serving /dev/ublkbN") and partitions 1..NPARTS open.
 * Prints "ready DEV" and one line per missing node, then CMD's pid, and
 * leaves CMD running.  Exits 0 if all nodes opened, 1 if not, 2 if READY
 * never came within TIMEOUT_S or CMD ended first.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	int fd, nparts, timeout_ms, missing = 0, i;
	char msg[4096], node[128];
	const char *dev;
	pid_t pid;

	if (argc < 5) {
		fprintf(stderr, "usage: notify-recv SOCKET NPARTS TIMEOUT_S CMD [ARG...]\n");
		return 2;
	}
	nparts = atoi(argv[2]);
	timeout_ms = atoi(argv[3]) * 1000;
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", argv[1]);
	unlink(argv[1]);
	if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr))) {
		perror("notify-recv: socket");
		return 2;
	}
	setenv("NOTIFY_SOCKET", argv[1], 1);
	pid = fork();
	if (pid == 0) {
		execvp(argv[4], argv + 4);
		perror("notify-recv: exec");
		_exit(127);
	}
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;
		char *st;

		if (poll(&pfd, 1, 100) == 1) {
			n = recv(fd, msg, sizeof(msg) - 1, 0);
			if (n <= 0)
				continue;
			msg[n] = '\0';
			if (!strstr(msg, "READY=1"))
				continue;
			st = strstr(msg, "STATUS=serving ");
			if (!st)
				break;
			dev = st + strlen("STATUS=serving ");
			*(st + strcspn(st, "\n")) = '\0';
			/* Now, before anything else: what exists at READY=1. */
			for (i = 0; i <= nparts; i++) {
				int nfd;

				if (i)
					snprintf(node, sizeof(node), "%sp%d", dev, i);
				else
					snprintf(node, sizeof(node), "%s", dev);
				nfd = open(node, O_RDONLY | O_CLOEXEC);
				if (nfd < 0) {
					printf("missing %s: %s\n", node, strerror(errno));
					missing++;
				} else {
					close(nfd);
				}
			}
			printf("ready %s\npid %d\n", dev, (int)pid);
			return missing ? 1 : 0;
		}
		timeout_ms -= 100;
		if (timeout_ms <= 0 || waitpid(pid, NULL, WNOHANG) == pid)
			break;
	}
	printf("no READY=1\n");
	kill(pid, SIGTERM);
	return 2;
}
