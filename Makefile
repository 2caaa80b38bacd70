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
# (armadad + test:///), integration-pg (a subset of it on a throwaway PostgreSQL
# cluster; all of it: make check-pg), system (test bed).
# The optimised tree that `make run` uses is built too: -O2 finds warnings the
# sanitizer build does not.
check: build build-check
	@python3 tests/run-all --build $(CHECK_BUILD)

# The store's unit tests and the whole integration suite on PostgreSQL
# (`make check` runs a subset of it: tests/run-all, PG_CHECK_SUBSET).
check-pg: build-check
	@python3 tests/run-all --build $(CHECK_BUILD) --suite unit --suite integration-pg-full

bench: build
	@./bench/run --build $(BUILD)

clean:
	rm -rf $(BUILD) $(CHECK_BUILD)
