"""Sphinx extension: every page gets its scripts once, and MathJax wherever it may be needed.

Two problems of the Jupyter Book 1.x stack, both found by ``tests/test_browser.py``:

* sphinx-thebe (loaded by Jupyter Book) registers its inline configuration script, which
  declares ``const THEBE_JS_URL``, once per read phase; a build with two phases puts it on
  each page twice and the browser stops at "Identifier 'THEBE_JS_URL' has already been
  declared". The togglebutton script is doubled the same way. The copies differ only in an
  empty file name (``None`` or ``""``), so exact duplicates are dropped at page-render time.
* Sphinx adds MathJax only to pages it believes hold equations, and it misses notebook pages
  whose math comes from Markdown cells: their formulas stayed raw LaTeX. The assets policy
  ``"always"`` loads the (local, offline) MathJax on every page.

It also sets the theme's default colour mode (see ``_light_by_default``) and adds
``static/book_outputs.css``: printed cell outputs keep their columns (a line is never wrapped)
and scroll inside their own box where the column is narrower than they are, and so do display
equations, whose numbers get a line of their own on a narrow screen, so a phone shows every
equation and every printed table whole (``tests/test_browser.py`` checks it at 1280 and 390 px).
"""

from pathlib import Path

STATIC = Path(__file__).parent / "static"


def _unique_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, kept = set(), []
    for script in scripts:
        attributes = getattr(script, "attributes", {}) or {}
        filename = getattr(script, "filename", script) or ""  # inline scripts come as None or ""
        key = (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    scripts[:] = kept  # in place: it is the builder's own list, which later handlers append to


def _light_by_default(app, config):
    # Without a default mode the theme logs "Got invalid theme mode" as a console error. Its
    # layout reads a bare `default_mode`, i.e. from html_context, which Jupyter Book also fills:
    # add to it rather than replace it from _config.yml.
    config.html_context.setdefault("default_mode", "light")


def _book_css(app, config):
    config.html_static_path.append(str(STATIC))


def setup(app):
    app.set_html_assets_policy("always")
    app.connect("config-inited", _light_by_default)
    app.connect("config-inited", _book_css)
    app.add_css_file("book_outputs.css")
    app.connect("html-page-context", _unique_scripts, priority=999)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
