"""explain.md and explain.html from a list of sections (text, tables, figures)."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Section", "write_document"]


@dataclass
class Section:
    """One heading with paragraphs, tables ``(caption, header, rows)`` and figures."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    figures: list[tuple[str, str]] = field(default_factory=list)  # (caption, file name)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_document(out_dir: Path, title: str, sections: list[Section]) -> tuple[Path, Path]:
    """Write ``explain.md`` and ``explain.html`` into ``out_dir``; return both paths."""
    md = [f"# {title}", ""]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
        "padding:2px 6px}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for section in sections:
        md += [f"## {section.title}", ""]
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for text in section.paragraphs:
            md += [text, ""]
            parts.append(f"<p>{html.escape(text)}</p>")
        for caption, header, rows in section.tables:
            md += [f"**{caption}**", "", _md_table(header, rows), ""]
            parts += [f"<h3>{html.escape(caption)}</h3>", _html_table(header, rows)]
        for caption, name in section.figures:
            md += [f"![{caption}]({name})", ""]
            parts.append(
                f"<figure><img src='{html.escape(name)}' alt='{html.escape(caption)}'>"
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
    parts.append("</body></html>")
    md_path, html_path = out_dir / "explain.md", out_dir / "explain.html"
    _atomic_write(md_path, "\n".join(md))
    _atomic_write(html_path, "\n".join(parts))
    return md_path, html_path
