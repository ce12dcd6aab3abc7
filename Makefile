# `make test` and `make book` each set up their own environment (.venv) first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HTML   := _build/html

SHELL       := bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: venv test book clean

# Re-install only when the declared dependencies change.
venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[book,test]"
	touch $@

test: venv
	$(BIN)/python -m pytest -q tests

# Executes every notebook; any warning, failing cell or traceback fails the build.
book: venv
	rm -rf $(HTML)/reports
	$(BIN)/jupyter-book build . -W -n --keep-going --all
	@if [ -d $(HTML)/reports ]; then \
		echo "FAILED: execution reports in $(HTML)/reports" >&2; exit 1; fi
	@if grep -rlE --include='*.html' 'class="[^"]*output (traceback|stderr)' $(HTML); then \
		echo "FAILED: the pages above show a traceback or stderr output" >&2; exit 1; fi
	@echo "Book: $(CURDIR)/$(HTML)/index.html"

clean:
	rm -rf _build book/*.ipynb
