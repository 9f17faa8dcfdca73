// SPDX-License-Identifier: GPL-2.0
/* imgblk: serve disk images as ublk block devices, and the image verbs. */
#include "cli.h"

int main(int argc, char **argv)
{
	return cli_main(argc, argv);
}
