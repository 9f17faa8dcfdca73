/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Passphrases of encrypted images, for the whole process (lib/secret.c).
 * The CLI registers them from `--key-file [IMAGE=]FILE` and QEMU's
 * `--object secret,id=ID,file=FILE`; formats look them up by image when
 * they open one.  Each is read from its file at once (before the server
 * forks), kept in memory locked against swap, and wiped at exit; only
 * the file's path is ever shown or recorded.
 */
#ifndef IMGBLK_SECRET_H
#define IMGBLK_SECRET_H

#include <stddef.h>
#include <stdint.h>

struct secret {
	const char *id;		/* --object id, or NULL */
	const char *file;	/* where it was read from; NULL for data= */
	const char *image;	/* the image it unlocks (real path); NULL: the top one */
	const uint8_t *data;
	size_t len;
};

/*
 * `--key-file [IMAGE=]FILE`: the passphrase in FILE (its bytes, all of
 * them, as QEMU's secret objects read a file) unlocks IMAGE, or without
 * it the image the command names.  Prints one line on failure.
 * Returns 0 or -errno.
 */
int secret_add_key_file(const char *arg);

/*
 * QEMU's `--object secret,id=ID,file=FILE` (or data=STRING, which puts
 * the passphrase on the command line: accepted, as QEMU does, with a
 * warning).  Other object types are refused.  Prints one line on
 * failure.  Returns 0 or -errno.
 */
int secret_add_object(const char *spec);

/* The secret registered with `--object secret,id=@id`, or NULL. */
const struct secret *secret_by_id(const char *id);

/*
 * The secret for the image @file: the one bound to its real path, else
 * for the top image (@top) the one without an image.  NULL: none given.
 */
const struct secret *secret_for_image(const char *file, int top);

/*
 * Binds every `--key-file` given without an image to @file (its real
 * path), the top image a server is added with.  "The top image" is
 * where the key is used at add time, not a place in the chain: after an
 * external snapshot that image is a backing file, and its key must still
 * unlock it, in this server (a reopen: commit into it) and in the one
 * `recover` starts from the state file, which records the key as
 * IMAGE=FILE.  Returns 0 or -ENOMEM.
 */
int secret_bind_unnamed(const char *file);

/*
 * Binds secret @id to the image @file (its real path), for QEMU's
 * `encrypt.key-secret=ID` given with the image.  Returns 0 or -ENOENT
 * (no such secret; one line printed).
 */
int secret_bind(const char *id, const char *file);

/*
 * Every `--key-file` given, as `--key-file` takes it again ([IMAGE=]FILE,
 * real paths), separated by tabs, into @buf: what a state file keeps so
 * that `recover` can read the keys again.  Paths only, never a key.
 * Returns 0 or -ENAMETOOLONG.
 */
int secret_key_file_args(char *buf, size_t len);

/* Wipes and frees every secret; registered with atexit() on first use. */
void secret_wipe_all(void);

#endif
