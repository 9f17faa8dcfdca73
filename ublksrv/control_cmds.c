// SPDX-License-Identifier: GPL-2.0
/*
 * The device's control channel: its command table and the start and stop
 * that server.c calls.  A device command is one entry of ublk_ctl_cmds[]
 * (control.h, struct ctl_cmd); its handler gets the struct ublk_dev as
 * @call->ctx.  docs/control.md documents each command.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "control.h"
#include "state.h"
#include "ublk.h"
#include "util.h"

/* Whether the device serves requests: it always does while its server runs. */
static int ublk_ctl_query_status(struct ctl_call *call)
{
	struct json_object *r = json_object_new_object();

	json_object_object_add(r, "running", json_object_new_boolean(true));
	json_object_object_add(r, "status", json_object_new_string("running"));
	call->ret = r;
	return 0;
}

static const struct ctl_cmd ublk_ctl_cmds[] = {
	{
		.name = "query-status",
		.handler = ublk_ctl_query_status,
		.help = "whether the device serves requests",
	},
};

int ublk_ctl_start(struct ublk_dev *dev, struct ctl_server **out)
{
	struct ctl_table table = {
		.cmds = ublk_ctl_cmds,
		.nr_cmds = ARRAY_SIZE(ublk_ctl_cmds),
		.ctx = dev,
	};
	char path[PATH_MAX];
	int ret;

	ret = ublk_state_mkdir();
	if (ret) {
		img_err("%s: %s", ublk_state_dir(), strerror(-ret));
		return ret;
	}
	ret = ublk_ctl_path(dev->info.dev_id, path, sizeof(path));
	if (ret) {
		img_err("the control socket's path in %s is too long for a socket",
			ublk_state_dir());
		return ret;
	}
	return ctl_server_start(out, path, &table);
}

void ublk_ctl_stop(struct ctl_server *srv)
{
	ctl_event(srv, "SHUTDOWN", NULL);
	ctl_server_stop(srv);
}
