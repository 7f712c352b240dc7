"""A griffe extension: turn the Sphinx roles in herdexec's docstrings into links.

herdexec's docstrings refer to each other the way Sphinx and the stdlib do
(:class:`Work`, :meth:`send_work`, :attr:`herd_size`). mkdocstrings reads docstrings as
Markdown, where those roles would show up as literal text. This rewrites each role into
a mkdocstrings cross-reference, so ``mkdocs build --strict`` also checks that every
target exists. A name is looked up as a member of the class the docstring belongs to,
then as a top-level ``herdexec`` name, so the docstrings stay short.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|attr|exc|data|obj):`~?([\w.]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`name``` into ``[`name`][herdexec.Owner.name]``."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name == "herdexec":
            _rewrite(pkg, pkg)

    # The same hook under its griffe 1.x name; a second pass finds no role left.
    on_package_loaded = on_package


def _rewrite(obj: griffe.Object, pkg: griffe.Module) -> None:
    if obj.docstring is not None:
        obj.docstring.value = _ROLE.sub(lambda m: _link(m.group(1), obj, pkg), obj.docstring.value)
    for member in obj.members.values():
        if not member.is_alias and member.parent is obj:
            _rewrite(member, pkg)  # type: ignore[arg-type]


def _link(name: str, obj: griffe.Object, pkg: griffe.Module) -> str:
    owner = obj if obj.is_class else obj.parent
    if owner is not None and owner.is_class and name in owner.all_members:
        target = f"{pkg.name}.{owner.name}.{name}"
    elif name.partition(".")[0] in pkg.members:
        target = f"{pkg.name}.{name}"
    else:
        target = name  # a full path; autorefs says so if it resolves nowhere
    label = name.rpartition(".")[2]
    return f"[`{label}`][{target}]"
