# Autosky Deployments — the commands in the README.
#   make test     every check: format, clippy, unit, contract, end-to-end, CLI and browser tests, infrastructure lint
#   make contract the API against infra/openapi.yaml with Schemathesis (part of make test)
#   make demo     one deployment end to end in the local sandbox
#   make sandbox  the sandbox left running (prints its endpoints; Ctrl-C stops it)
#   make build    the Lambda bootstraps (cargo lambda, release) and their sizes
#   make bench-api  API latency and DynamoDB calls per request against the sandbox
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

CARGO ?= cargo

.PHONY: test fmt-check clippy tests contract lint-infra emulator browser demo sandbox build bench-api bench

# `contract` after `tests`: it runs the sandbox binary that `tests` builds.
test: fmt-check clippy lint-infra emulator browser tests contract
	@echo "make test: all checks passed"

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Unit and contract tests, then the end-to-end suites against the sandbox; the
# figures the suites report (matrix totals) are printed at the end, then the
# IAM enforcement's (every sandbox's calls; fails on a denial), by the sandbox
# binary the suites built (`cargo run -p` alone would resolve other features
# and rebuild the SDK crates).
FIGURES := $(CURDIR)/target/figures.txt
tests:
	@mkdir -p $(dir $(FIGURES)) && rm -f $(FIGURES) $(FIGURES).iam
	AUTOSKY_FIGURES=$(FIGURES) $(CARGO) test --workspace
	@cat $(FIGURES) 2>/dev/null || true
	@$${CARGO_TARGET_DIR:-target}/debug/autosky-sandbox iam-summary $(FIGURES).iam

# Schemathesis (pinned, installed into tools/venv/) sends requests generated
# from infra/openapi.yaml to the sandbox's API: answers as declared, valid
# input accepted, invalid refused (exclusions and why: the script).
contract: emulator
	CARGO=$(CARGO) scripts/contract-test.sh

lint-infra:
	scripts/lint-infra.sh

emulator:
	scripts/install-emulator.sh

# Chromium and playwright-core for the page's browser test (tests/page.rs).
browser:
	scripts/install-browser.sh

# The first run builds the emulator and the sandbox at the same time, with
# progress; later runs start in seconds.
FIRST_RUN := the first run builds the local AWS emulator and the sandbox at the same time (about 15 min on 2 cores); later runs take seconds
demo:
	@echo "demo: $(FIRST_RUN)"
	@CARGO=$(CARGO) scripts/build-sandbox.sh
	$(CARGO) run -q -p autosky-sandbox -- demo

# SEED=0: start without the demo environment.
sandbox:
	@echo "sandbox: $(FIRST_RUN)"
	@CARGO=$(CARGO) scripts/build-sandbox.sh
	$(CARGO) run -q -p autosky-sandbox -- up $(if $(filter 0,$(SEED)),--no-seed,)

build:
	scripts/build-lambdas.sh

# API latency (p50/p99) and DynamoDB calls per request, in-process against the
# sandbox (dev build, like the tests: the figures are upper bounds).
bench-api: emulator
	$(CARGO) run -q -p autosky-sandbox -- bench-api

# The functions' size, cold start (spawn→ready, spawn→response, vs python3 +
# boto3) and peak RSS, and per deployment the AWS calls by action, state
# transitions and orchestration overhead, medians of 10 runs; writes
# BENCHMARKS.md and fails (non-zero) when a budget is exceeded. Not a test:
# not part of `make test`. RUNS=N for more runs.
bench: emulator build
	$(CARGO) run -q -p autosky-sandbox -- bench --runs $(or $(RUNS),10)
