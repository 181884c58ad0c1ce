"""MkDocs hooks of the documentation site (mkdocs.yml: ``hooks``).

The docstrings in ``src/deepscope`` cross-reference with Sphinx roles (``:class:`Registry```,
``:func:`~deepscope.export.save_model```), which mkdocstrings leaves as they are. Rather than
rewrite hundreds of docstrings, the API pages turn each role into code: a dotted name becomes an
optional cross-reference that mkdocs-autorefs links when the object is documented (and leaves as
plain code when it is not); a bare name stays plain code, since it could match an unrelated heading.
``~`` shows only the last component, as in Sphinx. A paragraph that ends in Sphinx's literal-block
marker ``::`` before a code block ends in one colon.
"""

from __future__ import annotations

import html
import re
from typing import Any

_ROLE = re.compile(r":(?:class|func|meth|attr|mod|exc|data|obj|const):<code>(~?)([^<]+)</code>")
_LITERAL_MARKER = re.compile(r"::</p>(\s*<div class=\"highlight\">)")


def _replace(match: re.Match[str]) -> str:
    short, target = match.group(1), html.unescape(match.group(2)).lstrip(".")
    shown = target.rsplit(".", 1)[-1] if short else target
    code = f"<code>{html.escape(shown)}</code>"
    if "." not in target:
        return code
    return f'<autoref identifier="{html.escape(target)}" optional>{code}</autoref>'


def on_page_content(html_text: str, **kwargs: Any) -> str:
    """Turn the Sphinx roles of rendered docstrings into code and cross-references."""
    return _LITERAL_MARKER.sub(r":</p>\1", _ROLE.sub(_replace, html_text))
