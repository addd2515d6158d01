"""Silence the OpenMMLab stack's known-harmless warnings, so a user sees harmony-bench's own messages.

Every command that builds an mmseg/mmdet model prints the same deprecation notices, several times
(mmengine's ``is_installed`` re-imports ``pkg_resources``; mmseg warns about its own APIs that our
protocol files use as documented).  None of them is about the run's inputs, and a real warning
drowns among them.  The filters here are scoped: each names the message and, where the stack names
it, the module that warns, so the same text from anywhere else, and every other warning from these
modules, still shows.  mmengine's notices that go through its logger (not ``warnings``) are dropped
by :class:`KnownNoise`, attached to the run's logger.
"""

from __future__ import annotations

import logging
import re
import warnings

# (message regex, category, module regex or "" for any module); the module is where Python
# attributes the warning (the caller of ``warnings.warn``).
KNOWN_WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # mmengine.utils.package_utils imports (and importlib.reload()s) pkg_resources on every is_installed()
    (r"pkg_resources is deprecated as an API", Warning, ""),
    (r"``build_loss`` would be deprecated soon", UserWarning, r"mmseg\.models\.builder"),
    (r"Default ``avg_non_ignore`` is False", UserWarning, r"mmseg\.models\.losses\.cross_entropy_loss"),
    (r"The draw is False", UserWarning, r"mmseg\.engine\.hooks\.visualization_hook"),
    (r"`reduce_zero_label` will be deprecated", UserWarning, r"mmseg\.datasets\.transforms\.loading"),
)

# mmengine notices printed through its logger (``print_log(..., level=WARNING)``).
KNOWN_LOG_MESSAGES = re.compile(
    r"The prefix is not set in metric class"
    r'|"FileClient" will be deprecated in future'
    r'|"HardDiskBackend" is the alias of "LocalBackend"'
)


def silence_known_warnings() -> None:
    """Install the scoped filters (idempotent: ``filterwarnings`` replaces an identical filter)."""
    for message, category, module in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)


class KnownNoise(logging.Filter):
    """Drops mmengine's known-harmless logger notices; everything else passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a known notice."""
        return not KNOWN_LOG_MESSAGES.search(record.getMessage())


def quiet_logger(logger: logging.Logger) -> None:
    """Attach :class:`KnownNoise` to a run's logger once."""
    if not any(isinstance(f, KnownNoise) for f in logger.filters):
        logger.addFilter(KnownNoise())
