"""The distribution's metadata, read from the files (nothing is built): the name a
user installs, the licence, the type-hint marker and the README's install lines."""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Every page a user reads for the install command.
USER_DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `pip install cq`, `pip install "cq[postgres]"`: PyPI's `cq` is someone else's package.
WRONG_INSTALL = re.compile(r"""pip install\s+(?:-\S+\s+)*["']?cq(?:\[|["'\s]|$)""")


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def install_lines():
    return [
        (path.name, line)
        for path in USER_DOCS
        for line in path.read_text().splitlines()
        if "pip install" in line
    ]


def test_distribution_is_named_channels_cq(project):
    assert project["name"] == "channels-cq"


def test_license_file_is_mit_as_the_metadata_says(project):
    text = (ROOT / "LICENSE").read_text()
    assert project["license"] == "MIT"
    assert text.startswith("MIT License")
    assert "the cq authors" in text
    # PEP 639: the expression replaces the licence classifiers; setuptools refuses both.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]


def test_classifiers_name_the_supported_pythons_and_djangos(project):
    classifiers = set(project["classifiers"])
    for version in ("3.11", "3.12", "3.13"):
        assert f"Programming Language :: Python :: {version}" in classifiers
    for version in ("5.2", "6.0"):
        assert f"Framework :: Django :: {version}" in classifiers


def test_py_typed_marker_ships_as_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert (ROOT / "cq" / "py.typed").is_file()
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["cq"]


def test_install_lines_use_channels_cq():
    lines = install_lines()
    assert ("README.md", '$ pip install "channels-cq[postgres]"') in [
        (name, line.split("#")[0].strip()) for name, line in lines
    ]
    wrong = [(name, line) for name, line in lines if WRONG_INSTALL.search(line)]
    assert not wrong, f"install lines naming PyPI's unrelated `cq`: {wrong}"


@pytest.mark.parametrize(
    "line",
    [
        "$ pip install cq",
        '$ pip install "cq[postgres]"',
        "pip install -U cq  # x",
        "pip install 'cq'",
    ],
)
def test_wrong_install_pattern_catches_the_old_name(line):
    assert WRONG_INSTALL.search(line)


@pytest.mark.parametrize(
    "line",
    ["$ pip install channels-cq", '$ pip install "channels-cq[postgres]"', "pip install cqx"],
)
def test_wrong_install_pattern_passes_the_new_name(line):
    assert not WRONG_INSTALL.search(line)
