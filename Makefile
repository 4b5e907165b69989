# The two commands of the README are `make demo` and `make test`; everything else is a building block.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: setup demo test sanity lint units lab-up lab-down lab-status clean bench build

setup:
	@scripts/setup.sh

demo: setup
	@$(PY) -m lab demo

test: setup
	@scripts/test.sh

# Single stages of `make test`, for development.
sanity lint units: setup
	@scripts/test.sh $@

lab-up: setup
	@$(PY) -m lab up

lab-down:
	@$(PY) -m lab down

lab-status:
	@$(PY) -m lab status

bench: setup
	@scripts/bench.sh

build: setup
	@.venv/bin/ansible-galaxy collection build --force --output-path dist

clean:
	rm -rf .cache tests/output dist .pytest_cache .hypothesis
