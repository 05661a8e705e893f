# Autosky Deployments — the commands in the README.
#   make test    every check: format, clippy, unit and contract tests, infrastructure lint
#   make build   the six Lambda bootstraps (cargo lambda, release)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := test

CARGO ?= cargo

.PHONY: test fmt-check clippy unit lint-infra build sizes

test: fmt-check clippy unit lint-infra
	@echo "make test: all checks passed"

fmt-check:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace

lint-infra:
	scripts/lint-infra.sh

# Release bootstraps under target/lambda/<function>/bootstrap.
build:
	scripts/build-lambdas.sh

sizes: build
	scripts/build-lambdas.sh --sizes-only
