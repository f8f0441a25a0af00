# The lab's make targets, included by the Makefile where the project has the lab (bench/).

# The lab's test runs wrk, and pgbouncer in front of its PostgreSQL (make test installs them).
TEST_PACKAGES += wrk pgbouncer

# make bench QUICK=1: the same experiments, short (about 3 minutes instead of 10-15).
QUICK ?=
BENCH_MODE := $(if $(filter 1 true,$(QUICK)),quick,full)
# make bench ONLY="dbpath claim-13": those experiments alone (ids from python -m bench list).
ONLY ?=
# make bench-compare A B (two report folders); A=... B=... works too. The folders are
# arguments, not targets: declared phony with an empty recipe so make builds nothing for them.
ifeq (bench-compare,$(firstword $(MAKECMDGOALS)))
COMPARE_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
A ?= $(word 1,$(COMPARE_ARGS))
B ?= $(word 2,$(COMPARE_ARGS))
ifneq ($(COMPARE_ARGS),)
.PHONY: $(COMPARE_ARGS)
$(COMPARE_ARGS): ; @:
endif
endif

.PHONY: bench bench-compare .bench-deps

bench: $(STAMP) .bench-deps ## The lab: each claim about sync vs async measured against its physical limit (QUICK=1: short); report in reports/
	@$(PY) -m bench run --mode $(BENCH_MODE) $(if $(strip $(ONLY)),--only $(ONLY))

bench-compare: $(STAMP) ## Two lab runs side by side, B as ratios of A: make bench-compare reports/bench-A reports/bench-B
	@if [ -z "$(A)" ] || [ -z "$(B)" ]; then \
		echo "usage: make bench-compare REPORT_A REPORT_B   (two folders under reports/, or their results.json)" >&2; \
		exit 2; fi
	@$(PY) -m bench compare "$(A)" "$(B)"

# The lab drives the servers with wrk, a C load generator, from the OS packages; its own
# PostgreSQL (pgbench ships with it) and pgbouncer come from them too.
.bench-deps:
	@scripts/system-deps.sh nginx wrk postgresql pgbouncer
