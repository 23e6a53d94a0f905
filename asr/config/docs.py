"""Every key of a schema with its default and its comment, read from the dataclass source (where each field has
its one-line comment, DESIGN.md style rule 2): what `asr-<command> --help` prints, with no second copy to keep.
"""
from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
from typing import Any, Iterator

_FIELD = re.compile(r"^\s+(\w+)\s*:\s*[^=#]+?(?:=\s*(.+?))?\s*(?:#\s?(.*))?$")
_COMMENT = re.compile(r"^\s+#\s?(.*)$")


def _comments(cls: type) -> dict[str, str]:
    """field -> its comment: the comment lines right above the field, then the text after `#` on its line."""
    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    pending: list[str] = []  # comment lines above the next field
    for line in lines[1:]:
        if line.strip().startswith(("def ", "@")):
            break
        c = _COMMENT.match(line)
        m = None if c else _FIELD.match(line)
        if c:
            pending.append(c.group(1).strip())
        elif m and not line.strip().startswith(('"', "'")):
            parts = [" ".join(pending), (m.group(3) or "").strip()]
            out[m.group(1)] = "; ".join(p for p in parts if p)
            pending = []
        else:
            pending = []
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _show(value: Any) -> str:
    if hasattr(value, "value") and not isinstance(value, (list, dict)):
        value = value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value).replace("'", "")


def keys(schema: type, prefix: str = "") -> Iterator[tuple[str, str, str]]:
    """(dotted key, default, comment) for every leaf of `schema`; nested dataclass groups are walked."""
    comments = {}
    for klass in reversed(schema.__mro__):  # a subclass's fields after (and overriding) its base's comments
        if dataclasses.is_dataclass(klass):
            comments.update(_comments(klass))
    for f in dataclasses.fields(schema):
        default = _default(f)
        if dataclasses.is_dataclass(default):
            yield from keys(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", _show(default), comments.get(f.name, "")


def describe(schema: type, values: Any = None, width: int = 110) -> str:
    """The keys of `schema` as aligned lines, `key=value  comment` (wrapped), grouped by their first part. The
    value is the schema's default, or the key's value in `values` (a composed DictConfig: the command's presets)."""
    from omegaconf import OmegaConf

    rows = list(keys(schema))
    if values is not None:
        rows = [(k, _show(OmegaConf.to_container(v) if OmegaConf.is_config(v) else v), c)
                for k, d, c in rows for v in [OmegaConf.select(values, k, default=d)]]
    left = min(max((len(k) + len(d) + 1 for k, d, _ in rows), default=0), 40)
    out, group = [], None
    for key, default, comment in rows:
        head = key.split(".")[0] if "." in key else ""
        if head != group and head:
            out.append(f"\n  {head}:")
        group = head
        indent = "    " if head else "  "
        text = f"{key}={default}"
        body = textwrap.wrap(comment, max(30, width - len(indent) - left - 2)) or [""]
        first = f"{indent}{text:<{left}}  {body[0]}" if len(text) <= left else f"{indent}{text}\n{indent}{'':<{left}}  {body[0]}"
        out.append("\n".join([first.rstrip(), *(f"{indent}{'':<{left}}  {b}" for b in body[1:])]))
    return "\n".join(out).lstrip("\n")
