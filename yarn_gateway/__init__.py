"""yarn-gateway: Jupyter kernels in YARN cluster mode for desktop notebooks."""

from ._version import __version__

__all__ = ["__version__"]
