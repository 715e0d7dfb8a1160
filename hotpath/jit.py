"""Every kernel is compiled once, at start-up, and never on the order path.

``kernel(signatures)`` is ``numba.njit`` with explicit signatures and ``cache=True``: the
machine code is built (or loaded from the on-disk cache) when the module is imported, and the
dispatcher is registered here. ``freeze()`` disables compilation on all of them, so a call with
an unexpected type raises ``TypeError`` instead of compiling for tens of milliseconds in the
middle of a session, and returns a report of what loaded from cache.
"""

from __future__ import annotations

from dataclasses import dataclass

from numba import njit

KERNELS: list = []


def kernel(signatures, **options):
    """``@njit(signatures, cache=True)`` that also registers the dispatcher for ``freeze()``."""

    def wrap(fn):
        dispatcher = njit(signatures, cache=True, **options)(fn)
        KERNELS.append(dispatcher)
        return dispatcher

    return wrap


@dataclass(frozen=True, slots=True)
class KernelReport:
    kernels: int
    signatures: int
    from_cache: int
    compiled: int

    def format(self) -> str:
        return (
            f"{self.kernels} kernels, {self.signatures} signatures: {self.from_cache} loaded "
            f"from cache, {self.compiled} compiled now; compilation is now disabled"
        )


def entry(dispatcher):
    """The compiled entry point of a kernel with exactly one signature.

    A dispatcher call works out the Numba type of every argument and looks the signature up
    before it enters the machine code: ~300 ns for a risk check's fifteen arguments, ~700 ns for
    the book kernel's twelve, more than the checks themselves. The entry point skips that and
    only unboxes, which checks that an array is an array of the right item size but not its
    dtype, dimensions or layout. So it is for call sites whose arguments are the engine's own
    preallocated arrays and plain ints and floats, which are always of the kernel's types; a
    caller with arrays from outside keeps the dispatcher. A kernel with several signatures has
    no single entry point: it is returned as it is.
    """
    overloads = dispatcher.overloads
    if len(overloads) != 1:
        return dispatcher
    return next(iter(overloads.values())).entry_point


def compiled_signatures() -> int:
    """How many signatures exist across all kernels (a new one means something compiled)."""
    return sum(len(k.signatures) for k in KERNELS)


def freeze() -> KernelReport:
    """Disable compilation on every registered kernel; report cache hits and misses."""
    hits = misses = 0
    for k in KERNELS:
        k.disable_compile()
        hits += sum(k.stats.cache_hits.values())
        misses += sum(k.stats.cache_misses.values())
    return KernelReport(len(KERNELS), compiled_signatures(), hits, misses)
