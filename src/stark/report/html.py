"""``report.html``: the markdown report as one standalone page, images embedded."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path


def markdown_to_html(text: str, base: Path, title: str) -> str:
    """A standalone HTML page of the report (python-markdown with tables); images embedded as base64
    data, so the file can be shared on its own."""
    import markdown

    body = markdown.markdown(text, extensions=["tables"], output_format="html")

    def embed(match: re.Match) -> str:
        path = Path(base) / html.unescape(match.group(2))
        if not path.is_file():
            return match.group(0)
        data = base64.b64encode(path.read_bytes()).decode()
        return f'{match.group(1)}"data:image/png;base64,{data}"'

    body = re.sub(r'(<img [^>]*src=)"([^"]+\.png)"', embed, body)
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
        "table{border-collapse:collapse;margin:1em 0;font-size:90%}th,td{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3;padding:0 3px}"
    )
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body>\n" + body + "\n</body></html>\n"
    )
