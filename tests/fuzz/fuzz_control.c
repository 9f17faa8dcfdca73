// SPDX-License-Identifier: GPL-2.0
/*
 * libFuzzer target: the control channel's protocol engine
 * (ublksrv/control.c) as a client's bytes reach it.  The first byte sets
 * how the rest is cut into reads (1 to 128 bytes each, as a socket may
 * deliver them) and whether the session starts negotiated; the rest goes
 * through ctl_session_feed() and ctl_session_eof() with a table of test
 * commands covering every argument type.  Besides the sanitizers it
 * checks each reply: valid strict JSON, an object with exactly one of
 * "return" and "error", an error with a known class and a description.
 * docs/fuzzing.md.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

static int f_echo(struct ctl_call *call)
{
	call->ret = json_object_get(call->args);
	return 0;
}

static int f_fail(struct ctl_call *call)
{
	/* A message built from the input, as a handler's may be. */
	return ctl_fail(call, -EINVAL, "refused: %s", ctl_arg_str(call, "why", "-"));
}

static int f_event(struct ctl_call *call)
{
	struct json_object *d = json_object_new_object();

	json_object_object_add(d, "n", json_object_new_int64(ctl_arg_int(call, "n", 0)));
	ctl_event(NULL, "FUZZ", d);
	return ctl_arg_bool(call, "fail", false) ? -EIO : 0;
}

static const struct ctl_cmd f_cmds[] = {
	{
		.name = "echo",
		.handler = f_echo,
		.args = {
			{ "s", CTL_STR, true },
			{ "n", CTL_INT, false },
			{ "b", CTL_BOOL, false },
			{ "x", CTL_NUM, false },
			{ "o", CTL_OBJ, false },
			{ "a", CTL_ARRAY, false },
		},
	},
	{ .name = "fail", .handler = f_fail, .args = { { "why", CTL_STR, false } } },
	{
		.name = "event",
		.handler = f_event,
		.args = { { "n", CTL_INT, true }, { "fail", CTL_BOOL, false } },
	},
};

static const struct ctl_table f_table = { f_cmds, ARRAY_SIZE(f_cmds), NULL };

static void f_check(void *arg, struct json_object *reply)
{
	const char *s = ctl_to_string(reply);
	struct json_tokener *tok = json_tokener_new();
	struct json_object *back, *err, *v;
	bool has_ret, has_err;

	(void)arg;
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	back = json_tokener_parse_ex(tok, s, strlen(s) + 1);
	if (!back || !json_object_is_type(back, json_type_object)) {
		fprintf(stderr, "fuzz_control: reply is not a JSON object: %s\n", s);
		abort();
	}
	has_ret = json_object_object_get_ex(back, "return", NULL);
	has_err = json_object_object_get_ex(back, "error", &err);
	if (has_ret == has_err || strchr(s, '\n')) {
		fprintf(stderr, "fuzz_control: malformed reply: %s\n", s);
		abort();
	}
	if (has_err) {
		const char *cls;

		if (!json_object_object_get_ex(err, "class", &v) ||
		    !json_object_is_type(v, json_type_string) ||
		    !json_object_object_get_ex(err, "desc", NULL)) {
			fprintf(stderr, "fuzz_control: malformed error: %s\n", s);
			abort();
		}
		cls = json_object_get_string(v);
		if (strcmp(cls, "GenericError") && strcmp(cls, "CommandNotFound")) {
			fprintf(stderr, "fuzz_control: unknown class: %s\n", s);
			abort();
		}
	}
	json_object_put(back);
	json_tokener_free(tok);
	json_object_put(reply);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctl_session s;
	size_t chunk, off, n;

	if (size < 1)
		return 0;
	chunk = (data[0] & 0x7f) + 1;
	ctl_session_init(&s, &f_table);
	s.negotiated = data[0] & 0x80;
	data++;
	size--;
	for (off = 0; off < size; off += n) {
		n = MIN(chunk, size - off);
		if (ctl_session_feed(&s, (const char *)data + off, n, f_check, NULL))
			abort();
	}
	ctl_session_eof(&s, f_check, NULL);
	ctl_session_free(&s);
	return 0;
}
