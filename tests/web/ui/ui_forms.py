"""The CSRF field of a UI page, shared by the UI tests and their fixtures (a module of its own:
test modules cannot import conftest.py reliably)."""

from __future__ import annotations

import re


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)
