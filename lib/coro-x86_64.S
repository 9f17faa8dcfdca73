/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Stack switch for the executor's coroutines (x86-64 System V ABI).
 *
 * void coro_switch(void **save_sp, void *load_sp)
 *
 * Saves the callee-saved registers, MXCSR and the x87 control word on the
 * current stack, stores the stack pointer in *save_sp, then restores the
 * same set from load_sp and returns on that stack.  Caller-saved registers
 * need no saving: coro_switch is an ordinary call for the compiler.
 */
	.text
	.globl	coro_switch
	.type	coro_switch, @function
coro_switch:
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	subq	$8, %rsp
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movq	%rsp, (%rdi)
	movq	%rsi, %rsp
	ldmxcsr	(%rsp)
	fldcw	4(%rsp)
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
	.size	coro_switch, .-coro_switch

/*
 * First return address of a new coroutine: exec.c's frame puts the
 * coroutine pointer in r12.  Align the stack as a call site requires and
 * enter the C body, which never returns.
 */
	.globl	coro_entry
	.type	coro_entry, @function
coro_entry:
	movq	%r12, %rdi
	andq	$-16, %rsp
	call	coro_main
	ud2
	.size	coro_entry, .-coro_entry

	.section .note.GNU-stack, "", @progbits
