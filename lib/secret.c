// SPDX-License-Identifier: GPL-2.0
/*
 * The process's passphrases (include/secret.h): read from their files
 * once, held in locked memory (luks_key_alloc()), wiped at exit.  A
 * short list: a command names a few images at most.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "luks.h"
#include "secret.h"
#include "util.h"

/* QEMU's secret objects read files of any size; a passphrase is short. */
#define SECRET_MAX_BYTES	(64U << 10)
#define SECRET_MAX		16

struct secret_slot {
	struct secret s;
	char *id, *file, *image;
	uint8_t *mem;
	size_t mem_len;
};

static struct secret_slot secrets[SECRET_MAX];
static unsigned int nr_secrets;

void secret_wipe_all(void)
{
	unsigned int i;

	for (i = 0; i < nr_secrets; i++) {
		luks_key_free(secrets[i].mem, secrets[i].mem_len);
		free(secrets[i].id);
		free(secrets[i].file);
		free(secrets[i].image);
	}
	memset(secrets, 0, sizeof(secrets));
	nr_secrets = 0;
}

/* A new slot holding @len bytes of @data. */
static struct secret_slot *secret_new(const void *data, size_t len)
{
	struct secret_slot *s;

	if (nr_secrets == SECRET_MAX) {
		img_err("too many secrets (at most %u)", SECRET_MAX);
		return NULL;
	}
	if (!nr_secrets)
		atexit(secret_wipe_all);
	s = &secrets[nr_secrets];
	memset(s, 0, sizeof(*s));
	s->mem_len = ALIGN_UP(len + 1, (size_t)4096);
	s->mem = luks_key_alloc(s->mem_len);
	if (!s->mem) {
		img_err("out of memory for a secret");
		return NULL;
	}
	memcpy(s->mem, data, len);
	s->s.data = s->mem;
	s->s.len = len;
	nr_secrets++;
	return s;
}

/* Reads @path into a new slot.  Prints one line on failure.  Returns NULL then. */
static struct secret_slot *secret_read(const char *path)
{
	struct secret_slot *s = NULL;
	uint8_t *buf;
	size_t len = 0;
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		img_err("%s: cannot read the key file: %s", path, strerror(errno));
		return NULL;
	}
	buf = luks_key_alloc(SECRET_MAX_BYTES);
	if (!buf) {
		close(fd);
		img_err("out of memory for a secret");
		return NULL;
	}
	while ((n = read(fd, buf + len, SECRET_MAX_BYTES - len)) > 0)
		len += n;
	if (n < 0)
		img_err("%s: cannot read the key file: %s", path, strerror(errno));
	else if (len == SECRET_MAX_BYTES)
		img_err("%s: key file larger than %u bytes", path, SECRET_MAX_BYTES - 1);
	else
		s = secret_new(buf, len);
	close(fd);
	luks_key_free(buf, SECRET_MAX_BYTES);
	if (s) {
		s->file = strdup(path);
		s->s.file = s->file;
	}
	return s;
}

/* The real path of @file, or @file itself when it cannot be resolved. */
static char *secret_path(const char *file)
{
	char *r = realpath(file, NULL);

	return r ? r : strdup(file);
}

int secret_add_key_file(const char *arg)
{
	const char *eq = strchr(arg, '=');
	struct secret_slot *s;
	char *image = NULL;

	/*
	 * IMAGE=FILE, unless the whole argument is a file that has '=' in its
	 * name.  An image path may hold '=' too (a state file records every
	 * key by image): the split is at the first '=' after which a file
	 * exists, else at the first, whose FILE then fails to read.
	 */
	if (eq && access(arg, F_OK)) {
		const char *e;

		for (e = eq; e && access(e + 1, F_OK); e = strchr(e + 1, '='))
			;
		if (e)
			eq = e;
		image = strndup(arg, eq - arg);
		arg = eq + 1;
	}
	s = secret_read(arg);
	if (!s) {
		free(image);
		return -EINVAL;
	}
	if (image) {
		s->image = secret_path(image);
		s->s.image = s->image;
		free(image);
	}
	return 0;
}

int secret_add_object(const char *spec)
{
	char *copy, *tok, *save, *id = NULL, *file = NULL, *data = NULL;
	struct secret_slot *s = NULL;
	int ret = -EINVAL;

	if (strncmp(spec, "secret,", 7)) {
		img_err("--object %s: only 'secret' objects are supported", spec);
		return -EINVAL;
	}
	copy = strdup(spec + 7);
	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "id=", 3)) {
			id = tok + 3;
		} else if (!strncmp(tok, "file=", 5)) {
			file = tok + 5;
		} else if (!strncmp(tok, "data=", 5)) {
			data = tok + 5;
		} else if (!strcmp(tok, "format=raw")) {
			continue;
		} else {
			/* Never echo the spec: it may hold data=. */
			img_err("--object secret: unsupported property '%.*s'",
				(int)strcspn(tok, "="), tok);
			goto out;
		}
	}
	if (!id || !*id || !!file == !!data) {
		img_err("--object secret: needs id= and one of file= or data=");
		goto out;
	}
	if (secret_by_id(id)) {
		img_err("--object secret: id '%s' given twice", id);
		goto out;
	}
	if (data) {
		img_err("warning: secret '%s' given with data= is visible to every user in the process list; use file=",
			id);
		s = secret_new(data, strlen(data));
		explicit_bzero(data, strlen(data));
	} else {
		s = secret_read(file);
	}
	if (!s)
		goto out;
	s->id = strdup(id);
	s->s.id = s->id;
	ret = 0;
out:
	explicit_bzero(copy, strlen(spec + 7));
	free(copy);
	return ret;
}

const struct secret *secret_by_id(const char *id)
{
	unsigned int i;

	for (i = 0; i < nr_secrets; i++)
		if (secrets[i].id && !strcmp(secrets[i].id, id))
			return &secrets[i].s;
	return NULL;
}

int secret_bind(const char *id, const char *file)
{
	struct secret_slot *s = NULL;
	unsigned int i;

	for (i = 0; i < nr_secrets; i++)
		if (secrets[i].id && !strcmp(secrets[i].id, id))
			s = &secrets[i];
	if (!s) {
		img_err("No secret with id '%s'", id);
		return -ENOENT;
	}
	free(s->image);
	s->image = secret_path(file);
	s->s.image = s->image;
	return 0;
}

int secret_bind_unnamed(const char *file)
{
	unsigned int i;

	for (i = 0; i < nr_secrets; i++) {
		struct secret_slot *s = &secrets[i];

		if (s->image || s->id || !s->file)
			continue;
		s->image = secret_path(file);
		if (!s->image)
			return -ENOMEM;
		s->s.image = s->image;
	}
	return 0;
}

const struct secret *secret_for_image(const char *file, int top)
{
	char *path = secret_path(file);
	const struct secret *hit = NULL;
	unsigned int i;

	for (i = 0; i < nr_secrets && !hit; i++)
		if (secrets[i].image && path && !strcmp(secrets[i].image, path))
			hit = &secrets[i].s;
	free(path);
	for (i = 0; i < nr_secrets && !hit && top; i++)
		if (!secrets[i].image && !secrets[i].id)
			hit = &secrets[i].s;
	return hit;
}

int secret_key_file_args(char *buf, size_t len)
{
	size_t at = 0;
	unsigned int i;

	buf[0] = 0;
	for (i = 0; i < nr_secrets; i++) {
		struct secret_slot *s = &secrets[i];
		char *file;
		int n;

		if (s->id || !s->file)
			continue;
		file = secret_path(s->file);
		if (!file)
			return -ENOMEM;
		n = snprintf(buf + at, len - at, "%s%s%s%s", at ? "\t" : "",
			     s->image ? s->image : "", s->image ? "=" : "", file);
		free(file);
		if (n < 0 || (size_t)n >= len - at)
			return -ENAMETOOLONG;
		at += n;
	}
	return 0;
}
