"""What the package says about itself on an index: license, links, supported Pythons."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_the_license_file_is_the_mit_license_the_metadata_declares() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert PROJECT["license"] == "MIT"
    assert text.startswith("MIT License\n")
    assert re.search(r"^Copyright \(c\) \d{4} timeback-client developers$", text, re.M)
    # PEP 639: the expression is the license; a License :: classifier beside it is deprecated.
    assert [c for c in PROJECT["classifiers"] if c.startswith("License ::")] == []


def test_there_is_a_classifier_for_each_supported_python_and_this_one_is_among_them() -> None:
    minimum = re.fullmatch(r">=3\.(\d+)", PROJECT["requires-python"])
    assert minimum
    listed = {
        int(m[1])
        for c in PROJECT["classifiers"]
        if (m := re.fullmatch(r"Programming Language :: Python :: 3\.(\d+)", c))
    }
    assert min(listed) == int(minimum[1])
    assert listed == set(range(min(listed), max(listed) + 1))
    assert sys.version_info[1] in listed


def test_every_project_link_points_at_the_repository_or_its_pages() -> None:
    urls = PROJECT["urls"]
    assert set(urls) == {"Homepage", "Documentation", "Changelog", "Issues"}
    home = r"https://(github\.com/timeback|timeback\.github\.io)/timeback-client([/#].*)?"
    for url in urls.values():
        assert re.fullmatch(home, url), url
