"""avmix: compose sounding videos from separate audio tracks."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("avmix")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

from avmix.errors import AvmixError  # noqa: E402

__all__ = ["AvmixError", "__version__"]
