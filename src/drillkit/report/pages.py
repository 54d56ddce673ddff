"""The report package's pages: one Jinja2 environment over templates/, in which every HTML page
(report.html.j2, history.html.j2) extends base.html.j2, the one place for the head, the
content-security policy and the styles the pages share."""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined


@cache
def environment() -> Environment:
    """The templates of drillkit.report, autoescaped; an undefined name is an error."""
    return Environment(loader=PackageLoader("drillkit.report", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_page(template: str, **ctx: Any) -> str:
    """The page `template` (a file of templates/) rendered with `ctx`."""
    return environment().get_template(template).render(**ctx)


def template_source(name: str) -> str:
    """A file of templates/ as shipped, unrendered."""
    env = environment()
    return env.loader.get_source(env, name)[0]
