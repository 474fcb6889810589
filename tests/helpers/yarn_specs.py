"""Kernelspec variants and constants for YARN kernel tests."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

PORT_RANGE = (42000, 42999)


def make_spec(dest: Any, name: str, **config: Any) -> str:
    """A copy of spark_python_yarn_cluster with provisioner config overrides."""
    from yarn_gateway.app import builtin_kernelspec_dir

    src = os.path.join(builtin_kernelspec_dir(), "spark_python_yarn_cluster")
    out = os.path.join(str(dest), name)
    shutil.copytree(src, out)
    with open(os.path.join(out, "kernel.json")) as f:
        spec = json.load(f)
    spec["metadata"]["kernel_provisioner"]["config"].update(config)
    with open(os.path.join(out, "kernel.json"), "w") as f:
        json.dump(spec, f)
    return out
