// SPDX-License-Identifier: GPL-2.0
/*
 * The one description of imgblk's command line: every verb with its
 * summary, usage, options and their help, operands, examples and exit
 * statuses.  cli_parse() (cli.c) parses from it, `--help` prints it, and
 * `imgblk __gen man|bash` (cli_gen.c) makes the man page and the bash
 * completion of it, so a verb or option added here appears in all four.
 *
 * How to add an option: one line in the verb's .opts below,
 *	{ KEY, "long-name", "ARG", "what it does" },
 * where KEY is the option's letter (its short form, -K) or, for a long
 * option only, a name in enum cli_key (ublksrv/cli.h; add one at the
 * end if no existing key means the same thing); "ARG" is NULL for a
 * flag, and names the value as help shows it ("a|b|c" lists the choices,
 * ID completes device ids, FILE file names).  Then one `case KEY:` in the
 * verb's option callback (the *_opt() function in its cmd_*.c), which
 * stores or checks the value (returning -EINVAL after one img_err() line
 * when it is bad), and the code that uses it.  Mention it in .synopsis.
 *
 * How to add a verb: one entry below (name, summary, synopsis, operands,
 * min_args/max_args, desc, opts, examples, exits, flags: CLI_IMAGE for an
 * image verb, whose usage errors exit 1 as qemu-img's do), and in its
 * cmd_*.c a handler declared in cli.h:
 *
 *	int cli_cmd_foo(const struct cli_cmd *cmd, int argc, char **argv)
 *	{
 *		struct foo_ctx c = { defaults };
 *		struct cli_args a;
 *		int ret = cli_parse(cmd, argc, argv, foo_opt, &c, &a);
 *
 *		if (ret)
 *			return cli_parse_status(cmd, ret);
 *		... a.argv[0 .. a.argc) are the operands, already counted ...
 *	}
 *
 * Checks that span options ("give -n or -a") report with cli_usage_err()
 * so they read like the parser's own.  Nothing else needs editing.
 */
#include "cli.h"
#include "util.h"

/* The options several verbs share, spelt the same everywhere. */
#define OPT_FORMAT	{ 'f', "format", "FMT", "the image's format (default: detected)" }
#define OPT_FORCE_SHARE	{ 'U', "force-share", NULL, \
	"open the image even if another process writes it (as qemu-img -U; " \
	"its content may be changing)" }
#define OPT_OUTPUT	{ CLI_K_OUTPUT, "output", "human|json", \
	"the output format (default human)" }
#define OPT_QUIET	{ 'q', "quiet", NULL, "print nothing but errors" }
#define OPT_PROGRESS	{ 'p', "progress", NULL, "show progress" }
#define OPT_NUMBER	{ 'n', "number", "ID", "the device" }
#define OPT_CREATE_O	{ 'o', "options", "OPTIONS", \
	"creation options of the format, KEY=VALUE[,KEY=VALUE...] (see imgblk create --help)" }
#define OPT_THROTTLE(what) \
	{ CLI_K_THROTTLE + THR_BPS_TOTAL, "bps-total", "BYTES_PER_S", \
	  "limit reads and writes together to BYTES_PER_S (suffixes K, M, G)" what }, \
	{ CLI_K_THROTTLE + THR_BPS_READ, "bps-read", "BYTES_PER_S", \
	  "limit reads to BYTES_PER_S" what }, \
	{ CLI_K_THROTTLE + THR_BPS_WRITE, "bps-write", "BYTES_PER_S", \
	  "limit writes to BYTES_PER_S" what }, \
	{ CLI_K_THROTTLE + THR_IOPS_TOTAL, "iops-total", "N", \
	  "limit reads and writes together to N requests per second" what }, \
	{ CLI_K_THROTTLE + THR_IOPS_READ, "iops-read", "N", \
	  "limit reads to N requests per second" what }, \
	{ CLI_K_THROTTLE + THR_IOPS_WRITE, "iops-write", "N", \
	  "limit writes to N requests per second" what }, \
	{ CLI_K_BURST, "throttle-burst-ms", "MS", \
	  "bursts up to MS milliseconds worth of a rate go through at once (default 100)" }
/* cli_parse() acts on these two groups itself (cli_opt_shared()); the verb need not. */
#define OPT_SECRETS \
	{ CLI_K_KEY_FILE, "key-file", "[IMAGE=]FILE", \
	  "the passphrase of an encrypted image (of IMAGE, a backing file, when " \
	  "named): FILE's whole content" }, \
	{ CLI_K_OBJECT, "object", "secret,id=ID,file=FILE", \
	  "a passphrase for -o encrypt.key-secret=ID, as QEMU's" }
#define OPT_PROTOCOLS \
	{ CLI_K_ALLOW_PROTOCOL, "allow-protocol", "LIST", \
	  "what a backing or data file named inside an image may be: file, nbd, rbd, " \
	  "comma-separated (default all); an untrusted image then cannot make us connect " \
	  "anywhere" }, \
	{ CLI_K_RECONNECT_DELAY, "reconnect-delay", "SECONDS", \
	  "NBD: when a connection is lost, hold requests up to SECONDS while connecting " \
	  "again, then reissue them (default 0: they fail)" }, \
	{ CLI_K_OPEN_TIMEOUT, "open-timeout", "SECONDS", \
	  "NBD: retry a refused connection at open for up to SECONDS (default 0: once)" }, \
	{ CLI_K_RBD_CONF, "rbd-conf", "FILE", \
	  "RBD: the Ceph config for names without conf= (default: Ceph's, " \
	  "/etc/ceph/ceph.conf)" }, \
	{ CLI_K_RBD_ID, "rbd-id", "USER", \
	  "RBD: the Ceph client id for names without id= (default: admin)" }
#define OPT_WERROR(what) \
	{ CLI_K_WERROR, "werror", "enospc|stop|report|ignore", what }
#define OPT_RERROR(what) \
	{ CLI_K_RERROR, "rerror", "stop|report|ignore", what }
/* The block job verbs' (cmd_job.c). */
#define OPT_SPEED	{ CLI_K_SPEED, "speed", "BYTES_PER_S", \
	"limit the copy to BYTES_PER_S (suffixes K, M, G; at least one cluster a " \
	"second; 0: no limit)" }
#define OPT_JOB_ID	{ CLI_K_JOB_ID, "job-id", "JOB", \
	"name the job JOB (default: the device's name, ublkbN)" }
#define OPT_JOB_PROGRESS { 'p', "progress", NULL, "wait as --wait does, showing the progress" }
#define JOB_EXITS \
	.exits = (const struct cli_exit[]){ \
		{ 0, "the job started (with --wait: completed, or became ready)" }, \
		{ 1, "the job could not start, failed or was cancelled, or the server went away" }, \
		{ 2, "a usage error" }, \
		{ -1, NULL }, \
	}

const struct cli_cmd cli_cmds[] = {
	{
		.name = "add",
		.summary = "serve an image as /dev/ublkbN",
		.synopsis =
"[-t TYPE] [-f FILE] [-n ID] [-q QUEUES] [-d DEPTH] [-r] [--buffered] [--size SIZE] "
"[--backing=any|same-dir|none] [--l2-cache-size SIZE] [--discard=ignore|unmap] "
"[--copy-on-read] [--bps-total|--bps-read|--bps-write BYTES_PER_S] "
"[--iops-total|--iops-read|--iops-write N] [--throttle-burst-ms MS] "
"[--pinned-buffers SIZE] [--snapshot NAME] [--recoverable] "
"[--werror=enospc|stop|report|ignore] [--rerror=stop|report|ignore] [--foreground]"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]"
		" [--name NAME] [--log-level=err|warning|info|debug]\n"
"--tab [NAME] [--foreground] [--recoverable] [--log-level=LEVEL] [OPTIONS]",
		.operands = "[NAME] (with --tab)",
		.desc =
"Adds a ublk device served by TYPE and prints its path (/dev/ublkbN) once\n"
"the device and the partitions of its partition table are there; the\n"
"server then runs in the background until deleted, logging to syslog.\n"
"The server holds the image and its backing files locked as QEMU does, so\n"
"neither QEMU nor another imgblk may write them (nor read the image unless\n"
"both only read) while the device lives.  Without root, the device is an\n"
"unprivileged ublk device that only its owner controls.\n"
"\n"
"With --tab, the devices come from /etc/imgblk/imgblktab (see IMGBLKTAB in\n"
"imgblk(8)): all of them, or the one named NAME, each with its line's\n"
"options and then the other options given here.  A device already served\n"
"is left alone; a --recoverable one whose server died is recovered.  A bad\n"
"line or a device that does not come up is reported as FILE:LINE: why,\n"
"and the others still come up; the exit status is then 1.",
		.opts = (const struct cli_opt[]){
			{ 't', "type", "TYPE", "target: see `imgblk help` for the list; "
			  "without it the format of FILE is detected" },
			{ 'f', "file", "FILE", "the image file or block device" },
			{ 'n', "number", "ID", "device id (default: the first free one)" },
			{ 'q', "queues", "N", "hardware queues, one server thread each (default 1)" },
			{ 'd', "depth", "N", "requests in flight per queue, 1-4096 (default 128)" },
			{ 'r', "read-only", NULL, "the device refuses writes" },
			{ CLI_K_BUFFERED, "buffered", NULL,
			  "raw: use the host page cache instead of O_DIRECT" },
			{ CLI_K_SIZE, "size", "SIZE", "null: device size (suffixes K, M, G, T)" },
			{ CLI_K_BACKING, "backing", "any|same-dir|none",
			  "which backing files the image may name: any (the default, like "
			  "QEMU), same-dir (only in the image's own directory: for images from "
			  "untrusted sources), none (refuse images with a backing file)" },
			{ CLI_K_L2_CACHE, "l2-cache-size", "SIZE",
			  "qcow2/qed: L2 tables kept in memory (default: the whole image's, up "
			  "to 32M)" },
			{ CLI_K_SNAPSHOT, "snapshot", "NAME",
			  "qcow2: serve internal snapshot NAME (id or name), read-only" },
			{ CLI_K_DISCARD, "discard", "ignore|unmap",
			  "unmap (default): discards free space in the image; ignore: discards "
			  "succeed and change nothing" },
			{ CLI_K_COR, "copy-on-read", NULL,
			  "data read from the backing chain is written into the image, so it is "
			  "read from there next time" },
			OPT_THROTTLE(""),
			{ CLI_K_PINNED, "pinned-buffers", "SIZE",
			  "memory kept pinned for the device's I/O buffers, so the kernel need "
			  "not pin them for every request: faster I/O for more memory; 0 turns "
			  "it off (default 32M)" },
			OPT_WERROR("what a failed write, flush or discard does: enospc (default) "
				   "pauses the device when the host is out of space and fails "
				   "other errors; stop pauses on any error; report fails the "
				   "request; ignore completes it as done (the data is lost).  A "
				   "paused device holds its requests until `imgblk resume`"),
			OPT_RERROR("what a failed read does: report (default), stop, ignore"),
			{ CLI_K_RECOVERABLE, "recoverable", NULL,
			  "if the server dies, the device waits (QUIESCED) for `imgblk recover` "
			  "instead of failing its I/O" },
			{ CLI_K_FOREGROUND, "foreground", NULL,
			  "serve in this process; Ctrl-C deletes the device.  Under systemd "
			  "(Type=notify) it reports ready once the device and its partitions "
			  "are there" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ CLI_K_NAME, "name", "NAME",
			  "a stable name for the device: 1 to 63 letters, digits, '.', '_' or "
			  "'-'; the udev rule links /dev/disk/by-imgblk/NAME (and NAME-partN) "
			  "to it, and no other device may have it" },
			{ CLI_K_TAB, "tab", NULL,
			  "add the devices of /etc/imgblk/imgblktab ($IMGBLK_TAB), or the one "
			  "named by the operand NAME" },
			{ CLI_K_LOG_LEVEL, "log-level", "err|warning|info|debug",
			  "the server's messages shown (default info): on stderr in the "
			  "foreground, to syslog (the journal) in the background" },
			{ 0 },
		},
		.min_args = 0, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk add -f disk.qcow2 -q 2",
			  "serve disk.qcow2 (format detected) with two queues" },
			{ "imgblk add -t null --size 1G", "a 1 GiB device of zeros" },
			{ "imgblk add -f vm.qcow2 --recoverable --werror=stop",
			  "survive a server crash; pause on any write error" },
			{ "imgblk add -f vm.qcow2 --name vm",
			  "also as /dev/disk/by-imgblk/vm, its partitions vm-part1, ..." },
			{ "imgblk add --tab", "the devices of /etc/imgblk/imgblktab, as at boot" },
			{ 0 },
		},
		.run = cli_cmd_add,
	},
	{
		.name = "recover",
		.summary = "start a new server for a --recoverable device whose server died",
		.synopsis = "-n ID [--foreground]",
		.operands = "",
		.desc =
"The device must be QUIESCED (see imgblk list): its requests wait, and\n"
"those the dead server had taken are reissued to the new one.",
		.opts = (const struct cli_opt[]){
			OPT_NUMBER,
			{ CLI_K_FOREGROUND, "foreground", NULL, "serve in this process" },
			{ 0 },
		},
		.examples = (const struct cli_example[]){
			{ "imgblk recover -n 0", NULL },
			{ 0 },
		},
		.run = cli_cmd_recover,
	},
	{
		.name = "del",
		.summary = "delete a device and stop its server",
		.synopsis = "(-n ID | -a) [--force]\n--tab [NAME] [--force]",
		.operands = "[NAME] (with --tab)",
		.desc =
"A device whose disk or partition is mounted or open elsewhere is\n"
"refused, with one line naming the holder (\"/dev/ublkb0p1 is mounted on\n"
"/mnt\"), unless --force.  With --tab, the devices of imgblktab that are\n"
"attached, or the one named NAME; a bad line is reported and the others\n"
"are still deleted.",
		.opts = (const struct cli_opt[]){
			{ 'n', "number", "ID", "delete device ID" },
			{ 'a', "all", NULL, "delete every imgblk device" },
			{ CLI_K_FORCE, "force", NULL,
			  "delete it even while its disk or a partition is mounted or open (the "
			  "filesystem on it sees I/O errors)" },
			{ CLI_K_TAB, "tab", NULL,
			  "delete the devices of /etc/imgblk/imgblktab ($IMGBLK_TAB), or the "
			  "one named by the operand NAME" },
			{ 0 },
		},
		.min_args = 0, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk del -n 0", NULL },
			{ "imgblk del --tab web", "the device of imgblktab's line \"web ...\"" },
			{ 0 },
		},
		.run = cli_cmd_del,
	},
	{
		.name = "list",
		.summary = "list the devices and their servers",
		.synopsis = "[-n ID] [--json]",
		.operands = "",
		.desc =
"Shows id, target, queues, depth, state (LIVE, PAUSED, QUIESCED, DEAD),\n"
"server pid, device path and file of each device; under a PAUSED one, why.",
		.opts = (const struct cli_opt[]){
			{ 'n', "number", "ID", "only device ID" },
			{ CLI_K_JSON, "json", NULL, "machine-readable output" },
			{ 0 },
		},
		.run = cli_cmd_list,
	},
	{
		.name = "stats",
		.summary = "show a device's I/O statistics, once or every interval",
		.synopsis = "-n ID [--json] [--interval SEC [--count N]]",
		.operands = "",
		.desc =
"Counts of a running device since it was added (QEMU's query-blockstats):\n"
"operations, bytes, flushes, discards, failures, requests in flight and\n"
"mean latency, for the device and for each queue.  With --interval, one\n"
"line every SEC seconds with the rates over it, like iostat.",
		.opts = (const struct cli_opt[]){
			OPT_NUMBER,
			{ CLI_K_JSON, "json", NULL, "query-blockstats as JSON (with the latency "
			  "histograms); with --interval, one object a line" },
			{ CLI_K_INTERVAL, "interval", "SEC", "print every SEC seconds until interrupted" },
			{ CLI_K_COUNT, "count", "N", "stop after N intervals" },
			{ 0 },
		},
		.examples = (const struct cli_example[]){
			{ "imgblk stats -n 0 --interval 1", "iostat-like lines every second" },
			{ 0 },
		},
		.run = cli_cmd_stats,
	},
	{
		.name = "query",
		.summary = "show a running device: its state, settings and image chain",
		.synopsis = "-n ID [--json]",
		.operands = "",
		.opts = (const struct cli_opt[]){
			OPT_NUMBER,
			{ CLI_K_JSON, "json", NULL, "query-block and query-status as JSON" },
			{ 0 },
		},
		.run = cli_cmd_query,
	},
	{
		.name = "set",
		.summary = "change a running device's throttle limits or error policy",
		.synopsis =
"-n ID [--bps-total|--bps-read|--bps-write BYTES_PER_S] "
"[--iops-total|--iops-read|--iops-write N] [--throttle-burst-ms MS] "
"[--werror=enospc|stop|report|ignore] [--rerror=stop|report|ignore]",
		.operands = "",
		.desc =
"Limits given change (0 lifts one) within a tenth of a second; the others\n"
"stay.  The new settings are kept for `imgblk recover`.",
		.opts = (const struct cli_opt[]){
			OPT_NUMBER,
			OPT_THROTTLE("; 0 lifts the limit"),
			OPT_WERROR("what a failed write does: see imgblk add --help"),
			OPT_RERROR("what a failed read does"),
			{ 0 },
		},
		.examples = (const struct cli_example[]){
			{ "imgblk set -n 0 --iops-write 500", NULL },
			{ 0 },
		},
		.run = cli_cmd_set,
	},
	{
		.name = "pause",
		.summary = "hold a device's requests until resume",
		.synopsis = "-n ID",
		.operands = "",
		.desc = "Returns once the requests in flight are done; new ones wait (QMP stop).",
		.opts = (const struct cli_opt[]){ OPT_NUMBER, { 0 } },
		.run = cli_cmd_pause,
	},
	{
		.name = "resume",
		.summary = "resume a paused device, retrying the requests it holds",
		.synopsis = "-n ID",
		.operands = "",
		.desc =
"Ends a pause, whether `imgblk pause` or an error (--werror/--rerror)\n"
"caused it: requests held after an error are retried first, then new\n"
"ones go through (QMP cont).  A device that is not paused is an error.",
		.opts = (const struct cli_opt[]){ OPT_NUMBER, { 0 } },
		.run = cli_cmd_resume,
	},
	{
		.name = "backup",
		.summary = "point-in-time copy of a running device into an image",
		.synopsis = "-n ID --sync full|top|incremental|differential [--bitmap NAME] "
			    "[-b PREV] [-f FMT] [--existing] [--speed BYTES_PER_S] "
			    "[--job-id JOB] [--wait] [-p] TARGET",
		.operands = "the TARGET FILE",
		.desc =
"Starts a backup job on device ID (QMP drive-backup): TARGET receives the\n"
"device's content as of this moment while the device keeps serving I/O\n"
"(a guest write to a range not yet copied saves the old data first).\n"
"TARGET is created (format FMT, default the device's) unless --existing;\n"
"with --sync top only what the top image holds is copied, and TARGET gets\n"
"the top's backing file.\n"
"\n"
"--sync incremental copies only what the device's persistent bitmap NAME\n"
"marks, into a TARGET whose backing file is the previous backup (-b PREV\n"
"creates it so; or give one made with `imgblk create -b PREV` and\n"
"--existing): the chain of backups reads back each point in time.  The\n"
"bitmap records from the job's start: if the job succeeds it then marks\n"
"only what changed since, else it gets its old marks back too (QEMU's\n"
"bitmap sync on-success).  --sync differential keeps the old marks either\n"
"way (QEMU's sync=bitmap, bitmap-mode=never): each backup holds all that\n"
"changed since the bitmap was last cleared.  A bitmap that is disabled,\n"
"inconsistent (its server died) or busy is refused.",
		.opts = (const struct cli_opt[]){
			OPT_NUMBER,
			{ CLI_K_SYNC, "sync", "full|top|incremental|differential",
			  "full: the whole device; top: only what its top image holds; "
			  "incremental, differential: what --bitmap marks" },
			{ CLI_K_BITMAP, "bitmap", "NAME",
			  "the persistent bitmap of the device's top image that says what changed" },
			{ 'b', "backing", "PREV",
			  "create TARGET with the previous backup PREV as its backing file" },
			{ 'f', "format", "FMT", "TARGET's format (default: the device's top image's)" },
			{ CLI_K_EXISTING, "existing", NULL,
			  "TARGET exists already, as large as the device: write into it" },
			OPT_SPEED,
			OPT_JOB_ID,
			{ CLI_K_WAIT, "wait", NULL, "return when the job ends" },
			OPT_JOB_PROGRESS,
			{ 0 },
		},
		.min_args = 1, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk backup -n 0 --sync full --wait /backup/disk.qcow2",
			  "a copy of device 0 as it is now, while it serves" },
			{ "imgblk backup -n 0 --sync incremental --bitmap daily -b /backup/mon.qcow2 "
			  "--wait /backup/tue.qcow2",
			  "only what changed since Monday's backup, backed by it" },
			{ 0 },
		},
		JOB_EXITS,
		.run = cli_cmd_job_start,
	},
	{
		.name = "mirror",
		.summary = "copy a running device to an image, then switch to it",
		.synopsis = "-n ID [--sync full|top] [-f FMT] [--existing] [--speed BYTES_PER_S] "
			    "[--job-id JOB] [--wait] [--pivot] [-p] TARGET",
		.operands = "the TARGET FILE",
		.desc =
"Starts a mirror job on device ID (QMP drive-mirror): copies the device to\n"
"TARGET while it runs and keeps TARGET in step with new writes; the job is\n"
"then ready.  `imgblk job -n ID complete` switches the device to TARGET;\n"
"`imgblk job -n ID cancel` leaves TARGET a consistent copy of that moment.",
		.opts = (const struct cli_opt[]){
			OPT_NUMBER,
			{ CLI_K_SYNC, "sync", "full|top",
			  "full (the default): the whole device; top: only what its top image "
			  "holds, TARGET getting the top's backing file" },
			{ 'f', "format", "FMT", "TARGET's format (default: the device's top image's)" },
			{ CLI_K_EXISTING, "existing", NULL,
			  "TARGET exists already, as large as the device: write into it" },
			OPT_SPEED,
			OPT_JOB_ID,
			{ CLI_K_WAIT, "wait", NULL, "return once the job is ready" },
			{ CLI_K_PIVOT, "pivot", NULL,
			  "wait until ready, complete, and return once the device serves TARGET" },
			OPT_JOB_PROGRESS,
			{ 0 },
		},
		.min_args = 1, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk mirror -n 0 --pivot /fast/disk.qcow2",
			  "move device 0 to another image while it serves" },
			{ "imgblk mirror -n 0 --wait /fast/disk.qcow2 && imgblk job -n 0 complete",
			  "the same in two steps" },
			{ 0 },
		},
		JOB_EXITS,
		.run = cli_cmd_job_start,
	},
	{
		.name = "job",
		.summary = "list and control the block job of a running device",
		.synopsis = "-n ID [--speed BYTES_PER_S] [--force] [--wait] [-p] "
			    "[list|pause|resume|cancel|complete|wait|set-speed [JOB]]",
		.operands = "[list|pause|resume|cancel|complete|wait|set-speed [JOB]]",
		.desc =
"ACTION is one of:\n"
"\n"
"  list       the device's job: id, type, status, progress (the default)\n"
"  pause      stop copying until resume; guest I/O goes on\n"
"  resume     copy again\n"
"  cancel     stop the job (a ready mirror first makes its target a copy\n"
"             of that moment, unless --force)\n"
"  complete   switch a ready mirror or active commit to its target\n"
"  wait       block until the job ends\n"
"  set-speed  change the job's --speed\n"
"\n"
"JOB is the job's id (default: the device's only job).  With --wait,\n"
"cancel and complete return once the job has ended.",
		.opts = (const struct cli_opt[]){
			OPT_NUMBER,
			{ CLI_K_SPEED, "speed", "BYTES_PER_S",
			  "set-speed: the new limit (0: none)" },
			{ CLI_K_FORCE, "force", NULL,
			  "cancel: a ready mirror stops at once, its target left as it is" },
			{ CLI_K_WAIT, "wait", NULL, "cancel, complete: return when the job has ended" },
			{ 'p', "progress", NULL, "show the progress while waiting" },
			{ 0 },
		},
		.min_args = 0, .max_args = 2,
		.examples = (const struct cli_example[]){
			{ "imgblk job -n 0", "what device 0's job is doing" },
			{ "imgblk job -n 0 set-speed --speed 10M", NULL },
			{ "imgblk job -n 0 cancel --wait", NULL },
			{ 0 },
		},
		.exits = (const struct cli_exit[]){
			{ 0, "done (with wait or --wait: the job completed)" },
			{ 1, "no such job, the action was refused, the job failed or was "
			     "cancelled, or the server went away" },
			{ 2, "a usage error" },
			{ -1, NULL },
		},
		.run = cli_cmd_job,
	},
	{
		.name = "qmp",
		.summary = "run a command on a device's control channel",
		.synopsis =
"(-n ID | -s SOCKET) [--pretty] COMMAND [JSON_ARGS]\n"
"(-n ID | -s SOCKET) [--pretty] --events\n"
"(-n ID | -s SOCKET) --raw",
		.operands = "COMMAND [JSON_ARGS]",
		.desc =
"Talks to the control socket of a running device (docs/control.md):\n"
"runs COMMAND with JSON_ARGS (a JSON object) and prints what it returns;\n"
"an error reply is printed on stderr as CLASS: DESCRIPTION, exit status 1.\n"
"`imgblk qmp -n ID query-commands --pretty` lists the commands.",
		.opts = (const struct cli_opt[]){
			{ 'n', "number", "ID", "device ID's socket" },
			{ 's', "socket", "PATH", "the control socket at PATH" },
			{ CLI_K_PRETTY, "pretty", NULL, "indented output" },
			{ CLI_K_EVENTS, "events", NULL, "print the events as they come, one per "
			  "line, until the server goes away" },
			{ CLI_K_RAW, "raw", NULL, "send the lines of stdin as they are (no "
			  "negotiation) and print everything the server sends, until it closes" },
			{ 0 },
		},
		.min_args = 0, .max_args = 2,
		.examples = (const struct cli_example[]){
			{ "imgblk qmp -n 0 query-status", NULL },
			{ "imgblk qmp -n 0 --events", "BLOCK_IO_ERROR, STOP, RESUME, ... as they happen" },
			{ 0 },
		},
		.exits = (const struct cli_exit[]){
			{ 0, "the command succeeded" },
			{ 1, "an error reply, or the channel failed" },
			{ 2, "a usage error" },
			{ -1, NULL },
		},
		.run = cli_cmd_qmp,
	},
	{
		.name = "create",
		.summary = "create an image",
		.synopsis = "[-q] [-f FMT] [-b BACKING [-F BACKING_FMT]] [-o OPTIONS] FILE [SIZE]"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "FILE [SIZE]",
		.desc =
"Creates FILE of SIZE bytes (suffixes K, M, G, T; default: the backing\n"
"file's size).  OPTIONS is a comma-separated KEY=VALUE list; the keys\n"
"depend on the format (qcow2: cluster_size, compat, refcount_bits,\n"
"lazy_refcounts, preallocation, compression_type; qed: cluster_size,\n"
"table_size; raw: preallocation), plus backing_file and backing_fmt.",
		.opts = (const struct cli_opt[]){
			{ 'f', "format", "FMT", "the new image's format (default raw)" },
			{ 'b', "backing", "BACKING", "the backing file the image names" },
			{ 'F', "backing-format", "BACKING_FMT", "the backing file's format" },
			{ 'o', "options", "OPTIONS", "creation options, KEY=VALUE[,KEY=VALUE...]" },
			{ 'u', NULL, NULL, "accepted for qemu-img's sake (the backing file is "
			  "only read for its size anyway)" },
			OPT_QUIET,
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 1, .max_args = 2,
		.examples = (const struct cli_example[]){
			{ "imgblk create -f qcow2 disk.qcow2 10G", NULL },
			{ "imgblk create -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2",
			  "an overlay of base.qcow2, of its size" },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_create,
	},
	{
		.name = "info",
		.summary = "show an image's format, size and metadata",
		.synopsis = "[-f FMT] [-U] [--output=human|json] [--backing-chain] FILE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "FILE",
		.opts = (const struct cli_opt[]){
			OPT_FORMAT,
			OPT_OUTPUT,
			{ CLI_K_BACKING_CHAIN, "backing-chain", NULL,
			  "describe every image of the backing chain" },
			OPT_FORCE_SHARE,
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 1, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk info --output=json disk.qcow2", NULL },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_info,
	},
	{
		.name = "check",
		.summary = "check an image's metadata, optionally repair it",
		.synopsis = "[-q] [-f FMT] [-r leaks|all] [-U] [--output=human|json] FILE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "FILE",
		.opts = (const struct cli_opt[]){
			OPT_FORMAT,
			{ 'r', "repair", "leaks|all", "leaks: reclaim leaked clusters; all: also "
			  "repair corruptions (may lose data, and says so)" },
			OPT_OUTPUT,
			OPT_QUIET,
			{ 'U', "force-share", NULL,
			  "check an image another process may be writing (not with -r)" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 1, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk check disk.qcow2", NULL },
			{ "imgblk check -r leaks disk.qcow2", "reclaim leaked clusters" },
			{ 0 },
		},
		.exits = (const struct cli_exit[]){
			{ 0, "no errors" },
			{ 1, "the check itself failed, or a usage error" },
			{ 2, "corruptions" },
			{ 3, "leaked clusters only" },
			{ 63, "the format has no checks" },
			{ -1, NULL },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_check,
	},
	{
		.name = "map",
		.summary = "show where the image's data lives",
		.synopsis = "[-f FMT] [-U] [--output=human|json] [--bitmap NAME] FILE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "FILE",
		.opts = (const struct cli_opt[]){
			OPT_FORMAT,
			OPT_OUTPUT,
			OPT_FORCE_SHARE,
			{ CLI_K_BITMAP, "bitmap", "NAME",
			  "the runs dirty bitmap NAME marks instead: JSON lists every run as "
			  "{\"start\", \"length\", \"dirty\": true|false}, the human form the "
			  "dirty runs (Offset, Length)" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 1, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk map --output=json disk.qcow2", NULL },
			{ "imgblk map --bitmap inc0 disk.qcow2",
			  "what was written since bitmap inc0 was added or cleared" },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_map,
	},
	{
		.name = "convert",
		.summary = "copy an image's content into a new image",
		.synopsis =
"[-p] [-c] [-U] [-f FMT] [-O OUTPUT_FMT] [-o OPTIONS] [-l snapshot.name=NAME] "
"[--bitmaps [--skip-broken-bitmaps]] [--bitmap NAME] [-B BACKING [-F BACKING_FMT]] "
"INPUT OUTPUT"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "INPUT and OUTPUT",
		.opts = (const struct cli_opt[]){
			{ 'f', "format", "FMT", "INPUT's format (default: detected)" },
			{ 'O', "output-format", "OUTPUT_FMT", "output format (default raw)" },
			{ 'o', "options", "OPTIONS",
			  "creation options of the output format (see create)" },
			{ 'c', "compress", NULL, "compress the output's clusters (qcow2; -o "
			  "compression_type=zlib|zstd); clusters that do not shrink are stored plain" },
			{ 'l', "snapshot", "SNAPSHOT", "snapshot.name=NAME or snapshot.id=ID: copy "
			  "internal snapshot NAME of INPUT instead of its current state" },
			{ 's', NULL, "NAME", "the same as -l snapshot.name=NAME (as qemu-img)" },
			OPT_PROGRESS,
			{ 'q', "quiet", NULL, "no progress" },
			{ 'U', "force-share", NULL,
			  "read INPUT even if another process writes it (as qemu-img)" },
			{ CLI_K_BITMAPS, "bitmaps", NULL,
			  "copy INPUT's persistent dirty bitmaps (qcow2 to qcow2)" },
			{ CLI_K_SKIP_BROKEN, "skip-broken-bitmaps", NULL,
			  "with --bitmaps: leave out the inconsistent (in-use) bitmaps instead "
			  "of failing" },
			{ CLI_K_BITMAP, "bitmap", "NAME",
			  "copy only what INPUT's persistent bitmap NAME marks (an incremental "
			  "backup of a stopped image; not in qemu-img); NAME is left as it is" },
			{ 'B', "backing", "BACKING",
			  "OUTPUT's backing file (also -o backing_file=); zeros are then written "
			  "too, so OUTPUT reads as INPUT" },
			{ 'F', "backing-format", "BACKING_FMT",
			  "BACKING's format (also -o backing_fmt=; default: detected)" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 2, .max_args = 2,
		.examples = (const struct cli_example[]){
			{ "imgblk convert -O qcow2 -c disk.raw disk.qcow2",
			  "a compressed qcow2 copy of a raw image" },
			{ "imgblk convert -O qcow2 --bitmap daily -B mon.qcow2 disk.qcow2 tue.qcow2",
			  "what changed since Monday's backup, a qcow2 overlay of it" },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_convert,
	},
	{
		.name = "resize",
		.summary = "change an image's virtual size",
		.synopsis = "[-q] [-f FMT] [--shrink] FILE [+|-]SIZE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "FILE and [+|-]SIZE",
		.desc =
"SIZE sets the size; +SIZE and -SIZE change it.  Shrinking, which cuts\n"
"data off the end, needs --shrink.  Options come before FILE, so that\n"
"-SIZE is not taken for one.",
		.opts = (const struct cli_opt[]){
			OPT_FORMAT,
			{ CLI_K_SHRINK, "shrink", NULL, "allow the image to shrink" },
			OPT_QUIET,
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 2, .max_args = 2,
		.examples = (const struct cli_example[]){
			{ "imgblk resize disk.qcow2 +1G", NULL },
			{ 0 },
		},
		.flags = CLI_IMAGE | CLI_STOP,
		.run = cli_cmd_resize,
	},
	{
		.name = "rebase",
		.summary = "change the backing file an image names",
		.synopsis = "[-f FMT] [-u] [-p] -b BACKING [-F BACKING_FMT] FILE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "FILE",
		.desc =
"Makes FILE name BACKING (\"\" for none) as its backing file, with format\n"
"BACKING_FMT (without -F: detected).  By default FILE keeps reading what it\n"
"reads now: where FILE allocates nothing and the old backing chain reads\n"
"differently from the new one, the old chain's data is copied into FILE\n"
"first.  Both chains must be there.",
		.opts = (const struct cli_opt[]){
			OPT_FORMAT,
			{ 'b', "backing", "BACKING", "the new backing file (\"\" for none)" },
			{ 'F', "backing-format", "BACKING_FMT", "its format" },
			{ 'u', "unsafe", NULL, "record the new name and format only, copy no "
			  "data; the old backing file need not exist" },
			OPT_PROGRESS,
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 1, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk rebase -u -b new-base.qcow2 -F qcow2 overlay.qcow2", NULL },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_rebase,
	},
	{
		.name = "amend",
		.summary = "change an image's creation options",
		.synopsis = "[-q] [-f FMT] -o OPTIONS FILE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "FILE",
		.desc =
"qcow2: lazy_refcounts=on|off (compat=1.1 images).  compat= and\n"
"refcount_bits= are accepted when they match the image; changing them is\n"
"not supported yet.",
		.opts = (const struct cli_opt[]){
			OPT_FORMAT,
			{ 'o', "options", "OPTIONS", "the options to change, KEY=VALUE[,...]" },
			{ 'q', "quiet", NULL, "accepted for qemu-img's sake" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 1, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk amend -o lazy_refcounts=on disk.qcow2", NULL },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_amend,
	},
	{
		.name = "measure",
		.summary = "how large a new image of some format would be",
		.synopsis =
"[-O FMT] [-o OPTIONS] [--output=human|json] (--size SIZE | [-f FMT] [-U] FILE)"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "either --size SIZE or FILE",
		.desc =
"Prints the size a new FMT image (default raw) would need, as qemu-img\n"
"measure does: \"required size\" to hold FILE's content (or an empty image\n"
"of SIZE), \"fully allocated size\" with every cluster present, and for a\n"
"qcow2 FILE into qcow2 v3, \"bitmaps size\" for its persistent bitmaps.\n"
"OPTIONS are the create options of FMT (qcow2: cluster_size, compat,\n"
"refcount_bits, extended_l2, preallocation, backing_file...; qed:\n"
"cluster_size, table_size).",
		.opts = (const struct cli_opt[]){
			{ 'O', NULL, "FMT", "the new image's format (default raw)" },
			OPT_CREATE_O,
			{ CLI_K_SIZE, "size", "SIZE", "measure an empty image of SIZE" },
			OPT_FORMAT,
			OPT_OUTPUT,
			{ 'U', "force-share", NULL,
			  "read FILE even if another process writes it (as qemu-img)" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 0, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk measure -O qcow2 disk.raw", NULL },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_measure,
	},
	{
		.name = "commit",
		.summary = "merge an overlay into its backing file, offline or under a running device",
		.synopsis = "[-q] [-p] [-f FMT] [-b BASE] [-d] FILE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]\n"
		"-n ID [--top TOP] [--base BASE] [--speed BYTES_PER_S] [--job-id JOB] "
		"[--wait] [--pivot] [-p]",
		.operands = "FILE",
		.desc =
"Copies what FILE (and any image between it and BASE) holds into BASE,\n"
"by default FILE's backing file, then empties FILE so that it reads\n"
"BASE again.\n"
"\n"
"With -n ID, a job on the running device (QMP block-commit): merges TOP\n"
"(default the active image) and the images down to BASE (default the\n"
"bottom) into BASE.  Below the active image the job ends by itself and\n"
"the image above TOP then reads BASE.  The active image's commit mirrors\n"
"new writes into BASE and becomes ready; `imgblk job -n ID complete` (or\n"
"--pivot) switches the device to BASE.  --wait returns at the end, or\n"
"when ready.",
		.opts = (const struct cli_opt[]){
			OPT_FORMAT,
			{ 'b', "base", "BASE", "commit down to BASE, deeper in the chain; FILE is kept "
			  "(with -n: the image the job merges into)" },
			{ 'd', NULL, NULL, "keep FILE's data (do not empty it)" },
			{ 'p', "progress", NULL, "show progress (with -n: wait as --wait does)" },
			OPT_QUIET,
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 'n', "number", "ID", "a running device instead of FILE: a commit job" },
			{ CLI_K_TOP, "top", "TOP",
			  "with -n: the topmost image merged (default the active image)" },
			OPT_SPEED,
			OPT_JOB_ID,
			{ CLI_K_WAIT, "wait", NULL,
			  "with -n: return when the job ends, or an active commit is ready" },
			{ CLI_K_PIVOT, "pivot", NULL,
			  "with -n: an active commit waits until ready, completes, and returns "
			  "once the device serves BASE" },
			{ 0 },
		},
		.min_args = 0, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk commit overlay.qcow2", NULL },
			{ "imgblk commit -n 0 --top mid.qcow2 --base base.qcow2 --wait",
			  "merge mid.qcow2 into base.qcow2 under running device 0" },
			{ "imgblk commit -n 0 --pivot",
			  "merge device 0's active image down, then serve the bottom image" },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_commit,
	},
	{
		.name = "stream",
		.summary = "pull a running device's backing data into its top image",
		.synopsis = "-n ID [--base BASE] [--speed BYTES_PER_S] [--job-id JOB] [--wait] [-p]",
		.operands = "",
		.desc =
"On running device ID (QMP block-stream): copies into the top image what\n"
"the images above BASE (default: all of them) provide where the top has\n"
"nothing, then makes BASE the top's backing file (none without --base)\n"
"and drops the images between.",
		.opts = (const struct cli_opt[]){
			OPT_NUMBER,
			{ 'b', "base", "BASE", "the image that stays the top's backing file" },
			OPT_SPEED,
			OPT_JOB_ID,
			{ CLI_K_WAIT, "wait", NULL, "return when the job ends" },
			OPT_JOB_PROGRESS,
			{ 0 },
		},
		.examples = (const struct cli_example[]){
			{ "imgblk stream -n 0 --wait", "make device 0's top image self-contained" },
			{ 0 },
		},
		JOB_EXITS,
		.run = cli_cmd_job_start,
	},
	{
		.name = "snapshot",
		.summary = "list, create, apply or delete internal snapshots; snapshot a running device",
		.synopsis = "[-q] [-f FMT] [-U] [-l | -c NAME | -a NAME | -d NAME] FILE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]\n"
		"-n ID [--freeze] [-l | -c NAME | -d NAME]\n"
		"-n ID [--freeze] --external NEW [-f qcow2|qed]",
		.operands = "FILE",
		.desc =
"With FILE, works on the image file, as qemu-img snapshot.  With -n ID, "
"works on a running device through its control channel while it serves: "
"-l, -c and -d on its top image's internal snapshots (qcow2), I/O waiting "
"only while the snapshot is written; --external NEW creates NEW over the "
"device's top image and switches the device to write into it, the old top "
"becoming its read-only backing file.",
		.opts = (const struct cli_opt[]){
			{ 'l', NULL, NULL, "list the snapshots (the default)" },
			{ 'c', NULL, "NAME", "take a snapshot of the current state, named NAME" },
			{ 'a', NULL, "NAME", "revert the image to snapshot NAME (an id or a name)" },
			{ 'd', NULL, "NAME", "delete the snapshot named NAME" },
			{ 'f', "format", "FMT",
			  "the image's format; with --external, NEW's (qcow2, the default, or qed)" },
			{ 'q', "quiet", NULL, "accepted for qemu-img's sake" },
			{ 'U', "force-share", NULL,
			  "with -l: list even if another process writes the image" },
			{ 'n', "number", "ID", "a running device instead of FILE" },
			{ CLI_K_EXTERNAL, "external", "NEW",
			  "with -n: an external snapshot: NEW over the top image, which becomes its read-only backing file" },
			{ CLI_K_FREEZE, "freeze", NULL,
			  "with -n: freeze the filesystems mounted from the device (FIFREEZE) for the snapshot, "
			  "for an application-consistent point; they are thawed whatever happens" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 0, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk snapshot -c before-upgrade disk.qcow2", NULL },
			{ "imgblk snapshot -n 0 --freeze -c before-upgrade", NULL },
			{ "imgblk snapshot -n 0 --external /var/lib/images/disk-2.qcow2", NULL },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_snapshot,
	},
	{
		.name = "bitmap",
		.summary = "add, remove, clear, enable, disable or merge dirty bitmaps",
		.synopsis =
"OPERATION... [-b SOURCE_FILE [-F SOURCE_FMT]] [-g GRANULARITY] [-q] [-f FMT] FILE BITMAP"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]\n"
"-n ID OPERATION... [-g GRANULARITY] [BITMAP]",
		.operands = "FILE and BITMAP",
		.desc =
"Persistent dirty bitmaps of a qcow2 image, as qemu-img bitmap.  Each\n"
"OPERATION is one of --add, --remove, --clear, --enable, --disable and\n"
"--merge SOURCE (with -n, also --flush); they run on BITMAP in the order\n"
"given, and the first that fails ends the command.  With -n ID they run on\n"
"running device ID, through its control channel (QMP's\n"
"block-dirty-bitmap-* commands).",
		.opts = (const struct cli_opt[]){
			{ CLI_K_BITMAP_OP + TGT_BITMAP_ADD, "add", NULL,
			  "create BITMAP, empty and enabled (it tracks every write)" },
			{ CLI_K_BITMAP_OP + TGT_BITMAP_REMOVE, "remove", NULL,
			  "delete BITMAP (also one left in use by a dead writer)" },
			{ CLI_K_BITMAP_OP + TGT_BITMAP_CLEAR, "clear", NULL,
			  "mark nothing in BITMAP" },
			{ CLI_K_BITMAP_OP + TGT_BITMAP_ENABLE, "enable", NULL,
			  "start tracking writes in BITMAP" },
			{ CLI_K_BITMAP_OP + TGT_BITMAP_DISABLE, "disable", NULL,
			  "stop tracking writes in BITMAP" },
			{ CLI_K_BITMAP_OP + TGT_BITMAP_MERGE, "merge", "SOURCE",
			  "also mark in BITMAP what bitmap SOURCE marks: SOURCE of SOURCE_FILE "
			  "with -b, else of FILE" },
			{ CLI_K_BITMAP_OP + TGT_BITMAP_FLUSH, "flush", NULL,
			  "with -n: store every bitmap of the device now, in_use cleared "
			  "(BITMAP may be left out)" },
			{ 'g', "granularity", "GRANULARITY",
			  "bytes one bit covers, with --add (default 64K; suffixes K, M)" },
			{ 'b', "source-file", "SOURCE_FILE", "the image --merge reads SOURCE from" },
			{ 'F', "source-format", "SOURCE_FMT",
			  "SOURCE_FILE's format (default: detected)" },
			OPT_FORMAT,
			{ 'n', "number", "ID", "change running device ID's bitmaps, not FILE's" },
			{ 'q', "quiet", NULL, "accepted for qemu-img's sake" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 0, .max_args = 2,
		.examples = (const struct cli_example[]){
			{ "imgblk bitmap --add disk.qcow2 inc0",
			  "from now on, bitmap inc0 marks what is written to disk.qcow2" },
			{ "imgblk bitmap --clear --enable disk.qcow2 inc0",
			  "after a backup: mark nothing, then track writes again" },
			{ "imgblk bitmap -n 0 --add -g 1M --disable --merge inc0 inc1",
			  "on running device 0: a frozen copy of inc0, at a 1 MiB granularity" },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_bitmap,
	},
	{
		.name = "io",
		.summary = "run read/write/discard/flush commands on an image",
		.synopsis =
"[-f FMT] [-r [-U]] [-t none|writeback] [--backing=any|same-dir|none] "
"-c CMD [-c CMD ...] FILE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "FILE",
		.desc =
"Commands, as in qemu-io (OFF and LEN take suffixes K, M, G):\n"
"\n"
"  read [-P PATTERN] OFF LEN     read, and verify each byte is PATTERN\n"
"  write [-P PATTERN] [-z] OFF LEN\n"
"                                write PATTERN (default 0xcd), or zeros\n"
"  discard OFF LEN               discard the range\n"
"  flush                         make everything written so far durable\n"
"  sleep MS                      wait MS milliseconds, the image open",
		.opts = (const struct cli_opt[]){
			{ 'c', "cmd", "CMD", "a command to run (up to 256, in order)" },
			OPT_FORMAT,
			{ 'r', "read-only", NULL, "open the image read-only" },
			{ 't', "cache", "none|writeback", "none (default): O_DIRECT; writeback: "
			  "the host page cache" },
			{ CLI_K_BACKING, "backing", "any|same-dir|none",
			  "which backing files the image may open, as for add" },
			{ 'U', "force-share", NULL,
			  "with -r, open the image even if another process writes it" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 1, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk io -c 'write -P 0xab 0 64k' -c 'read -P 0xab 0 64k' disk.qcow2",
			  NULL },
			{ 0 },
		},
		.exits = (const struct cli_exit[]){
			{ 0, "every command succeeded" },
			{ 1, "a command failed or a pattern did not match, or a usage error" },
			{ -1, NULL },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_io,
	},
	{
		.name = "bench",
		.summary = "measure an image's I/O rate (qemu-img bench's options)",
		.synopsis =
"[-f FMT] [-c COUNT] [-d DEPTH] [-s SIZE] [-S STEP] [-o OFFSET] [-w] "
"[-t none|writeback] [--pattern=N] [--random] [-U] [--flush-interval=N] "
"[--l2-cache-size=SIZE] [--recoverable] FILE"
		" [--key-file [IMAGE=]FILE] [--object secret,id=ID,file=FILE]",
		.operands = "FILE",
		.opts = (const struct cli_opt[]){
			OPT_FORMAT,
			{ 'c', "count", "COUNT", "requests in all (default 75000)" },
			{ 'd', "depth", "DEPTH", "requests in flight (default 64)" },
			{ 's', "size", "SIZE", "bytes per request (default 4K)" },
			{ 'S', "step", "STEP", "distance between requests (default SIZE)" },
			{ 'o', "offset", "OFFSET", "where the first request starts (default 0)" },
			{ 'w', "write", NULL, "write instead of read" },
			{ 't', "cache", "none|writeback", "none (default): O_DIRECT; writeback: "
			  "the host page cache" },
			{ CLI_K_PATTERN, "pattern", "N", "the byte written (default 0xcd)" },
			{ CLI_K_RANDOM, "random", NULL, "random SIZE-aligned offsets instead of stepping" },
			{ CLI_K_FLUSH_INTERVAL, "flush-interval", "N", "a flush every N writes" },
			{ CLI_K_L2_CACHE, "l2-cache-size", "SIZE", "qcow2/qed: L2 tables kept in memory" },
			{ CLI_K_RECOVERABLE, "recoverable", NULL,
			  "open the image as `add --recoverable` serves it (what that costs writes)" },
			{ 'U', "force-share", NULL,
			  "read an image another process may be writing (not with -w)" },
			OPT_SECRETS,
			OPT_PROTOCOLS,
			{ 0 },
		},
		.min_args = 1, .max_args = 1,
		.examples = (const struct cli_example[]){
			{ "imgblk bench -c 100000 -d 32 --random disk.qcow2", NULL },
			{ 0 },
		},
		.flags = CLI_IMAGE,
		.run = cli_cmd_bench,
	},
	{
		.name = "udev-chown",
		.summary = "(for udev) give a user's device nodes to that user",
		.synopsis = "ublkcN|ublkbN",
		.operands = "the device name (ublkcN or ublkbN)",
		.desc =
"Run as root by udev for every new ublk node (the imgblk udev rule):\n"
"the nodes of a device added by a user without root (an unprivileged\n"
"ublk device) become that user's; others are left alone.",
		.min_args = 1, .max_args = 1,
		.run = cli_cmd_udev_chown,
	},
	{
		.name = "udev-name",
		.summary = "(for udev) print a device's stable name",
		.synopsis = "ublkbN|ublkbNpM",
		.operands = "the disk or partition name (ublkbN or ublkbNpM)",
		.desc =
"Run by udev for every ublk disk and partition (the imgblk udev rule\n"
"60-imgblk.rules): prints the name the device was given with add --name\n"
"(or in imgblktab), as NAME for the disk and NAME-partM for partition M,\n"
"for /dev/disk/by-imgblk/.",
		.min_args = 1, .max_args = 1,
		.exits = (const struct cli_exit[]){
			{ 0, "the name was printed" },
			{ 1, "the device has no name (nothing printed)" },
			{ 2, "a usage error, or not a ublk disk or partition name" },
			{ -1, NULL },
		},
		.run = cli_cmd_udev_name,
	},
	{
		.name = "help",
		.summary = "show this help, or a command's",
		.synopsis = "[COMMAND]",
		.operands = "[COMMAND]",
		.min_args = 0, .max_args = 1,
		.run = cli_cmd_help,
	},
	{
		.name = "version",
		.summary = "show imgblk's version (also imgblk --version)",
		.synopsis = "",
		.operands = "",
		.run = cli_cmd_version,
	},
	{
		.name = "__gen",
		.summary = "(for the build) print the man page or the bash completion",
		.synopsis = "man|bash",
		.operands = "man or bash",
		.min_args = 1, .max_args = 1,
		.flags = CLI_HIDDEN,
		.run = cli_cmd_gen,
	},
};

const unsigned int cli_nr_cmds = ARRAY_SIZE(cli_cmds);
