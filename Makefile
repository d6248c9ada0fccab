# Two entry points for a new user (see README):
#   make demo   sets up .venv and runs the embedded default study
#   make test   sets up .venv and runs the test suite (CI runs this through .ci/run)
.PHONY: setup demo test lint bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/vbmkit demo --out vbmkit-demo

lint: setup
	.venv/bin/ruff check vbmkit tests benchmarks
	.venv/bin/lint-imports

test: setup lint
	.venv/bin/python -m pytest -q -n 2 --durations=15

bench: setup
	for f in benchmarks/*.py; do .venv/bin/python $$f || exit 1; done
