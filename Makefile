# Shortcuts for developers. The README's two commands are `bash scripts/demo.sh` and `bash scripts/test.sh`.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: setup demo test sanity lint units mutation mutation-quick lab-up lab-down lab-status clean bench build changelog

setup:
	@scripts/setup.sh

demo:
	@scripts/demo.sh

test:
	@scripts/test.sh

# Single stages of the test command, for development.
sanity lint units:
	@scripts/test.sh $@

# Mutation testing of the safety core (docs/TESTING.md): not a test stage, it takes about an hour on two cores.
# mutation-quick mutates only the strict functions (interlocks, storm guard, stale_copies). Report: .cache/mutation/report.md.
mutation: setup
	@scripts/mutation.sh --jobs 2

mutation-quick: setup
	@scripts/mutation.sh --jobs 2 --quick

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

# Fold the fragments in changelogs/fragments/ into the release of galaxy.yml's version (a new one, or the existing
# one again), with every plugin read afresh (a new module joins "New Modules"), and regenerate CHANGELOG.rst; the
# fragments are removed. The lint stage checks the result.
changelog: setup
	@source scripts/env.sh && antsibull-changelog lint && antsibull-changelog release --update-existing --reload-plugins

clean:
	rm -rf .cache tests/output dist .pytest_cache .hypothesis
