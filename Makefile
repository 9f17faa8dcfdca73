# SPDX-License-Identifier: GPL-2.0
#
# imgblk build.  Kbuild-like: each directory lists its objects in a Kbuild
# file (obj-y += foo.o); everything is built under $(O) (default build/),
# so the source tree stays clean.  `make V=1` shows the full commands.
#
#   make                 build $(O)/imgblk, its man page and bash completion
#   make check           build, then run the host and VM test suites
#   make check-host      host tests only (no VM)
#   make check-vm        VM tests only
#   make san             ASan+UBSan build of imgblk and the tests in $(O)/san
#   make bench           benchmark report in $(O)/bench (not part of check)
#   make crash-soak      crash-state replay at length (docs/crash-replay.md)
#   make fuzz            libFuzzer targets, FUZZ_SECONDS each (docs/fuzzing.md)
#   make install         PREFIX (/usr/local), DESTDIR, SBINDIR, MANDIR, ...
#   make uninstall       removes what make install installed
#   make dist-check      builds the .deb in a temporary copy and checks it
#                        (not part of make check)

O ?= build
V ?= 0
SAN ?= 0

ifeq ($(V),1)
Q :=
quiet = @true
else
Q := @
quiet = @printf '  %-7s %s\n'
endif

CC ?= cc
CFLAGS ?= -O2 -g
CFLAGS += -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror -fno-strict-aliasing
# Where the fetched kernel headers live: the sanitizer build shares ours.
KHDR_BUILD ?= $(O)
CPPFLAGS += -Iinclude -I$(KHDR_BUILD)/include -I/usr/include/libnl3
DEPFLAGS = -MMD -MP
LDLIBS += -luring -lnl-3 -lpthread -lz -lzstd -ljson-c -lcrypto -lsystemd
ifeq ($(SAN),1)
CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif
# The libFuzzer build (make fuzz): clang, coverage for libFuzzer, ASan+UBSan.
ifeq ($(FUZZ),1)
CFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	  -fno-sanitize-recover=all
LDFLAGS += -fsanitize=fuzzer,address,undefined
endif

# Format engines live in targets/<format>/, each with its own Kbuild.
DIRS := lib targets $(patsubst %/Kbuild,%,$(wildcard targets/*/Kbuild)) block ublksrv

# Pull in each directory's Kbuild with its own obj-y.
define include-dir
obj-y :=
include $(1)/Kbuild
objs-$(1) := $$(addprefix $(O)/$(1)/,$$(obj-y))
endef
$(foreach d,$(DIRS),$(eval $(call include-dir,$(d))))

LIB_OBJS := $(foreach d,$(DIRS),$(objs-$(d)))
MAIN_OBJ := $(O)/ublksrv/main.o
HOST_TESTS := $(patsubst tests/host/%.c,$(O)/tests/host/%,$(wildcard tests/host/*.c))

# Headers fetched from Debian's linux-source-6.12, never committed.
KHDRS := $(KHDR_BUILD)/include/linux/ublk_cmd.h \
	 $(KHDR_BUILD)/include/kselftest_harness.h $(KHDR_BUILD)/include/kselftest.h
DEPS_STAMP := $(O)/.deps-stamp

# The man page and the bash completion, printed by the binary from its
# command table (ublksrv/cli_table.c), so they cannot drift from --help.
DOCS := $(O)/imgblk.8 $(O)/imgblk.bash-completion

# Helpers the VM tests run in the guest (scripts/vm/initramfs.sh packs them).
VM_PROGS := $(patsubst tests/vm/%.c,$(O)/tests/vm/%,$(wildcard tests/vm/*.c))

all: $(O)/imgblk $(DOCS) $(VM_PROGS)

# What `imgblk --version` prints: git describe in a tagged checkout, else
# the VERSION file (a tarball, an untagged clone).  The stamp changes only
# when the version does, so a second make still does nothing.
VERSION := $(shell git describe --tags --dirty 2>/dev/null || cat VERSION)
VERSION_STAMP := $(O)/.version
$(shell mkdir -p $(O); [ "$$(cat $(VERSION_STAMP) 2>/dev/null)" = '$(VERSION)' ] || \
	echo '$(VERSION)' > $(VERSION_STAMP))
$(O)/ublksrv/cli.o: $(VERSION_STAMP)
$(O)/ublksrv/cli.o: CPPFLAGS += -DIMGBLK_VERSION='"$(VERSION)"'

# make installs nothing: the build's packages come from scripts/setup.sh
# deps (README).  A missing one is named here, once per build directory.
$(DEPS_STAMP): scripts/setup.sh
	$(quiet) CHECK deps
	$(Q)mkdir -p $(O)
	$(Q)scripts/setup.sh check
	$(Q)touch $@

$(KHDRS) &: scripts/setup.sh | $(DEPS_STAMP)
	$(quiet) SETUP $(O)/include
	$(Q)scripts/setup.sh headers $(KHDR_BUILD)
	$(Q)touch $(KHDRS)

$(O)/%.o: %.c | $(KHDRS)
	$(quiet) CC $*.o
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(DEPFLAGS) -c -o $@ $<

$(O)/%.o: %.S
	$(quiet) AS $*.o
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) $(DEPFLAGS) -c -o $@ $<

$(O)/libimgblk.a: $(LIB_OBJS)
	$(quiet) AR libimgblk.a
	$(Q)rm -f $@
	$(Q)$(AR) rcs $@ $^

$(O)/imgblk: $(MAIN_OBJ) $(O)/libimgblk.a
	$(quiet) LD imgblk
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/imgblk.8: $(O)/imgblk
	$(quiet) GEN imgblk.8
	$(Q)$< __gen man > $@.tmp && mv $@.tmp $@

$(O)/imgblk.bash-completion: $(O)/imgblk
	$(quiet) GEN imgblk.bash-completion
	$(Q)$< __gen bash > $@.tmp && mv $@.tmp $@

# kselftest_harness.h leaves parameters unused (variant, ucontext).  Its
# TEST_F wrapper also sets a local (child) between setjmp and a failed
# ASSERT's longjmp; optimised, the local comes back stale and the fixture
# teardown is skipped, leaking temporary files.  Build tests at -O0 (the
# library they test stays optimised), which also keeps -Wclobbered quiet.
$(HOST_TESTS:%=%.o): CFLAGS += -Wno-unused-parameter -O0
# Layers call one way: ublksrv -> block -> targets -> lib.  include/ holds
# what every layer may use; block/ and ublksrv/ keep their headers to
# themselves, so only the layers above (and the unit tests) can reach them.
$(O)/ublksrv/%.o: CPPFLAGS += -Iblock
$(O)/tests/%.o: CPPFLAGS += -Iublksrv -Iblock

$(O)/tests/host/%: $(O)/tests/host/%.o $(O)/libimgblk.a
	$(quiet) LD tests/host/$*
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

tests: $(HOST_TESTS)

$(O)/tests/vm/%: tests/vm/%.c
	$(quiet) CC tests/vm/$*
	$(Q)mkdir -p $(dir $@)
	$(Q)$(CC) $(CFLAGS) -o $@ $<

# Benchmark programs (tests/bench/*.c), built for make bench, never run by check.
BENCH_PROGS := $(patsubst tests/bench/%.c,$(O)/tests/bench/%,$(wildcard tests/bench/*.c))
$(O)/tests/bench/%: $(O)/tests/bench/%.o $(O)/libimgblk.a
	$(quiet) LD tests/bench/$*
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-progs: $(BENCH_PROGS)

# The same program and unit tests under ASan and UBSan, in $(O)/san; the
# host suite runs the unit tests and the malformed-image tests with it.
san: $(KHDRS)
	$(Q)$(MAKE) --no-print-directory O=$(O)/san SAN=1 KHDR_BUILD=$(KHDR_BUILD) \
		$(O)/san/imgblk tests

# libFuzzer targets (tests/fuzz/fuzz_*.c) and the library under them,
# built by clang in $(O)/fuzz; `make fuzz` runs each FUZZ_SECONDS.
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,tests/fuzz/%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SECONDS ?= 60
$(O)/tests/fuzz/%: $(O)/tests/fuzz/%.o $(O)/libimgblk.a
	$(quiet) LD tests/fuzz/$*
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz-targets: $(addprefix $(O)/,$(FUZZ_TARGETS))

fuzz-build: $(KHDRS)
	$(Q)$(MAKE) --no-print-directory O=$(O)/fuzz FUZZ=1 CC=clang \
		KHDR_BUILD=$(KHDR_BUILD) fuzz-targets

# make check's tests/host/fuzz.sh builds with fuzz-build and installs nothing.
fuzz:
	$(Q)scripts/setup.sh check --fuzz
	$(Q)$(MAKE) --no-print-directory fuzz-build
	$(Q)tests/fuzz/run.sh -b $(O)/fuzz -t $(FUZZ_SECONDS)

# One run, one closing count: host and VM results together.
check: $(O)/imgblk $(DOCS) $(VM_PROGS) $(HOST_TESTS) san
	$(Q)O=$(O) scripts/check.sh all

check-host: $(O)/imgblk $(HOST_TESTS) san
	$(Q)O=$(O) scripts/check.sh host

check-vm: $(O)/imgblk $(VM_PROGS)
	$(Q)O=$(O) scripts/check.sh vm

# Crash-state replay with new seeds and many more states than `make check`
# runs; ROUNDS workloads per variant (docs/crash-replay.md).
ROUNDS ?= 5
crash-soak: $(O)/tests/host/crash_replay $(O)/tests/host/crash_chain
	$(Q)for t in $^; do \
		CRASH_REPLAY_SEED=random CRASH_REPLAY_ROUNDS=$(ROUNDS) \
		CRASH_REPLAY_STATES=$${CRASH_REPLAY_STATES:-2000} \
		CRASH_REPLAY_CHAIN_STATES=$${CRASH_REPLAY_CHAIN_STATES:-500} \
		CRASH_REPLAY_QCHECK=$${CRASH_REPLAY_QCHECK:-2} $$t || exit 1; \
	done

# Long runs, not part of make check.
soak: $(O)/imgblk
	$(Q)scripts/soak.sh -b $(O)

# Host rows, then one VM boot (about 27 min under TCG), then build/bench/report.md
# and report.png.  BENCH_ARGS go to scripts/bench/run-all.sh (-r, -H, -V).
bench: $(O)/imgblk $(BENCH_PROGS)
	$(Q)scripts/bench/run-all.sh -b $(O) $(BENCH_ARGS)

# make install / uninstall: the binary, its man page and completion, and
# every file of data/udev/ and data/systemd/ (the rules and units, whose
# /usr/sbin/imgblk becomes $(SBINDIR)/imgblk).  DESTDIR for staging.
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
UDEVRULESDIR ?= $(PREFIX)/lib/udev/rules.d
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
UDEV_RULES := $(wildcard data/udev/*.rules)
SYSTEMD_UNITS := $(wildcard data/systemd/*.service data/systemd/*.target \
		   data/systemd/*.socket data/systemd/*.timer)
INSTALLED := $(SBINDIR)/imgblk $(MANDIR)/man8/imgblk.8 $(BASHCOMPDIR)/imgblk \
	     $(addprefix $(UDEVRULESDIR)/,$(notdir $(UDEV_RULES))) \
	     $(addprefix $(SYSTEMDUNITDIR)/,$(notdir $(SYSTEMD_UNITS)))

install: $(O)/imgblk $(DOCS)
	$(quiet) INSTALL $(DESTDIR)$(PREFIX)
	$(Q)install -D -m 0755 $(O)/imgblk $(DESTDIR)$(SBINDIR)/imgblk
	$(Q)install -D -m 0644 $(O)/imgblk.8 $(DESTDIR)$(MANDIR)/man8/imgblk.8
	$(Q)install -D -m 0644 $(O)/imgblk.bash-completion $(DESTDIR)$(BASHCOMPDIR)/imgblk
	$(Q)for f in $(UDEV_RULES) $(SYSTEMD_UNITS); do \
		case $$f in *.rules) d=$(UDEVRULESDIR) ;; *) d=$(SYSTEMDUNITDIR) ;; esac; \
		mkdir -p $(DESTDIR)$$d && \
		sed 's|/usr/sbin/imgblk|$(SBINDIR)/imgblk|g' $$f > $(DESTDIR)$$d/$${f##*/} && \
		chmod 0644 $(DESTDIR)$$d/$${f##*/} || exit 1; \
	done

uninstall:
	$(quiet) UNINSTALL $(DESTDIR)$(PREFIX)
	$(Q)rm -f $(addprefix $(DESTDIR),$(INSTALLED))

# The Debian package, built in a copy of the tree (not part of make check):
# dpkg-buildpackage, lintian, and dpkg -c listing what must be in it.
dist-check:
	$(Q)scripts/dist-check.sh

clean:
	$(quiet) CLEAN $(O)
	$(Q)rm -rf $(O)/lib $(O)/targets $(O)/ublksrv $(O)/tests $(O)/imgblk $(DOCS) \
		$(O)/libimgblk.a $(O)/san $(O)/fuzz

.PHONY: all tests bench-progs san soak check check-host check-vm crash-soak bench clean \
	fuzz fuzz-build fuzz-targets install uninstall dist-check
.SECONDARY:

-include $(shell find $(O) -name '*.d' 2>/dev/null)
