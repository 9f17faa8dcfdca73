// SPDX-License-Identifier: GPL-2.0
/*
 * The io_uring user_data layout (include/user_data.h): ublk io commands
 * and executor waiters share one ring, so an encoding that loses a bit or
 * lets the two kinds collide sends a CQE to the wrong place.
 */
#include <stdalign.h>
#include <stdlib.h>

#include <linux/ublk_cmd.h>

#include "exec.h"
#include "user_data.h"
#include "util.h"

/* After util.h: the harness defines ARRAY_SIZE only if nobody did. */
#include "kselftest_harness.h"

static const unsigned int tags[] = { 0, 1, 127, 4095, 4096, 0x8000, 65535 };
static const unsigned int qids[] = { 0, 1, 63, 0x100, 0x8000, 65535 };

/* Every tag, op and queue id combination decodes to what was encoded. */
TEST(ublk_round_trip)
{
	unsigned int i, j, op;

	for (i = 0; i < ARRAY_SIZE(tags); i++) {
		for (j = 0; j < ARRAY_SIZE(qids); j++) {
			for (op = 0; op <= UD_OP_MASK; op++) {
				uint64_t ud = ud_ublk(tags[i], op, qids[j]);

				ASSERT_FALSE(ud_is_exec(ud));
				ASSERT_EQ(tags[i], ud_tag(ud));
				ASSERT_EQ(op, ud_op(ud));
				ASSERT_EQ(qids[j], ud_qid(ud));
			}
		}
	}
}

/* The ops the queue threads actually use, by their ioctl numbers. */
TEST(ublk_io_ops)
{
	static const unsigned int ops[] = {
		_IOC_NR(UBLK_U_IO_FETCH_REQ),
		_IOC_NR(UBLK_U_IO_COMMIT_AND_FETCH_REQ),
		_IOC_NR(UBLK_U_IO_NEED_GET_DATA),
	};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(ops); i++) {
		uint64_t ud = ud_ublk(4095, ops[i], 63);

		ASSERT_LE(ops[i], UD_OP_MASK);
		ASSERT_EQ(ops[i], ud_op(ud));
		ASSERT_EQ(4095U, ud_tag(ud));
		ASSERT_EQ(63U, ud_qid(ud));
	}
	/* Distinct ops stay distinct. */
	ASSERT_NE(ud_ublk(7, ops[0], 0), ud_ublk(7, ops[1], 0));
}

/* A field out of range is truncated, never spilled into its neighbour. */
TEST(ublk_fields_do_not_overlap)
{
	uint64_t ud;

	ud = ud_ublk(0xffffffff, 0, 0);
	ASSERT_EQ(0xffffU, ud_tag(ud));
	ASSERT_EQ(0U, ud_op(ud));
	ASSERT_EQ(0U, ud_qid(ud));

	ud = ud_ublk(0, 0xffffffff, 0);
	ASSERT_EQ(0U, ud_tag(ud));
	ASSERT_EQ(0xffU, ud_op(ud));
	ASSERT_EQ(0U, ud_qid(ud));

	ud = ud_ublk(0, 0, 0xffffffff);
	ASSERT_EQ(0U, ud_tag(ud));
	ASSERT_EQ(0U, ud_op(ud));
	ASSERT_EQ(0xffffU, ud_qid(ud));
	ASSERT_FALSE(ud_is_exec(ud));

	/* All fields at their maximum still leave bit 63 clear. */
	ud = ud_ublk(0xffffffff, 0xffffffff, 0xffffffff);
	ASSERT_FALSE(ud_is_exec(ud));
	ASSERT_EQ(0ULL, ud & UD_EXEC_BIT);
}

/* Waiter addresses (stack, heap, static) come back intact and are exec. */
TEST(exec_waiter_round_trip)
{
	static struct exec_waiter static_w;
	struct exec_waiter stack_w[4];
	struct exec_waiter *heap_w = malloc(16 * sizeof(*heap_w));
	const void *ptrs[2 + 4 + 16];
	unsigned int i, n = 0;

	ASSERT_NE(NULL, heap_w);
	ptrs[n++] = &static_w;
	ptrs[n++] = NULL;
	for (i = 0; i < 4; i++)
		ptrs[n++] = &stack_w[i];
	for (i = 0; i < 16; i++)
		ptrs[n++] = &heap_w[i];

	for (i = 0; i < n; i++) {
		uint64_t ud = ud_exec(ptrs[i]);

		ASSERT_TRUE(ud_is_exec(ud));
		ASSERT_EQ(ptrs[i], ud_exec_waiter(ud));
		ASSERT_NE(UD_EXEC_WAKE, ud);
	}
	free(heap_w);
}

/*
 * UD_EXEC_WAKE must be odd and every waiter 8-byte aligned: that is what
 * keeps the eventfd read apart from a waiter's I/O.
 */
TEST(exec_wake_is_never_a_waiter)
{
	struct exec_waiter w[8];
	unsigned int i;

	ASSERT_TRUE(ud_is_exec(UD_EXEC_WAKE));
	ASSERT_EQ(1ULL, UD_EXEC_WAKE & 1);
	ASSERT_GE(alignof(struct exec_waiter), 8UL);
	for (i = 0; i < ARRAY_SIZE(w); i++) {
		ASSERT_EQ(0UL, (uintptr_t)&w[i] % 8);
		ASSERT_NE(UD_EXEC_WAKE, ud_exec(&w[i]));
	}
	/* The only address that would collide is 1, which no waiter can have. */
	ASSERT_EQ(UD_EXEC_WAKE, ud_exec((void *)1));
}

/* A ublk encoding and an exec encoding never decode as each other. */
TEST(kinds_are_distinct)
{
	struct exec_waiter w;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(tags); i++) {
		uint64_t u = ud_ublk(tags[i], 0x21, 65535);

		ASSERT_NE(u, ud_exec(&w));
		ASSERT_NE(u, UD_EXEC_WAKE);
	}
	/* User-space addresses never reach bit 63 on their own. */
	ASSERT_EQ(0ULL, (uintptr_t)&w & UD_EXEC_BIT);
}

TEST_HARNESS_MAIN
