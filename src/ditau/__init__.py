"""ditau: quantum entanglement and Bell nonlocality in pp -> Z -> tau+ tau- at the LHC."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ditau")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"
