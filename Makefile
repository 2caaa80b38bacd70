# Armada: the two commands that matter are `make run` and `make check`.
BUILD       ?= build
CHECK_BUILD ?= build-check

.PHONY: all bootstrap build build-check run stop check check-pg bench clean

all: build

bootstrap:
	@./scripts/bootstrap

build: bootstrap
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD) --buildtype=debugoptimized -Dtests=true >/dev/null
	@ninja -C $(BUILD)

build-check: bootstrap
	@[ -f $(CHECK_BUILD)/build.ninja ] || meson setup $(CHECK_BUILD) -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	@ninja -C $(CHECK_BUILD)

# Starts libvirtd (when none runs) and armadad on ./var, registers this host.
run: build
	@./scripts/run-local

stop:
	@./scripts/run-local --stop

# Every suite: unit (cmocka; the store's a second time on PostgreSQL), integration
# (armadad + test:///) and integration-pg (all of it again on a throwaway
# PostgreSQL cluster) side by side in JOBS worker processes (default: from the
# machine; JOBS=1 runs them one test after another), system (test bed), browser.
# The optimised tree that `make run` uses is built too: -O2 finds warnings the
# sanitizer build does not.
JOBS ?=
RUN_ALL = python3 tests/run-all --build $(CHECK_BUILD) $(if $(JOBS),--jobs $(JOBS))

check: build build-check
	@$(RUN_ALL)

# The store's unit tests and the whole integration suite on PostgreSQL only.
check-pg: build-check
	@$(RUN_ALL) --suite unit --suite integration-pg

bench: build
	@./bench/run --build $(BUILD)

clean:
	rm -rf $(BUILD) $(CHECK_BUILD)
