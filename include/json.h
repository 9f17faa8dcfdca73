/* SPDX-License-Identifier: GPL-2.0 */
/* Minimal JSON output for --json / --output=json. */
#ifndef IMGBLK_JSON_H
#define IMGBLK_JSON_H

#include <stdio.h>

/* Writes @s as a JSON string literal, quotes included. */
void json_put_string(FILE *f, const char *s);

#endif
