"""Thin shim so Dataflow's ``--setup_file ./setup.py`` can stage the package; metadata lives in pyproject.toml."""

import setuptools

setuptools.setup()
