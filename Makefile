# `make test` and `make book` each set up their own environment (.venv) first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HTML   := _build/html

SHELL       := bash
.SHELLFLAGS := -eo pipefail -c

.PHONY: venv test book test-book pdf clean

# Re-install only when the declared dependencies change.
venv: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip "setuptools>=77"
	$(BIN)/python -m pip install -e ".[book,test]"
	touch $@

test: venv
	$(BIN)/python -m pytest -q tests

# Executes the pages (two at a time, skipping those whose code and inputs are unchanged
# since they last ran: scripts/execute_pages.py), then renders them; any warning, failing
# cell or traceback fails the build. FORCE=1 executes every page again.
book: venv
	rm -rf $(HTML)/reports
	$(BIN)/python scripts/execute_pages.py $(if $(FORCE),--force)
	$(BIN)/jupyter-book build . -W -n --keep-going --all
	@if [ -d $(HTML)/reports ]; then \
		echo "FAILED: execution reports in $(HTML)/reports" >&2; exit 1; fi
	@if grep -rlE --include='*.html' 'class="[^"]*output (traceback|stderr)' $(HTML); then \
		echo "FAILED: the pages above show a traceback or stderr output" >&2; exit 1; fi
	@echo "Book: $(CURDIR)/$(HTML)/index.html"

# Real-browser check of the built book: Debian's Chromium driven by Playwright, MathJax
# served from a local copy (these machines reach no CDN). Screenshots: _build/screenshots.
MATHJAX := .cache/mathjax/package/es5/tex-mml-chtml.js

test-book: venv $(VENV)/.browser-stamp $(MATHJAX)
	@if [ ! -f $(HTML)/index.html ]; then $(MAKE) book; fi
	$(BIN)/python scripts/browser_check.py --html $(HTML)

$(VENV)/.browser-stamp: $(VENV)/.stamp
	$(BIN)/python -m pip install -e ".[browser]"
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; fi
	touch $@

$(MATHJAX):
	@command -v npm >/dev/null || { echo "test-book needs npm (apt-get install npm) to fetch MathJax" >&2; exit 1; }
	mkdir -p .cache/mathjax
	cd .cache/mathjax && npm pack --silent mathjax@3.2.2 && tar xzf mathjax-3.2.2.tgz

# The book as one PDF, _build/latex/copy-or-average.pdf (jupyter-book's pdflatex builder,
# which runs xelatex), from the pages `make book` executed; any Sphinx warning fails it.
# Not part of CI. Needs TeX Live; on Debian or Ubuntu: apt-get install latexmk xindy
# texlive-xetex texlive-latex-recommended texlive-latex-extra texlive-fonts-recommended
# texlive-fonts-extra texlive-plain-generic fonts-freefont-otf (about 1.5 GB).
pdf: book
	@command -v xelatex >/dev/null && command -v latexmk >/dev/null && command -v xindy >/dev/null \
		|| { echo "make pdf needs TeX Live (xelatex, latexmk, xindy): see the Makefile" >&2; exit 1; }
	$(BIN)/jupyter-book build . --builder pdflatex -W -n --keep-going
	@echo "PDF: $(CURDIR)/_build/latex/copy-or-average.pdf"

clean:
	rm -rf _build book/*.ipynb
