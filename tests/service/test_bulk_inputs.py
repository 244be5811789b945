"""Where ``$import`` may read from: URL prefixes compared as parsed URLs, ``file://`` confined
to the import folder, and (hypothesis) no URL the policy allows reaches another host or port
than its prefix's, as httpx (the fetcher) parses it."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest, Forbidden
from medarchive.service.bulk.inputs import InputPolicy, fetch, url_allowed

PREFIX = "https://data.example.org:8443/exports/"


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://data.example.org:8443/exports/a.ndjson", True),
    ("https://DATA.example.org:8443/exports/sub/a.ndjson", True),
    ("https://data.example.org:8443/exports", False),  # the prefix ends with /
    ("https://data.example.org:8443/exportsX/a.ndjson", False),
    ("https://data.example.org:8443/exports/../admin", False),
    ("https://data.example.org:8443/exports/%2e%2e/admin", False),
    ("https://data.example.org/exports/a.ndjson", False),  # other port
    ("http://data.example.org:8443/exports/a.ndjson", False),  # other scheme
    ("https://data.example.org:8443@evil.org/exports/a", False),
    ("https://user:pw@data.example.org:8443/exports/a", False),
    ("https://data.example.org.evil.org:8443/exports/a", False),
    ("https://data.example.org:8443\\@evil.org/exports/a", False),
    ("https://data.example.org:99999/exports/a", False),
    ("file:///exports/a", False),
])
def test_url_prefixes(url: str, allowed: bool) -> None:
    assert url_allowed(url, [PREFIX]) is allowed


def test_nothing_is_allowed_by_default() -> None:
    assert not url_allowed("http://127.0.0.1/a", [])
    with pytest.raises(Forbidden):
        InputPolicy(None).check("http://127.0.0.1/a")
    with pytest.raises(Forbidden):
        InputPolicy(None).check("file:///tmp/a.ndjson")
    with pytest.raises(BadRequest):
        InputPolicy(None).check("gopher://127.0.0.1/a")


def test_file_inputs_stay_in_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a b.ndjson").write_bytes(b"{}\n")
    (tmp_path / "secret.ndjson").write_bytes(b"{}\n")
    (folder / "link.ndjson").symlink_to(tmp_path / "secret.ndjson")
    policy = InputPolicy(folder)
    assert fetch((folder / "a b.ndjson").as_uri(), policy, tmp_path / "x") == \
        (folder / "a b.ndjson").resolve()
    for url in [(tmp_path / "secret.ndjson").as_uri(), (folder / "link.ndjson").as_uri(),
                folder.as_uri() + "/../secret.ndjson", folder.as_uri() + "/%2e%2e/secret.ndjson",
                "file://otherhost" + str(folder / "a b.ndjson")]:
        with pytest.raises(Forbidden):
            policy.check(url)
    with pytest.raises(BadRequest):
        fetch(folder.as_uri() + "/missing.ndjson", policy, tmp_path / "x")


def test_settings_make_the_policy(tmp_path: Path) -> None:
    from medarchive.settings import Settings
    policy = InputPolicy.from_settings(Settings(bulk_import_dir=str(tmp_path),
                                                bulk_import_urls=f" {PREFIX} ,http://a/b"))
    assert policy == InputPolicy(tmp_path, (PREFIX, "http://a/b"))
    assert InputPolicy.from_settings(Settings(bulk_import_dir="")).folder is None


@given(st.text(alphabet=st.sampled_from("abc.:/@\\%2e?#[]!$&'()*+,;= -_~0189"), max_size=40))
def test_an_allowed_url_reaches_only_the_prefix_host(tail: str) -> None:
    url = "https://data.example.org:8443/" + tail
    for candidate in (url, "https://data.example.org:8443" + tail,
                      "https://data.example.org" + tail):
        if not url_allowed(candidate, [PREFIX]):
            continue
        try:
            parsed = httpx.URL(candidate)
        except httpx.InvalidURL:
            continue
        assert (parsed.host, parsed.port, parsed.scheme) == ("data.example.org", 8443, "https")
        assert parsed.path.startswith("/exports")
