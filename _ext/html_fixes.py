"""Drop repeated inline <script> blocks from every HTML page.

sphinx-thebe 0.3.1 registers its inline configuration script
(`const THEBE_JS_URL = ...`) once per `env-before-read-docs` event, which fires
twice in a jupyter-book 1.0.4 build; the second copy throws "Identifier
'THEBE_JS_URL' has already been declared" in every browser. Keeping the first
copy of each identical script fixes it without touching the packages.

It also gives the theme a default colour mode: sphinx-book-theme leaves it empty,
and pydata-sphinx-theme then logs "Got invalid theme mode" as a console error.

And it writes the status words of the execution table (``nb-exec-table``, the status
page) as words: myst-nb writes them as emoji, which many machines have no font for
(they show as empty boxes).
"""

_STATUS_WORDS = {"\u2705": "ok", "\u274c": "failed"}  # check mark, cross mark


def _status_words(app, pagename, templatename, context, doctree):
    body = context.get("body")
    if body and any(mark in body for mark in _STATUS_WORDS):
        for mark, word in _STATUS_WORDS.items():
            body = body.replace(mark, word)
        context["body"] = body


def _dedupe(app, pagename, templatename, context, doctree):
    if not context.get("default_mode"):
        # An empty default makes pydata-sphinx-theme log a console error on a first visit.
        context["default_mode"] = "light"

    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {})
        # The copies differ only in filename None vs "": compare what reaches the page.
        filename = getattr(script, "filename", script) or ""
        key = (filename, tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", _dedupe)
    app.connect("html-page-context", _status_words)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
