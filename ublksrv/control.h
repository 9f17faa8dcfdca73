/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The control channel of a running device: a Unix socket speaking QMP's
 * shape (one JSON object per line: a greeting, then
 * {"execute", "arguments", "id"} requests answered by {"return"} or
 * {"error"}, and asynchronous {"event"} lines), served by one thread per
 * device.  docs/control.md describes the protocol and every command.
 *
 * Adding a command is one entry in a table of struct ctl_cmd: its name,
 * its arguments (checked before the handler runs), a handler and a line
 * of help.  The device's table is in control_cmds.c.
 */
#ifndef IMGBLK_CONTROL_H
#define IMGBLK_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "util.h"

/* imgblk's version, as the greeting and query-version report it. */
#define IMGBLK_VERSION_MAJOR	0
#define IMGBLK_VERSION_MINOR	1
#define IMGBLK_VERSION_MICRO	0

/* The longest request line, without its newline. */
#define CTL_LINE_MAX		(64 * 1024)
/* Output waiting for a client that does not read; past it, it is dropped. */
#define CTL_OUT_MAX		(1024 * 1024)
/* Clients served at once; more are told so and closed. */
#define CTL_MAX_CLIENTS		128
/* Nesting of JSON input (json-c's own default). */
#define CTL_MAX_DEPTH		32
/* Arguments a command may declare. */
#define CTL_MAX_ARGS		16

/* The JSON type an argument must have. */
enum ctl_type {
	CTL_STR = 1,		/* a string without NUL characters */
	CTL_INT,		/* an integer (int64; larger values saturate) */
	CTL_BOOL,
	CTL_NUM,		/* an integer or a finite fraction */
	CTL_OBJ,
	CTL_ARRAY,
};

/* The error classes of QMP that imgblk uses. */
enum ctl_class {
	CTL_GENERIC_ERROR,	/* "GenericError": everything else */
	CTL_COMMAND_NOT_FOUND,	/* "CommandNotFound" */
};

struct ctl_arg {
	const char *name;	/* NULL ends the list */
	enum ctl_type type;
	bool required;
};

struct ctl_call;

struct ctl_cmd {
	const char *name;
	/*
	 * Runs on the control thread, one request at a time, with
	 * @call->args already checked against @args: every member is
	 * declared and has its type, every required one is there.  Returns
	 * 0 with @call->ret set to the result (a new reference; NULL gives
	 * {}), or -errno, the reason set by ctl_fail() (without it the reply
	 * is a GenericError with strerror()).  Other clients wait while it
	 * runs: a handler may block briefly (a drain), never indefinitely.
	 * It may call ctl_event().  Numbers in the result must be finite.
	 */
	int (*handler)(struct ctl_call *call);
	struct ctl_arg args[CTL_MAX_ARGS];
	const char *help;
};

/*
 * The commands a server offers besides the built-in ones (qmp_capabilities,
 * query-version, query-commands), and what their handlers get as
 * @call->ctx.
 */
struct ctl_table {
	const struct ctl_cmd *cmds;
	size_t nr_cmds;
	void *ctx;
};

struct ctl_call {
	const struct ctl_cmd *cmd;
	const struct ctl_table *table;
	struct json_object *args;	/* the checked arguments; never NULL */
	void *ctx;			/* @table->ctx */
	bool *negotiated;		/* the session's (qmp_capabilities sets it) */
	struct json_object *ret;	/* set by the handler */
	enum ctl_class err_class;
	char err_desc[256];
};

/*
 * Records why @call failed, in the class given.  Returns @err (a
 * -errno), so that a handler can `return ctl_fail(call, -EBUSY, ...)`.
 */
int ctl_fail(struct ctl_call *call, int err, const char *fmt, ...) __printf(3, 4);
int ctl_fail_class(struct ctl_call *call, enum ctl_class cls, int err,
		   const char *fmt, ...) __printf(4, 5);

/* The argument @name of @call, or NULL if not given. */
struct json_object *ctl_arg(const struct ctl_call *call, const char *name);
/* Typed arguments: @def when not given (the type is already checked). */
const char *ctl_arg_str(const struct ctl_call *call, const char *name, const char *def);
int64_t ctl_arg_int(const struct ctl_call *call, const char *name, int64_t def);
bool ctl_arg_bool(const struct ctl_call *call, const char *name, bool def);

/*
 * One client's view of the protocol, without any I/O: the line being
 * received, and whether capabilities were negotiated.  The server keeps
 * one per connection; the fuzz target drives one directly.
 */
struct ctl_session {
	const struct ctl_table *table;
	bool negotiated;
	/* The line received so far, and whether the rest of a too long one is skipped. */
	char *line;
	size_t len, cap;
	bool skipping;
};

/* Called with each reply, which it must consume (json_object_put()). */
typedef void (*ctl_emit_fn)(void *arg, struct json_object *reply);

/* Prepares @s for a client of @table.  Cannot fail. */
void ctl_session_init(struct ctl_session *s, const struct ctl_table *table);

/*
 * Takes @n bytes received from the client: each complete line is run and
 * its reply (if it has one: blank lines have none) passed to @emit.  A
 * line longer than CTL_LINE_MAX gets an error reply and is skipped up to
 * its newline; the lines after it are served.  Returns 0, or -ENOMEM (the
 * client should be dropped).
 */
int ctl_session_feed(struct ctl_session *s, const char *buf, size_t n,
		     ctl_emit_fn emit, void *arg);

/* The client closed its side: a last line without a newline is run. */
void ctl_session_eof(struct ctl_session *s, ctl_emit_fn emit, void *arg);

void ctl_session_free(struct ctl_session *s);

/*
 * Runs one request line (@len bytes, no newline) for @s.  Returns the
 * reply (the caller's reference), or NULL for a blank line.
 */
struct json_object *ctl_dispatch(struct ctl_session *s, const char *line, size_t len);

/* Serialises @obj as the protocol sends it: one line, no newline. */
const char *ctl_to_string(struct json_object *obj);

struct ctl_server;

/*
 * Listens on @path (mode 0600, owned by our effective user; a stale
 * socket of a dead server there is replaced, anything else refused) and
 * serves @table (copied; its commands must outlive the server) from a
 * new thread.
 * Returns 0 with *@out set, or -errno after printing why.
 */
int ctl_server_start(struct ctl_server **out, const char *path,
		     const struct ctl_table *table);

/*
 * Sends what is pending to each client (for a bounded time), closes the
 * connections, removes the socket and ends the thread.  NULL is a no-op.
 */
void ctl_server_stop(struct ctl_server *srv);

/*
 * Sends event @name with @data (consumed; NULL gives {}) to every client
 * that negotiated capabilities.  Safe from any thread, including a
 * handler; never waits for a client: one whose output would pass
 * CTL_OUT_MAX is dropped.  @srv NULL: only @data is released.
 */
void ctl_event(struct ctl_server *srv, const char *name, struct json_object *data);

/* The client side. */
struct ctl_client;

/* Connects a socket to @path, nothing more.  Returns the fd or -errno. */
int ctl_connect(const char *path);

/*
 * Connects to the control socket at @path, reads the greeting and
 * negotiates capabilities.  Returns 0 with *@out set, or -errno
 * (-EPROTO: not a QMP server, or it refused).
 */
int ctl_client_connect(const char *path, struct ctl_client **out);

/* ctl_client_connect() to device @id's socket.  Returns 0 or -errno. */
int ctl_client_open(unsigned int id, struct ctl_client **out);

/*
 * Runs command @cmd with @args (borrowed; NULL: none) and waits up to
 * @timeout_ms (-1: forever) for its reply; events arriving meanwhile are
 * kept (the last 32) for ctl_client_next().  Returns 0 with *@ret the "return" value, -EREMOTEIO with
 * *@ret the "error" object (class, desc), or another -errno with *@ret
 * NULL.  The caller puts *@ret.
 */
int ctl_client_call(struct ctl_client *c, const char *cmd, struct json_object *args,
		    int timeout_ms, struct json_object **ret);

/*
 * Waits up to @timeout_ms (-1: forever) for the next line from the
 * server (an event, between calls).  Returns 0 with *@obj (the caller
 * puts it), -ETIMEDOUT, -ECONNRESET when the server closed, or -errno.
 */
int ctl_client_next(struct ctl_client *c, int timeout_ms, struct json_object **obj);

void ctl_client_close(struct ctl_client *c);

/*
 * block_set_io_throttle's argument for each enum throttle_kind (QEMU's
 * names: bps, bps_rd, ... iops_wr).
 */
extern const char *const ublk_thr_args[];

/* The snapshot commands of a device (control_snap.c), served beside the others. */
#define UBLK_CTL_SNAP_CMDS	4
extern const struct ctl_cmd ublk_ctl_snap_cmds[UBLK_CTL_SNAP_CMDS];

/*
 * The device's control channel (control_cmds.c): serves the device's
 * commands on ublk_ctl_path(@dev's id) and sends its block layer's events
 * there.  Sets @dev->ctl.  Returns 0 or -errno after printing why.
 */
struct ublk_dev;
int ublk_ctl_start(struct ublk_dev *dev);

/* The block job commands (control_jobs.c), served beside the device's. */
#define UBLK_JOB_CMDS	10
extern const struct ctl_cmd ublk_job_cmds[UBLK_JOB_CMDS];
/* Sends @dev's block job events to its control channel. */
void ublk_job_events_start(struct ublk_dev *dev);

/*
 * Announces SHUTDOWN to the clients, then ctl_server_stop().  After the
 * queue threads ended.  No-op when it was not started.
 */
void ublk_ctl_stop(struct ublk_dev *dev);

#endif
