# Thin aliases for the scripts in hack/; the scripts are the source of truth.
.PHONY: setup test demo check cluster-up cluster-down fmt

setup:
	hack/setup

test:
	hack/test

demo:
	hack/demo

fmt:
	.venv/bin/ruff format . && .venv/bin/ruff check --fix .

cluster-up:
	hack/local-cluster up

cluster-down:
	hack/local-cluster down
