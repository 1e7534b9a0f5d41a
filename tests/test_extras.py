"""The cloud extras work with the fsspec they resolve beside (CI installs them in its newest and oldest runs)."""

from __future__ import annotations

import importlib.util

import fsspec
import pytest


@pytest.mark.parametrize("protocol, module, extra", [("gs", "gcsfs", "gcp"), ("s3", "s3fs", "aws")])
def test_cloud_extra_gives_fsspec_its_filesystem(protocol, module, extra):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"the {extra} extra is not installed here (CI's newest and oldest runs install it)")
    cls = fsspec.get_filesystem_class(protocol)
    assert cls.__module__.split(".")[0] == module
    assert protocol in (cls.protocol if isinstance(cls.protocol, tuple) else (cls.protocol,))
