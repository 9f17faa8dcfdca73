// SPDX-License-Identifier: GPL-2.0
/* The command table, help, and dispatch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "exec.h"
#include "tgt.h"
#include "util.h"

int cli_cmd_add(int argc, char **argv);
int cli_cmd_del(int argc, char **argv);
int cli_cmd_recover(int argc, char **argv);
int cli_cmd_udev_chown(int argc, char **argv);
int cli_cmd_list(int argc, char **argv);
int cli_cmd_qmp(int argc, char **argv);
int cli_cmd_create(int argc, char **argv);
int cli_cmd_info(int argc, char **argv);
int cli_cmd_check(int argc, char **argv);
int cli_cmd_map(int argc, char **argv);
int cli_cmd_convert(int argc, char **argv);
int cli_cmd_io(int argc, char **argv);
int cli_cmd_bench(int argc, char **argv);
int cli_cmd_resize(int argc, char **argv);
int cli_cmd_rebase(int argc, char **argv);
int cli_cmd_commit(int argc, char **argv);
int cli_cmd_snapshot(int argc, char **argv);
int cli_cmd_measure(int argc, char **argv);
int cli_cmd_amend(int argc, char **argv);
int cli_cmd_stats(int argc, char **argv);
int cli_cmd_query(int argc, char **argv);
int cli_cmd_set(int argc, char **argv);
int cli_cmd_pause(int argc, char **argv);
int cli_cmd_resume(int argc, char **argv);
int cli_cmd_backup(int argc, char **argv);
int cli_cmd_mirror(int argc, char **argv);
int cli_cmd_job(int argc, char **argv);
int cli_cmd_stream(int argc, char **argv);
int cli_cmd_commit_live(int argc, char **argv);
static int cli_cmd_commit_any(int argc, char **argv);
static int cli_cmd_help(int argc, char **argv);

static const struct cli_cmd cli_cmds[] = {
	{
		.name = "add",
		.summary = "serve an image as /dev/ublkbN",
		.usage =
"usage: imgblk add [-t TYPE] [-f FILE] [-n ID] [-q QUEUES] [-d DEPTH] [-r]\n"
"                  [--buffered] [--size SIZE] [--backing=any|same-dir|none]\n"
"                  [--l2-cache-size SIZE] [--discard=ignore|unmap] [--copy-on-read]\n"
"                  [--bps-total|--bps-read|--bps-write BYTES_PER_S]\n"
"                  [--iops-total|--iops-read|--iops-write N] [--throttle-burst-ms MS]\n"
"                  [--pinned-buffers SIZE] [--snapshot NAME] [--recoverable]\n"
"                  [--werror=enospc|stop|report|ignore] [--rerror=stop|report|ignore]\n"
"                  [--foreground]\n"
"\n"
"Adds a ublk device served by TYPE and prints its path (/dev/ublkbN) once\n"
"the device works; the server then runs in the background until deleted.\n"
"The server holds the image and its backing files locked as QEMU does, so\n"
"neither QEMU nor another imgblk may write them (nor read the image unless\n"
"both only read) while the device lives.\n"
"\n"
"  -t, --type TYPE     target: see `imgblk help` for the list; without it\n"
"                      the format of FILE is detected\n"
"  -f, --file FILE     the image file or block device\n"
"  -n, --number ID     device id (default: the first free one)\n"
"  -q, --queues N      hardware queues, one server thread each (default 1)\n"
"  -d, --depth N       requests in flight per queue, 1-4096 (default 128)\n"
"  -r, --read-only     the device refuses writes\n"
"      --buffered      raw: use the host page cache instead of O_DIRECT\n"
"      --size SIZE     null: device size (suffixes K, M, G, T)\n"
"      --backing=P     which backing files the image may name: any (the\n"
"                      default, like QEMU), same-dir (only in the image's\n"
"                      own directory: for images from untrusted sources),\n"
"                      none (refuse images with a backing file)\n"
"      --l2-cache-size SIZE\n"
"                      qcow2/qed: L2 tables kept in memory (default: the\n"
"                      whole image's, up to 32M)\n"
"      --snapshot NAME qcow2: serve internal snapshot NAME (id or name),\n"
"                      read-only\n"
"      --discard=MODE  unmap (default): discards free space in the image;\n"
"                      ignore: discards succeed and change nothing\n"
"      --copy-on-read  data read from the backing chain is written into the\n"
"                      image, so it is read from there next time\n"
"      --bps-*, --iops-*\n"
"                      throttle reads, writes or both to bytes or requests\n"
"                      per second; bursts up to --throttle-burst-ms worth\n"
"                      of the rate (default 100) go through at once\n"
"      --pinned-buffers SIZE\n"
"                      memory kept pinned for the device's I/O buffers, so\n"
"                      the kernel need not pin them for every request:\n"
"                      faster I/O for more memory; 0 turns it off\n"
"                      (default 32M)\n"
"      --werror=ACTION what a failed write, flush or discard does: enospc\n"
"                      (default) pauses the device when the host is out of\n"
"                      space and fails other errors; stop pauses on any\n"
"                      error; report fails the request; ignore completes\n"
"                      it as done (the data is lost).  A paused device\n"
"                      holds its requests until `imgblk resume`\n"
"      --rerror=ACTION what a failed read does: report (default), stop,\n"
"                      ignore\n"
"      --recoverable   if the server dies, the device waits (QUIESCED) for\n"
"                      `imgblk recover` instead of failing its I/O\n"
"      --foreground    serve in this process; Ctrl-C deletes the device",
		.run = cli_cmd_add,
	},
	{
		.name = "recover",
		.summary = "start a new server for a --recoverable device whose server died",
		.usage =
"usage: imgblk recover -n ID [--foreground]\n"
"\n"
"The device must be QUIESCED (see imgblk list): its requests wait, and\n"
"those the dead server had taken are reissued to the new one.",
		.run = cli_cmd_recover,
	},
	{
		.name = "del",
		.summary = "delete a device and stop its server",
		.usage =
"usage: imgblk del -n ID | -a\n"
"\n"
"  -n, --number ID     delete device ID\n"
"  -a, --all           delete every imgblk device",
		.run = cli_cmd_del,
	},
	{
		.name = "list",
		.summary = "list the devices and their servers",
		.usage =
"usage: imgblk list [-n ID] [--json]\n"
"\n"
"Shows id, target, queues, depth, state (LIVE, PAUSED, QUIESCED, DEAD),\n"
"server pid, device path and file of each device; under a PAUSED one, why.\n"
"\n"
"  -n, --number ID     only device ID\n"
"      --json          machine-readable output",
		.run = cli_cmd_list,
	},
	{
		.name = "stats",
		.summary = "show a device's I/O statistics, once or every interval",
		.usage =
"usage: imgblk stats -n ID [--json] [--interval SEC [--count N]]\n"
"\n"
"Counts of a running device since it was added (QEMU's query-blockstats):\n"
"operations, bytes, flushes, discards, failures, requests in flight and\n"
"mean latency, for the device and for each queue.  With --interval, one\n"
"line every SEC seconds with the rates over it, like iostat.\n"
"\n"
"  -n, --number ID     the device\n"
"      --json          query-blockstats as JSON (with the latency\n"
"                      histograms); with --interval, one object a line\n"
"      --interval SEC  print every SEC seconds until interrupted\n"
"      --count N       stop after N intervals",
		.run = cli_cmd_stats,
	},
	{
		.name = "query",
		.summary = "show a running device: its state, settings and image chain",
		.usage =
"usage: imgblk query -n ID [--json]\n"
"\n"
"  -n, --number ID     the device\n"
"      --json          query-block and query-status as JSON",
		.run = cli_cmd_query,
	},
	{
		.name = "set",
		.summary = "change a running device's throttle limits or error policy",
		.usage =
"usage: imgblk set -n ID [--bps-total|--bps-read|--bps-write BYTES_PER_S]\n"
"                  [--iops-total|--iops-read|--iops-write N] [--throttle-burst-ms MS]\n"
"                  [--werror=enospc|stop|report|ignore] [--rerror=stop|report|ignore]\n"
"\n"
"Limits given change (0 lifts one) within a tenth of a second; the others\n"
"stay.  The new settings are kept for `imgblk recover`.\n"
"\n"
"  -n, --number ID     the device\n"
"      --werror=ACTION what a failed write does: see imgblk add --help\n"
"      --rerror=ACTION what a failed read does",
		.run = cli_cmd_set,
	},
	{
		.name = "pause",
		.summary = "hold a device's requests until resume",
		.usage =
"usage: imgblk pause -n ID\n"
"\n"
"Returns once the requests in flight are done; new ones wait (QMP stop).",
		.run = cli_cmd_pause,
	},
	{
		.name = "resume",
		.summary = "resume a paused device, retrying the requests it holds",
		.usage =
"usage: imgblk resume -n ID\n"
"\n"
"Ends a pause, whether `imgblk pause` or an error (--werror/--rerror)\n"
"caused it: requests held after an error are retried first, then new\n"
"ones go through (QMP cont).  A device that is not paused is an error.",
		.run = cli_cmd_resume,
	},
	{
		.name = "backup",
		.summary = "point-in-time copy of a running device into an image",
		.usage =
"usage: imgblk backup -n ID --sync full|top [-f FMT] [--existing] [--speed BYTES_PER_S]\n"
"                     [--job-id ID] [--wait] [-p] TARGET\n"
"\n"
"Starts a backup job on device ID (QMP drive-backup): TARGET receives the\n"
"device's content as of this moment while the device keeps serving I/O\n"
"(a guest write to a range not yet copied saves the old data first).\n"
"TARGET is created (format FMT, default the device's) unless --existing;\n"
"with --sync top only what the top image holds is copied, and TARGET gets\n"
"the top's backing file.\n"
"\n"
"      --speed N   limit the copy to N bytes a second (at least one cluster)\n"
"      --wait      return when the job ends; exit 1 if it failed or was cancelled\n"
"  -p, --progress  show the progress while waiting",
		.run = cli_cmd_backup,
	},
	{
		.name = "mirror",
		.summary = "copy a running device to an image, then switch to it",
		.usage =
"usage: imgblk mirror -n ID [--sync full|top] [-f FMT] [--existing] [--speed BYTES_PER_S]\n"
"                     [--job-id ID] [--wait] [--pivot] [-p] TARGET\n"
"\n"
"Starts a mirror job on device ID (QMP drive-mirror): copies the device to\n"
"TARGET while it runs and keeps TARGET in step with new writes; the job is\n"
"then ready.  `imgblk job -n ID complete` switches the device to TARGET;\n"
"`imgblk job -n ID cancel` leaves TARGET a consistent copy of that moment.\n"
"\n"
"      --wait      return once the job is ready\n"
"      --pivot     wait until ready, complete, and return once the device\n"
"                  serves TARGET\n"
"  -p, --progress  show the progress while waiting",
		.run = cli_cmd_mirror,
	},
	{
		.name = "job",
		.summary = "list and control the block job of a running device",
		.usage =
"usage: imgblk job -n ID [list|pause|resume|cancel|complete|wait|set-speed] [JOB]\n"
"                  [--speed BYTES_PER_S] [--force] [--wait] [-p]\n"
"\n"
"list (the default) shows the device's job: id, type, status, progress.\n"
"cancel stops it (a ready mirror first makes its target a copy of that\n"
"moment, unless --force); complete switches a ready mirror to its target;\n"
"wait blocks until the job ends.  With --wait, cancel and complete return\n"
"once the job has ended; the exit status is 1 if it failed or was cancelled.",
		.run = cli_cmd_job,
	},
	{
		.name = "qmp",
		.summary = "run a command on a device's control channel",
		.usage =
"usage: imgblk qmp (-n ID | -s SOCKET) [--pretty] COMMAND [JSON_ARGS]\n"
"       imgblk qmp (-n ID | -s SOCKET) [--pretty] --events\n"
"       imgblk qmp (-n ID | -s SOCKET) --raw\n"
"\n"
"Talks to the control socket of a running device (docs/control.md):\n"
"runs COMMAND with JSON_ARGS (a JSON object) and prints what it returns;\n"
"an error reply is printed on stderr as CLASS: DESCRIPTION, exit status 1.\n"
"`imgblk qmp -n ID query-commands --pretty` lists the commands.\n"
"\n"
"  -n, --number ID     device ID's socket\n"
"  -s, --socket PATH   the control socket at PATH\n"
"      --pretty        indented output\n"
"      --events        print the events as they come, one per line, until\n"
"                      the server goes away\n"
"      --raw           send the lines of stdin as they are (no negotiation)\n"
"                      and print everything the server sends, until it\n"
"                      closes",
		.run = cli_cmd_qmp,
	},
	{
		.name = "create",
		.summary = "create an image",
		.usage =
"usage: imgblk create [-q] -f FMT [-b BACKING [-F BACKING_FMT]] [-o OPTIONS] FILE [SIZE]\n"
"\n"
"Creates FILE of SIZE bytes (suffixes K, M, G, T; default: the backing\n"
"file's size).  OPTIONS is a comma-separated KEY=VALUE list; the keys\n"
"depend on the format (qcow2: cluster_size, compat, refcount_bits,\n"
"lazy_refcounts, preallocation, compression_type; qed: cluster_size,\n"
"table_size; raw: preallocation), plus backing_file and backing_fmt.",
		.run = cli_cmd_create,
	},
	{
		.name = "info",
		.summary = "show an image's format, size and metadata",
		.usage =
"usage: imgblk info [-f FMT] [-U] [--output=human|json] [--backing-chain] FILE\n"
"\n"
"  --backing-chain     describe every image of the backing chain\n"
"  -U, --force-share   open the image even if another process writes it\n"
"                      (as qemu-img -U; its content may be changing)",
		.run = cli_cmd_info,
	},
	{
		.name = "check",
		.summary = "check an image's metadata, optionally repair it",
		.usage =
"usage: imgblk check [-q] [-f FMT] [-r leaks|all] [-U] [--output=human|json] FILE\n"
"\n"
"Exit status: 0 no errors, 2 corruptions, 3 leaked clusters only,\n"
"1 the check itself failed, 63 the format has no checks.\n"
"  -r leaks   reclaim leaked clusters\n"
"  -r all     also repair corruptions (may lose data, and says so)\n"
"  -U         check an image another process may be writing (not with -r)",
		.run = cli_cmd_check,
	},
	{
		.name = "map",
		.summary = "show where the image's data lives",
		.usage =
"usage: imgblk map [-f FMT] [-U] [--output=human|json] FILE\n"
"\n"
"  -U, --force-share   open the image even if another process writes it\n"
"                      (as qemu-img -U; its content may be changing)",
		.run = cli_cmd_map,
	},
	{
		.name = "convert",
		.summary = "copy an image's content into a new image",
		.usage =
"usage: imgblk convert [-p] [-c] [-U] [-f FMT] [-O OUTPUT_FMT] [-o OPTIONS]\n"
"                      [-l snapshot.name=NAME] INPUT OUTPUT\n"
"\n"
"  -O FMT     output format (default raw)\n"
"  -o OPTS    creation options of the output format (see create)\n"
"  -c         compress the output's clusters (qcow2; -o compression_type=\n"
"             zlib|zstd); clusters that do not shrink are stored plain\n"
"  -l snapshot.name=NAME | snapshot.id=ID\n"
"             copy internal snapshot NAME of INPUT instead of its\n"
"             current state (-s NAME too, as qemu-img)\n"
"  -p         show progress\n"
"  -U         read INPUT even if another process writes it (as qemu-img)",
		.run = cli_cmd_convert,
	},
	{
		.name = "resize",
		.summary = "change an image's virtual size",
		.usage =
"usage: imgblk resize [-q] [-f FMT] [--shrink] FILE [+|-]SIZE\n"
"\n"
"SIZE sets the size; +SIZE and -SIZE change it.  Shrinking, which cuts\n"
"data off the end, needs --shrink.",
		.run = cli_cmd_resize,
	},
	{
		.name = "rebase",
		.summary = "change the backing file an image names",
		.usage =
"usage: imgblk rebase [-f FMT] [-u] [-p] -b BACKING [-F BACKING_FMT] FILE\n"
"\n"
"Makes FILE name BACKING (\"\" for none) as its backing file, with format\n"
"BACKING_FMT (without -F: detected).  By default FILE keeps reading what it\n"
"reads now: where FILE allocates nothing and the old backing chain reads\n"
"differently from the new one, the old chain's data is copied into FILE\n"
"first.  Both chains must be there.\n"
"  -u   unsafe: record the new name and format only, copy no data; the\n"
"       old backing file need not exist\n"
"  -p   show progress",
		.run = cli_cmd_rebase,
	},
	{
		.name = "amend",
		.summary = "change an image's creation options",
		.usage =
"usage: imgblk amend [-q] [-f FMT] -o OPTIONS FILE\n"
"\n"
"qcow2: lazy_refcounts=on|off (compat=1.1 images).  compat= and\n"
"refcount_bits= are accepted when they match the image; changing them is\n"
"not supported yet.",
		.run = cli_cmd_amend,
	},
	{
		.name = "measure",
		.summary = "how large a new image of some format would be",
		.usage =
"usage: imgblk measure [-O FMT] [-o OPTIONS] [--output=human|json]\n"
"                      (--size SIZE | [-f FMT] [-U] FILE)\n"
"\n"
"Prints the size a new FMT image (default raw) would need, as qemu-img\n"
"measure does: \"required size\" to hold FILE's content (or an empty image\n"
"of SIZE), \"fully allocated size\" with every cluster present, and for a\n"
"qcow2 FILE into qcow2 v3, \"bitmaps size\" for its persistent bitmaps.\n"
"OPTIONS are the create options of FMT (qcow2: cluster_size, compat,\n"
"refcount_bits, extended_l2, preallocation, backing_file...; qed:\n"
"cluster_size, table_size).  -U: read FILE even if another process writes\n"
"it (as qemu-img).",
		.run = cli_cmd_measure,
	},
	{
		.name = "commit",
		.summary = "merge an overlay into its backing file",
		.usage =
"usage: imgblk commit [-q] [-p] [-f FMT] [-b BASE] [-d] FILE\n"
"\n"
"Copies what FILE (and any image between it and BASE) holds into BASE,\n"
"by default FILE's backing file, then empties FILE so that it reads\n"
"BASE again.\n"
"  -b BASE   commit down to BASE, deeper in the chain; FILE is kept\n"
"  -d        keep FILE's data (do not empty it)\n"
"  -p        show progress\n"
"\n"
"usage: imgblk commit -n ID [--top FILE] [--base FILE] [--speed BYTES_PER_S]\n"
"                     [--job-id ID] [--wait] [--pivot] [-p]\n"
"\n"
"On running device ID (QMP block-commit): merges TOP (default the active\n"
"image) and the images down to BASE (default the bottom) into BASE.  Below\n"
"the active image the job ends by itself and the image above TOP then\n"
"reads BASE.  The active image's commit mirrors new writes into BASE and\n"
"becomes ready; `imgblk job -n ID complete` (or --pivot) switches the\n"
"device to BASE.  --wait returns at the end, or when ready.",
		.run = cli_cmd_commit_any,
	},
	{
		.name = "stream",
		.summary = "pull a running device's backing data into its top image",
		.usage =
"usage: imgblk stream -n ID [--base FILE] [--speed BYTES_PER_S] [--job-id ID]\n"
"                     [--wait] [-p]\n"
"\n"
"On running device ID (QMP block-stream): copies into the top image what\n"
"the images above BASE (default: all of them) provide where the top has\n"
"nothing, then makes BASE the top's backing file (none without --base)\n"
"and drops the images between.  --wait returns at the end; the exit\n"
"status is 1 if the job failed or was cancelled.",
		.run = cli_cmd_stream,
	},
	{
		.name = "snapshot",
		.summary = "list, create, apply or delete internal snapshots",
		.usage =
"usage: imgblk snapshot [-q] [-f FMT] [-U] [-l | -c NAME | -a NAME | -d NAME] FILE\n"
"\n"
"  -l        list the snapshots (the default)\n"
"  -c NAME   take a snapshot of the current state, named NAME\n"
"  -a NAME   revert the image to snapshot NAME (an id or a name)\n"
"  -d NAME   delete the snapshot named NAME\n"
"  -U        with -l: list even if another process writes the image",
		.run = cli_cmd_snapshot,
	},
	{
		.name = "io",
		.summary = "run read/write/discard/flush commands on an image",
		.usage =
"usage: imgblk io [-f FMT] [-r [-U]] [-t none|writeback] [--backing=any|same-dir|none]\n"
"                 -c CMD [-c CMD ...] FILE\n"
"\n"
"Commands, as in qemu-io (OFF and LEN take suffixes K, M, G):\n"
"  read [-P PATTERN] OFF LEN     read, and verify each byte is PATTERN\n"
"  write [-P PATTERN] [-z] OFF LEN\n"
"                                write PATTERN (default 0xcd), or zeros\n"
"  discard OFF LEN               discard the range\n"
"  flush                         make everything written so far durable\n"
"  sleep MS                      wait MS milliseconds, the image open\n"
"--backing: which backing files the image may open, as for add.\n"
"-U: with -r, open the image even if another process writes it.\n"
"Exit status 1 if a command failed or a pattern did not match.",
		.run = cli_cmd_io,
	},
	{
		.name = "bench",
		.summary = "measure an image's I/O rate (qemu-img bench's options)",
		.usage =
"usage: imgblk bench [-f FMT] [-c COUNT] [-d DEPTH] [-s SIZE] [-S STEP] [-o OFFSET]\n"
"                    [-w] [-t none|writeback] [--pattern=N] [--random] [-U]\n"
"                    [--flush-interval=N] [--l2-cache-size=SIZE] FILE\n"
"\n"
"  -c COUNT   requests in all (default 75000)\n"
"  -d DEPTH   requests in flight (default 64)\n"
"  -s SIZE    bytes per request (default 4K)\n"
"  -S STEP    distance between requests (default SIZE)\n"
"  -w         write instead of read\n"
"  --random   random SIZE-aligned offsets instead of stepping\n"
"  -U         read an image another process may be writing (not with -w)",
		.run = cli_cmd_bench,
	},
	{
		.name = "udev-chown",
		.summary = "(for udev) give a user's device nodes to that user",
		.usage =
"usage: imgblk udev-chown ublkcN|ublkbN\n"
"\n"
"Run as root by udev for every new ublk node (scripts/udev/99-imgblk.rules):\n"
"the nodes of a device added by a user without root (an unprivileged\n"
"ublk device) become that user's; others are left alone.",
		.run = cli_cmd_udev_chown,
	},
	{
		.name = "help",
		.summary = "show this help, or a command's",
		.usage = "usage: imgblk help [COMMAND]",
		.run = cli_cmd_help,
	},
};

int cli_run(int (*body)(void *arg), void *arg)
{
	int ret = exec_run_sync(body, arg);

	if (ret < 0) {
		img_err("cannot set up io_uring: %s", strerror(-ret));
		return CLI_EXIT_ERR;
	}
	return ret;
}

/* commit -n ID is the live commit of a device; without -n, the offline one. */
static int cli_cmd_commit_any(int argc, char **argv)
{
	int i;

	for (i = 1; i < argc; i++)
		if (!strncmp(argv[i], "-n", 2) || !strncmp(argv[i], "--number", 8))
			return cli_cmd_commit_live(argc, argv);
	return cli_cmd_commit(argc, argv);
}

const struct cli_cmd *cli_find(const char *name)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cli_cmds); i++)
		if (!strcmp(cli_cmds[i].name, name))
			return &cli_cmds[i];
	return NULL;
}

static void cli_usage(FILE *f)
{
	unsigned int i;

	fprintf(f, "usage: imgblk COMMAND [OPTIONS]\n\ncommands:\n");
	for (i = 0; i < ARRAY_SIZE(cli_cmds); i++)
		fprintf(f, "  %-8s %s\n", cli_cmds[i].name, cli_cmds[i].summary);
	fprintf(f, "\ntargets (add -t):\n");
	for (i = 0; i < tgt_table_len; i++)
		fprintf(f, "  %-8s %s\n", tgt_table[i]->name, tgt_table[i]->summary);
	fprintf(f, "\n`imgblk COMMAND --help` shows a command's options.\n");
}

static int cli_cmd_help(int argc, char **argv)
{
	const struct cli_cmd *cmd;

	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cli_usage(stdout);
		return CLI_EXIT_OK;
	}
	cmd = cli_find(argv[1]);
	if (!cmd) {
		img_err("help: unknown command '%s'", argv[1]);
		return CLI_EXIT_USAGE;
	}
	puts(cmd->usage);
	return CLI_EXIT_OK;
}

int cli_main(int argc, char **argv)
{
	const struct cli_cmd *cmd;
	const char *dbg = getenv("IMGBLK_DEBUG");

	if (dbg)
		img_debug_mask = strtoul(dbg, NULL, 0);
	if (argc < 2) {
		cli_usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
		return cli_cmd_help(1, argv);
	cmd = cli_find(argv[1]);
	if (!cmd) {
		img_err("unknown command '%s' (see imgblk help)", argv[1]);
		return CLI_EXIT_USAGE;
	}
	return cmd->run(argc - 1, argv + 1);
}
