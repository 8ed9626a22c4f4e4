"""The one progress bar of the project: tqdm, calm when stderr is not a terminal.

On a terminal the bar redraws as usual. Redirected to a log file (CI, SLURM, ``nohup``), tqdm's carriage-return
redraws would add a line fragment many times a second; there the bar prints at most one line every
:data:`LOG_INTERVAL_S` seconds instead, each ending in a newline.
"""

from __future__ import annotations

import sys

from tqdm.auto import tqdm as _tqdm

__all__ = ["LOG_INTERVAL_S", "tqdm"]

# In a notebook tqdm.auto draws a widget, not text: left as it is there.
_NOTEBOOK = any(cls.__module__.startswith("tqdm.notebook") for cls in _tqdm.__mro__)

LOG_INTERVAL_S = 5.0


class _LogFile:
    """A text stream whose every tqdm redraw ends in a newline (no carriage returns in a log)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip("\n")
        if text.strip():
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def _is_tty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _LogBar(_tqdm):
    """A bar writing to a log: ``set_postfix`` / ``set_description`` do not force a line of their own (tqdm
    redraws on each by default, so a trainer logging every step printed a line per step); the new text shows
    in the next timed line (and the final one)."""

    def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_postfix_str(self, s="", refresh=True):
        super().set_postfix_str(s, refresh=False)

    def set_description(self, desc=None, refresh=True):
        super().set_description(desc, refresh=False)

    def set_description_str(self, desc=None, refresh=True):
        super().set_description_str(desc, refresh=False)


def tqdm(*args, **kwargs):
    """``tqdm.auto.tqdm`` with the same arguments; when its stream (default stderr) is not a terminal:
    one plain line every :data:`LOG_INTERVAL_S` seconds at most, whatever the caller refreshes."""
    stream = kwargs.get("file") or sys.stderr
    if not _NOTEBOOK and not kwargs.get("disable", False) and not _is_tty(stream):
        kwargs.update(file=_LogFile(stream), mininterval=LOG_INTERVAL_S, maxinterval=2 * LOG_INTERVAL_S,
                      dynamic_ncols=False, ncols=kwargs.get("ncols") or 100)
        return _LogBar(*args, **kwargs)
    return _tqdm(*args, **kwargs)
