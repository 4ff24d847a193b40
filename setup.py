# The metadata is in pyproject.toml; this shim keeps `setup.py`, which the
# project layout names, for tools that still call it.
from setuptools import setup

setup()
