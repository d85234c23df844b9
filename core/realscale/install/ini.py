"""Editing one key of a Qt INI text (Krita's kritarc) and keeping every other line."""

from __future__ import annotations


def set_ini_value(text: str, section: str, key: str, value: str) -> tuple[str, str | None]:
    """Set ``key=value`` in ``[section]`` of a Qt INI text, keeping every other line.

    Returns the new text and the previous value (None when the key was absent).
    """
    lines = text.splitlines()
    header = f"[{section}]"
    start = next((i for i, line in enumerate(lines) if line.strip() == header), None)
    if start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [header, f"{key}={value}"]
        return "\n".join(lines) + "\n", None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")),
               len(lines))
    for i in range(start + 1, end):
        name, sep, old = lines[i].partition("=")
        if sep and name.strip() == key:
            lines[i] = f"{key}={value}"
            return "\n".join(lines) + "\n", old.strip()
    insert = end
    while insert > start + 1 and not lines[insert - 1].strip():
        insert -= 1  # keep the blank line before the next section
    lines.insert(insert, f"{key}={value}")
    return "\n".join(lines) + "\n", None


def remove_ini_value(text: str, section: str, key: str) -> str:
    """``text`` without ``key`` in ``[section]``."""
    lines = text.splitlines()
    inside = False
    kept = []
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            inside = stripped == f"[{section}]"
        elif inside and line.partition("=")[0].strip() == key and "=" in line:
            continue
        kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")
