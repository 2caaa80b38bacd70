# Armada: the two commands that matter are `make run` and `make check`.
BUILD       ?= build
CHECK_BUILD ?= build-check

.PHONY: all bootstrap build build-check run stop check bench clean

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

# Every suite: unit (cmocka), integration (armadad + test:///), system (test bed).
# The optimised tree that `make run` uses is built too: -O2 finds warnings the
# sanitizer build does not.
check: build build-check
	@python3 tests/run-all --build $(CHECK_BUILD)

bench: build
	@./bench/run --build $(BUILD)

clean:
	rm -rf $(BUILD) $(CHECK_BUILD)
