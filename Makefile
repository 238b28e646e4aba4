# reelbench developer commands. `make demo` and `make test` are the two a new
# user needs; both create and fill their own virtual environment.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install build demo test test-rust test-python lint bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip "maturin>=1.9,<2"

# The native extension in release mode, installed editable with the Python
# dependencies (runtime, test, lint). Cargo makes repeated builds cheap.
# VIRTUAL_ENV is set so that maturin installs into $(VENV), not into a
# virtual environment that happens to be active in the calling shell.
install: $(PY)
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release --quiet --extras test,lint

build: install

demo: install
	cd examples && ../$(VENV)/bin/reelbench run demo.toml --report demo-report

test: install test-rust test-python

test-rust:
	cargo test --release -p reelbench-core --lib --tests

test-python: install
	scripts/ensure-test-deps
	$(VENV)/bin/pytest tests

lint: install
	cargo fmt --all --check
	cargo clippy --all-targets --release -- -D warnings
	$(VENV)/bin/ruff check python tests benches
	$(VENV)/bin/ruff format --check python tests benches
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest reelbench._native --allowlist stubtest-allowlist.txt

bench: install
	$(VENV)/bin/pytest benches --benchmark-enable --benchmark-only \
		--benchmark-columns=min,median,mean,rounds --benchmark-json=.benchmarks/latest.json

clean:
	rm -rf $(VENV) target .pytest_cache .mypy_cache .ruff_cache
