# registry: an OCI distribution registry server.
#
#   make              build build/registry
#   make run          install what is missing, build, serve on 127.0.0.1:5000 with ./data
#   make test         install, build, run unit + black-box tests, then again under ASan+UBSan
#   make check        unit + black-box tests (no sanitizers)
#   make check-asan   the same suites under AddressSanitizer + UBSan
#   make fuzz         each libFuzzer harness in tests/fuzz/ for FUZZ_SECONDS (never part of make test)
#   make bench        benchmarks (never part of make test): bench/run.sh, bench/cache.sh, bench/s3.sh
#   make bench-cache  the pull-through cache's benchmark alone (also part of make bench)
#   make bench-s3     the S3 benchmark alone: both servers on a throw-away Ceph RGW (also part of make bench)
#   make install      binary, man page, sample config, systemd unit (PREFIX, DESTDIR)
#   make lint         cppcheck + clang-tidy;  make format  clang-format -i

# Compiler and optimisation; override on the command line (make CC=clang).
CC       ?= cc
OPT      ?= -O2 -g
# Where `make install` puts things: the binary in PREFIX/bin, the man page in
# MANDIR, the sample configuration in DOCDIR and (when none is there yet) as
# SYSCONFDIR/registry/registry.conf, the systemd unit in UNITDIR.
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     ?= $(PREFIX)/bin
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/registry
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
UNITDIR    ?= $(PREFIX)/lib/systemd/system
# Build output directory.
BUILD    ?= build
# Address and port `make run` serves on, and its data directory.
RUN_LISTEN ?= 127.0.0.1:5000
RUN_ROOT   ?= ./data
# Parallel jobs for criterion test binaries.
TEST_JOBS  ?= 2
# Seconds each fuzz target runs: in `make fuzz`, and in `make fuzz-smoke`
# (part of `make check`, so keep it short: six targets).
FUZZ_SECONDS       ?= 60
FUZZ_SMOKE_SECONDS ?= 8
# Compiler for the fuzz harnesses: libFuzzer needs clang.
FUZZ_CC ?= clang

VERSION  := $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0-dev)

# Debian packages: to build and run, and to test.
DEB_RUN  := gcc make pkg-config libmicrohttpd-dev libssl-dev libjansson-dev liblmdb-dev \
            libinih-dev libjwt-dev libcrypt-dev libcurl4-openssl-dev
# ceph-*, radosgw: a throw-away Ceph RADOS Gateway for the S3 backend's tests
# (scripts/ceph-rgw.sh); mandoc, man-db, systemd: the install test; prometheus:
# promtool, which checks the /metrics page (test_metrics.c): about 19 MB to
# fetch, 100 MB installed, and on a systemd host its service is enabled and started;
# docker.io, mmdebstrap, docker-compose: docker.sh and container.sh; docker-registry
# (Distribution 2.8): the pull-through cache's upstream (conformance/test_proxy.c).
DEB_TEST := libcriterion-dev curl openssl skopeo jq podman buildah containerd \
            clang libclang-rt-14-dev mandoc man-db systemd procps \
            ceph-mon ceph-osd radosgw ceph-common prometheus docker.io mmdebstrap docker-compose \
            docker-registry

PKGS      := libmicrohttpd jansson lmdb openssl inih libjwt libcrypt libcurl
TEST_PKGS := libcurl criterion jansson openssl

WARN     := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wno-format-nonliteral
CFLAGS_ALL = -std=gnu11 -D_GNU_SOURCE $(OPT) $(WARN) -DREGISTRY_VERSION='"$(VERSION)"' \
             $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(CFLAGS)
LDLIBS_ALL = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread $(LDLIBS)
SAN      := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

CORE_SRC := common/err.c common/log.c common/file.c common/array.c \
            storage/digest.c storage/index.c storage/blobstore.c storage/blobstore_file.c storage/blobstore_s3.c storage/s3.c service/service.c service/proxy.c service/upstream.c service/manifest.c service/uploads.c service/gc.c service/evict.c service/fsck.c service/backup.c \
            api/errors.c api/base.c api/blobs.c api/uploads.c api/manifests.c api/tags.c \
            api/referrers.c api/router.c api/range.c api/listing.c api/token.c api/health.c \
            auth/htpasswd.c auth/acl.c auth/token.c auth/authn.c \
            server/config.c server/http.c server/metrics.c
MAIN_SRC := server/main.c server/healthcheck.c
UNIT_TESTS := $(patsubst tests/%.c,%,$(wildcard tests/test_*.c))
BB_SRC   := $(wildcard conformance/test_*.c)
HDRS     := $(wildcard */*.h)

.PHONY: all deps deps-test run test check check-asan check-blobstore unit blackbox bench install lint format clean \
        conformance-compare fuzz fuzz-smoke

all: $(BUILD)/registry $(BUILD)/conformance

deps:
	@./scripts/deps.sh $(DEB_RUN)

deps-test:
	@./scripts/deps.sh $(DEB_RUN) $(DEB_TEST)

# --- the server ------------------------------------------------------------
# $(1): build dir, $(2): extra flags
define objs
$(patsubst %.c,$(1)/obj/%.o,$(2))
endef

$(BUILD)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/asan/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SAN) -c $< -o $@

$(BUILD)/registry: $(call objs,$(BUILD),$(CORE_SRC) $(MAIN_SRC))
	$(CC) $(OPT) -o $@ $^ $(LDFLAGS) $(LDLIBS_ALL)

$(BUILD)/asan/registry: $(call objs,$(BUILD)/asan,$(CORE_SRC) $(MAIN_SRC))
	$(CC) $(OPT) $(SAN) -o $@ $^ $(LDFLAGS) $(LDLIBS_ALL)

run: deps $(BUILD)/registry
	$(BUILD)/registry serve --listen $(RUN_LISTEN) --root $(RUN_ROOT)

# --- tests -------------------------------------------------------------------
TEST_CFLAGS = $(shell pkg-config --cflags $(TEST_PKGS) 2>/dev/null)
TEST_LIBS   = $(shell pkg-config --libs $(TEST_PKGS) 2>/dev/null)

# Unit tests link the core objects (real LMDB, real files).
$(BUILD)/tests/%: tests/%.c $(call objs,$(BUILD),$(CORE_SRC)) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(TEST_CFLAGS) -o $@ $< $(call objs,$(BUILD),$(CORE_SRC)) \
	    $(LDFLAGS) $(LDLIBS_ALL) $(TEST_LIBS)

$(BUILD)/asan/tests/%: tests/%.c $(call objs,$(BUILD)/asan,$(CORE_SRC)) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SAN) $(TEST_CFLAGS) -o $@ $< $(call objs,$(BUILD)/asan,$(CORE_SRC)) \
	    $(LDFLAGS) $(LDLIBS_ALL) $(TEST_LIBS)

# tests/test_api runs the handlers on a stand-in request of its own: it links
# everything but server/http.o (and server/metrics.o, which reads the server's
# gauges), which shows api/ needs the request interface, not the server behind it.
API_TEST_SRC := $(filter-out server/http.c server/metrics.c,$(CORE_SRC))

$(BUILD)/tests/test_api: tests/test_api.c $(call objs,$(BUILD),$(API_TEST_SRC)) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(TEST_CFLAGS) -o $@ $< $(call objs,$(BUILD),$(API_TEST_SRC)) \
	    $(LDFLAGS) $(LDLIBS_ALL) $(TEST_LIBS)

$(BUILD)/asan/tests/test_api: tests/test_api.c $(call objs,$(BUILD)/asan,$(API_TEST_SRC)) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(SAN) $(TEST_CFLAGS) -o $@ $< $(call objs,$(BUILD)/asan,$(API_TEST_SRC)) \
	    $(LDFLAGS) $(LDLIBS_ALL) $(TEST_LIBS)

# The black-box suite talks HTTP to a real server binary; it links nothing of ours.
$(BUILD)/blackbox: $(BB_SRC) conformance/harness.c conformance/harness.h conformance/httpc.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(TEST_CFLAGS) -o $@ $(BB_SRC) conformance/harness.c conformance/httpc.c \
	    $(LDFLAGS) $(TEST_LIBS) $(shell pkg-config --libs jansson libjwt)

# The conformance suite: a standalone tool for any registry (docs/conformance.md).
$(BUILD)/conformance: conformance/suite.c conformance/suite_tests.c conformance/suite.h \
                      conformance/httpc.c conformance/httpc.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(TEST_CFLAGS) -o $@ conformance/suite.c conformance/suite_tests.c \
	    conformance/httpc.c \
	    $(LDFLAGS) $(shell pkg-config --libs libcurl jansson openssl)

UNIT_BINS      = $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))
UNIT_BINS_ASAN = $(addprefix $(BUILD)/asan/tests/,$(UNIT_TESTS))

check: $(BUILD)/registry $(UNIT_BINS) $(BUILD)/blackbox $(BUILD)/conformance fuzz-smoke
	REGISTRY_BIN=$(BUILD)/registry ./scripts/with-ceph.sh ./tests/run.sh $(TEST_JOBS) $(UNIT_BINS) $(BUILD)/blackbox
	./tests/install.sh $(BUILD)
	./tests/layers.sh $(BUILD)
	REGISTRY_BIN=$(BUILD)/registry ./conformance/run
	REGISTRY_BIN=$(BUILD)/registry CONFORMANCE_AUTH=token ./conformance/run
	REGISTRY_BIN=$(BUILD)/registry ./conformance/clients/run.sh
	REGISTRY_BIN=$(BUILD)/registry ./scripts/with-ceph.sh sh -c 'CONFORMANCE_STORAGE=s3 \
	    ./conformance/run && CLIENT_STORAGE=s3 \
	    ./conformance/clients/run.sh skopeo podman ctr docker buildah'

# The server under test is the sanitized one; the test programs need not be.
# container.sh builds the image from the sources whatever the server binary is,
# so it runs in `make check` only; so do the S3 conformance and client runs
# (about 2 min; the S3 black-box tests run in both passes).
check-asan: $(BUILD)/asan/registry $(UNIT_BINS_ASAN) $(BUILD)/blackbox $(BUILD)/conformance
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	REGISTRY_BIN=$(BUILD)/asan/registry ./scripts/with-ceph.sh ./tests/run.sh $(TEST_JOBS) $(UNIT_BINS_ASAN) $(BUILD)/blackbox
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	REGISTRY_BIN=$(BUILD)/asan/registry ./conformance/run
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	REGISTRY_BIN=$(BUILD)/asan/registry CONFORMANCE_AUTH=token ./conformance/run
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
	REGISTRY_BIN=$(BUILD)/asan/registry CLIENTS_SKIP=container ./conformance/clients/run.sh

# One throw-away Ceph RADOS Gateway serves both passes' S3 tests.
test: deps-test
	./scripts/with-ceph.sh sh -c '$(MAKE) check && $(MAKE) check-asan'

# The blob-store suite alone, on every backend (starts Ceph for the S3 rows).
check-blobstore: $(BUILD)/tests/test_blobstore
	./scripts/with-ceph.sh ./tests/run.sh $(TEST_JOBS) $(BUILD)/tests/test_blobstore

# --- fuzzing (docs/testing.md) ---------------------------------------------------
# Every harness and the code it links are built with ASan + UBSan and
# libFuzzer's coverage; a harness #includes the .c file whose static parsers it
# drives, and takes everything else from libcore.a (the archive's copy of that
# file is then never pulled in).
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(addprefix $(BUILD)/fuzz/fuzz_,$(FUZZ_TARGETS))
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer

$(BUILD)/fuzz/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(CFLAGS_ALL) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -c $< -o $@

$(BUILD)/fuzz/libcore.a: $(call objs,$(BUILD)/fuzz,$(CORE_SRC))
	rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(BUILD)/fuzz/libcore.a $(CORE_SRC) $(HDRS)
	$(FUZZ_CC) $(CFLAGS_ALL) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $< $(BUILD)/fuzz/libcore.a \
	    $(LDFLAGS) $(LDLIBS_ALL)

# Each target on a copy of its seed corpus (tests/fuzz/corpus/ is never
# written); any crash, leak or failed check fails the run and leaves the input
# in $(BUILD)/fuzz/crashes/.
fuzz: $(FUZZ_BINS)
	./tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-smoke: $(FUZZ_BINS)
	./tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SMOKE_SECONDS) $(FUZZ_TARGETS)

# The suite against Debian's docker-registry (Distribution 2.8) and against ours.
conformance-compare: deps-test $(BUILD)/registry $(BUILD)/conformance
	@./scripts/deps.sh docker-registry python3
	./conformance/compare.sh

bench: deps-test $(BUILD)/registry
	./bench/run.sh
	./bench/cache.sh
	./bench/s3.sh

# The pull-through cache against Distribution 2.8 as its upstream (bench/README.md).
.PHONY: bench-cache
bench-cache: deps-test $(BUILD)/registry
	./bench/cache.sh

# Ours and Distribution 2.8 with their blobs on one throw-away Ceph RGW (bench/README.md).
.PHONY: bench-s3
bench-s3: deps-test $(BUILD)/registry
	./bench/s3.sh

# An existing registry.conf is never overwritten; the one installed keeps its
# data in /var/lib/registry, the systemd unit's state directory.
install: $(BUILD)/registry
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(DOCDIR) \
	    $(DESTDIR)$(SYSCONFDIR)/registry $(DESTDIR)$(UNITDIR)
	install -m 0755 $(BUILD)/registry $(DESTDIR)$(BINDIR)/registry
	install -m 0644 docs/registry.8 $(DESTDIR)$(MANDIR)/man8/registry.8
	install -m 0644 registry.conf.sample $(DESTDIR)$(DOCDIR)/registry.conf.sample
	test -e $(DESTDIR)$(SYSCONFDIR)/registry/registry.conf || \
	    sed 's|^root = .*|root = /var/lib/registry|' registry.conf.sample \
	        > $(DESTDIR)$(SYSCONFDIR)/registry/registry.conf
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' dist/registry.service \
	    > $(DESTDIR)$(UNITDIR)/registry.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/registry.service

lint:
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --std=c11 -D_GNU_SOURCE --suppress=missingIncludeSystem common storage service api server auth
	clang-tidy --quiet $(CORE_SRC) $(MAIN_SRC) -- -std=gnu11 -D_GNU_SOURCE \
	    $(shell pkg-config --cflags $(PKGS))

format:
	clang-format -i $(wildcard */*.c */*.h)

clean:
	rm -rf $(BUILD)
