"""Drop duplicate <script> entries from each page's <head> (a Sphinx 7.4 bug; fixed in Sphinx 8).

Inline scripts added with ``app.add_js_file(None, body=...)`` after the HTML builder started
(sphinx-thebe's ``const THEBE_JS_URL = ...``, sphinx-togglebutton's ``var togglebuttonSelector``)
reach the builder twice: once directly as ``_JavaScript(None, ...)``, and once more in
``prepare_writing``, re-added from the registry as ``_JavaScript('', ...)``, which does not compare
equal. Every page then declares ``THEBE_JS_URL`` twice and the browser reports "Identifier
'THEBE_JS_URL' has already been declared" (sphinx-doc/sphinx#13402). jupyter-book 1.x needs
Sphinx < 8, so this local extension (book/_config.yml, ``sphinx: local_extensions``) removes the
second copy: same file (None and '' alike), same priority, same attributes (inline body included).
"""
from __future__ import annotations

from typing import Any


def _dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen: set[tuple[Any, ...]] = set()
    unique = []
    for js in scripts:
        attrs = getattr(js, "attributes", {})
        key = (str(getattr(js, "filename", js) or ""), getattr(js, "priority", None), tuple(sorted(attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique  # in place: the builder's own list, restored by Sphinx before the next page


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", _dedupe_scripts, priority=900)  # after others that add page scripts
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
