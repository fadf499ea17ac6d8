# The one entry point: make run | make test | make lint | make fmt | make lock | make ci
# PANEL_DB=postgres make run: the same on this machine's PostgreSQL (scripts/postgres.sh).
.PHONY: run test install install-test lint fmt lock ci

run: install
	scripts/run.sh

install:
	scripts/install.sh

install-test:
	scripts/install.sh --test

# The runtime check, the suite on PostgreSQL, then on SQLite (scripts/test.sh says what).
test:
	scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/python manage.py check
	.venv/bin/python manage.py makemigrations --check --dry-run
	.venv/bin/lint-imports
	.venv/bin/mypy

fmt:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

# Regenerates both hash-locked requirement files from requirements*.in (uv, from the dev lock).
lock:
	.venv/bin/uv pip compile requirements.in --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command "make lock" -q -o requirements.txt
	.venv/bin/uv pip compile requirements-dev.in --universal --python-version 3.11 \
	  --generate-hashes --custom-compile-command "make lock" -q -o requirements-dev.txt

ci: test
