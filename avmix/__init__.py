"""avmix: compose sounding videos from separate audio tracks."""
# the one place the version is written (pyproject.toml reads it); importlib.metadata would cost
# 20 ms of every command's start-up
__version__ = "0.5.0"

from avmix.errors import AvmixError  # noqa: E402

__all__ = ["AvmixError", "__version__"]
