"""Open every page of the built book in headless Chromium and check what a reader sees.

Usage: python scripts/browser_check.py [--html _build/html] [--mathjax DIR]

For each page: every image has loaded (naturalWidth > 0); the math was typeset by
MathJax with no error; no output block shows a traceback or stderr; no code block,
display equation or table is wider than the text column (at a 1280 px wide window;
what sits in a collapsed dropdown is not measured); the browser logged no console
error and no page error; an interactive explorer (Bokeh) redraws when its controls are
moved. A full-page screenshot goes to
_build/screenshots/. The page is served on 127.0.0.1; every request to another host is
refused, except MathJax, which is served from a local copy (DIR holds MathJax 3's es5/
folder) at the address the book asks for, because these machines reach no CDN.

Exits non-zero and lists the failures if any page fails a check.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
MATHJAX_PREFIX = "/npm/mathjax@3/es5/"
SKIP = {"genindex.html", "search.html", "index.html"}  # index.html only redirects

PAGE_STATE = """() => {
  // shown: laid out (not inside a collapsed dropdown); column: the text column's width
  const shown = e => (e.checkVisibility ? e.checkVisibility({visibilityProperty: true})
                                      : e.offsetParent !== null)
                     && e.getClientRects().length > 0;
  const snippet = e => e.innerText.trim().split('\\n')[0].slice(0, 60);
  const article = document.querySelector('article.bd-article') || document.querySelector('main');
  const column = article ? article.clientWidth : window.innerWidth;
  const imgs = [...document.querySelectorAll('article img, main img')];
  const outputs = [...document.querySelectorAll('div.output, div.cell_output')];
  return {
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    mathSource: document.querySelectorAll('.math, span.math, div.math').length,
    mathRendered: document.querySelectorAll('mjx-container').length,
    mathErrors: document.querySelectorAll('mjx-merror').length,
    badOutputs: outputs.filter(o => /\\b(traceback|stderr)\\b/.test(o.className)
                                   || /Traceback \\(most recent call last\\)/.test(o.innerText)).length,
    clippedCode: [...document.querySelectorAll('pre')]
      .filter(p => shown(p) && p.scrollWidth > p.clientWidth + 1).map(snippet),
    clippedMath: [...document.querySelectorAll('mjx-container[display="true"]')]
      .filter(m => shown(m) && m.scrollWidth > m.clientWidth + 1)
      .map(m => m.closest('section').id || 'display equation'),
    wideTables: [...document.querySelectorAll('article table')]
      .filter(t => shown(t) && t.getBoundingClientRect().width > column + 1).map(snippet),
  };
}"""


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _route(mathjax: Path, base: str):
    def handle(route):
        url = route.request.url
        if url.startswith(base):
            return route.continue_()
        if MATHJAX_PREFIX in url:
            rel = url.split(MATHJAX_PREFIX, 1)[1].split("?")[0]
            path = mathjax / rel
            if path.is_file():
                ctype = "application/javascript" if path.suffix == ".js" else None
                return route.fulfill(path=str(path), content_type=ctype)
        return route.abort()
    return handle


# An explorer (copyaverage.explorer) is driven like a reader would: change k and n, the
# seed and the activation; after each change the sentence above its figures and the data
# they show must change. Returns the problems found.
EXPLORE = """async () => {
  const docs = (window.Bokeh && Bokeh.documents) || [];
  const doc = docs.find(d => d.get_model_by_name('info'));
  if (!doc) return null;
  const m = name => doc.get_model_by_name(name);
  const pause = () => new Promise(r => setTimeout(r, 300));
  const state = () => JSON.stringify([m('info').text, m('points').data.seed,
                                      m('points').data.loss, m('cosines').data.u]);
  const problems = [];
  for (let i = 0; i < 20 && !m('info').text; i++) await pause();
  if (!m('info').text) problems.push('the explorer drew nothing');
  const steps = [
    ['k and n', () => { const o = m('k').options; m('k').value = o[o.length - 1];
                        m('n').value = '1'; }],
    ['seed', () => { m('seed').value = m('seed').end; }],
    ['activation', () => { const o = m('activation').options;
                           m('activation').value = o.find(x => x !== m('activation').value); }],
  ];
  for (const [what, act] of steps) {
    const before = state();
    act();
    await pause();
    if (state() === before) problems.push('changing ' + what + ' changed nothing');
    if (m('points').data.seed.length === 0) problems.push('no runs shown after changing ' + what);
  }
  const k = parseInt(m('k').value), n = parseInt(m('n').value);
  if (m('cosines').data.u.length !== n * k)
    problems.push('cosines: ' + m('cosines').data.u.length + ' cells for n x k = ' + n * k);
  return problems;
}"""


def check_page(page, url: str, shot: Path) -> list[str]:
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.goto(url, wait_until="networkidle")
    page.wait_for_function("() => !window.MathJax || !MathJax.startup || "
                           "MathJax.startup.promise.then(() => true)", timeout=30_000)
    page.evaluate("() => window.MathJax && MathJax.startup ? MathJax.startup.promise : null")
    state = page.evaluate(PAGE_STATE)
    if state["broken"]:
        problems.append(f"images that did not load: {state['broken']}")
    if state["mathSource"] and not state["mathRendered"]:
        problems.append(f"{state['mathSource']} math elements but nothing typeset by MathJax")
    if state["mathErrors"]:
        problems.append(f"{state['mathErrors']} MathJax errors")
    if state["badOutputs"]:
        problems.append(f"{state['badOutputs']} output blocks with a traceback or stderr")
    for key, what in [("clippedCode", "code blocks wider than the column (they scroll)"),
                      ("clippedMath", "display equations wider than the column"),
                      ("wideTables", "tables wider than the text column")]:
        if state[key]:
            problems.append(f"{len(state[key])} {what}: {state[key][:3]}")
    explorer = page.evaluate(EXPLORE)
    if explorer:
        problems += [f"explorer: {p}" for p in explorer]
    page.screenshot(path=str(shot), full_page=True)
    print(f"  {url.rsplit('/', 1)[-1]:<28} images {state['images']:>2}  "
          f"math {state['mathRendered']:>4}/{state['mathSource']:<4} "
          f"{'explorer ' if explorer is not None else ''}"
          f"{'OK' if not problems else 'FAILED'}")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html", default="_build/html", type=Path)
    parser.add_argument("--mathjax", default=".cache/mathjax/package/es5", type=Path)
    parser.add_argument("--screenshots", default="_build/screenshots", type=Path)
    args = parser.parse_args(argv)
    if not (args.html / "index.html").is_file():
        print(f"no built book at {args.html}: run `make book` first", file=sys.stderr)
        return 2
    if not (args.mathjax / "tex-mml-chtml.js").is_file():
        print(f"no local MathJax at {args.mathjax}", file=sys.stderr)
        return 2
    pages = sorted(p for p in args.html.rglob("*.html")
                   if p.name not in SKIP and "_static" not in p.parts and "_sources" not in p.parts)
    args.screenshots.mkdir(parents=True, exist_ok=True)
    server, port = serve(args.html)
    base = f"http://127.0.0.1:{port}/"
    failures: dict[str, list[str]] = {}
    print(f"Checking {len(pages)} pages in {CHROMIUM}:")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", _route(args.mathjax.resolve(), base))
        for path in pages:
            rel = path.relative_to(args.html).as_posix()
            page = context.new_page()
            shot = args.screenshots / (rel.replace("/", "__").removesuffix(".html") + ".png")
            problems = check_page(page, base + rel, shot)
            if problems:
                failures[rel] = problems
            page.close()
        browser.close()
    server.shutdown()
    for rel, problems in failures.items():
        print(f"FAILED {rel}:", *problems, sep="\n    ", file=sys.stderr)
    print(f"{len(pages) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
