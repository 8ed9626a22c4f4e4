"""Defaults shared by the command line and the Python API, defined once."""

from __future__ import annotations

#: Image side in pixels when none is given (the 64x64 of the DCGAN papers, Essipova et al. 2020 and Lunagariya & Patel).
DEFAULT_SIZE = 64
#: Images in the built-in phantom set when no data is given (``phantom`` = ``phantom:2048``).
DEFAULT_PHANTOM_N = 2048
#: CPU threads of ``dermsynth demo``: fixed rather than load-dependent (``dermsynth.device.choose_threads``), since the
#: thread count changes float summation order and so the trained GAN; 2 = the 2-core CPU its recorded numbers come
#: from. ``DERMSYNTH_THREADS`` set by the user still wins.
DEMO_THREADS = 2
