/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The io_uring user_data layout, the one place it is defined.
 *
 * A queue thread's ring carries two kinds of SQEs: ublk io commands
 * (FETCH_REQ, COMMIT_AND_FETCH_REQ) on /dev/ublkcN, and the executor's own
 * file I/O issued by targets from inside coroutines.  Bit 63 tells them
 * apart when the CQE comes back.
 *
 *   bit 63 = 0: ublk io command
 *     bits  0..15  tag
 *     bits 16..23  command number (_IOC_NR of UBLK_U_IO_*)
 *     bits 24..39  queue id
 *   bit 63 = 1: executor I/O
 *     bits  0..62  address of the struct exec_waiter the result goes to;
 *                  waiters are 8-byte aligned, so the odd value
 *                  UD_EXEC_WAKE can never be one: it marks the read on the
 *                  executor's eventfd that delivers cross-thread wakeups.
 */
#ifndef IMGBLK_USER_DATA_H
#define IMGBLK_USER_DATA_H

#include <stdbool.h>
#include <stdint.h>

#define UD_EXEC_BIT	(1ULL << 63)
#define UD_EXEC_WAKE	(UD_EXEC_BIT | 1)

#define UD_TAG_SHIFT	0
#define UD_TAG_MASK	0xffffULL
#define UD_OP_SHIFT	16
#define UD_OP_MASK	0xffULL
#define UD_QID_SHIFT	24
#define UD_QID_MASK	0xffffULL

static inline uint64_t ud_ublk(unsigned int tag, unsigned int op, unsigned int q_id)
{
	return ((uint64_t)(tag & UD_TAG_MASK) << UD_TAG_SHIFT) |
	       ((uint64_t)(op & UD_OP_MASK) << UD_OP_SHIFT) |
	       ((uint64_t)(q_id & UD_QID_MASK) << UD_QID_SHIFT);
}

static inline bool ud_is_exec(uint64_t ud)
{
	return ud & UD_EXEC_BIT;
}

static inline unsigned int ud_tag(uint64_t ud)
{
	return (ud >> UD_TAG_SHIFT) & UD_TAG_MASK;
}

static inline unsigned int ud_op(uint64_t ud)
{
	return (ud >> UD_OP_SHIFT) & UD_OP_MASK;
}

static inline unsigned int ud_qid(uint64_t ud)
{
	return (ud >> UD_QID_SHIFT) & UD_QID_MASK;
}

static inline uint64_t ud_exec(const void *waiter)
{
	return UD_EXEC_BIT | (uint64_t)(uintptr_t)waiter;
}

static inline void *ud_exec_waiter(uint64_t ud)
{
	return (void *)(uintptr_t)(ud & ~UD_EXEC_BIT);
}

#endif
