# The one entry point: make run | make test | make lint | make fmt | make ci
.PHONY: run test install install-test lint fmt ci

run: install
	scripts/run.sh

install:
	scripts/install.sh

install-test:
	scripts/install.sh --test

test: install-test
	scripts/test.sh

lint:
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/python manage.py check
	.venv/bin/python manage.py makemigrations --check --dry-run

fmt:
	.venv/bin/ruff format .
	.venv/bin/ruff check --fix .

ci: test
