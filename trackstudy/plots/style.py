"""The HEP figure style of trackstudy's matplotlib figures: mplhep's ROOT style, scoped.

Nothing here changes matplotlib when trackstudy is imported: the style holds inside
:func:`hep_style` (a context manager) and for the figures drawn by the functions that
:func:`hep_figure` wraps, so the users' own plots keep their settings.

matplotlib takes some settings from ``rcParams`` when a figure is *drawn*, not when its artists
are made, and notebooks draw after the cell, outside any style context. The overrides in
:data:`STYLE` therefore pick settings that do not depend on the draw time (a concrete font
list instead of the generic ``sans-serif`` family, a mathtext font set that reads no rcParams
when drawn, resolved colours), and :func:`hep_figure` writes the tick style into the axes it
returns before the style is left.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

#: Fonts in order: TeX Gyre Heros (the Helvetica clone of the HEP styles, shipped with mplhep),
#: then DejaVu Sans (shipped with matplotlib) for any glyph it lacks. No font is fetched.
FONTS = ["TeX Gyre Heros", "DejaVu Sans"]

#: Paul Tol / Petroff 10-colour cycle (matplotlib's ``petroff10``): the HEP colour-blind-safe
#: palette, as many colours as matplotlib's default cycle.
COLOURS = ["#3f90da", "#ffa90e", "#bd1f01", "#94a4a2", "#832db6", "#a96b59", "#e76300", "#b9ac70", "#717581",
           "#92dadd"]

#: Settings applied on top of ``mplhep.style.ROOT``: sizes for notebook figures (ROOT's are for
#: one 10 x 10 inch panel), and the draw-time-safe choices described in the module docstring.
STYLE: dict[str, Any] = {
    "font.family": FONTS,
    "font.size": 13,
    "mathtext.fontset": "stixsans",
    "mathtext.default": "it",
    "axes.unicode_minus": True,
    "axes.linewidth": 1.2,
    "xtick.major.size": 7, "xtick.minor.size": 3.5, "xtick.major.width": 1.0, "xtick.minor.width": 0.8,
    "ytick.major.size": 7, "ytick.minor.size": 3.5, "ytick.major.width": 1.0, "ytick.minor.width": 0.8,
    "xtick.major.pad": 5, "ytick.major.pad": 5,
    "grid.alpha": 0.3,
}


def _load_backend() -> None:
    """Load matplotlib's backend now if no figure has done so yet.

    In a Jupyter kernel, loading the inline backend switches matplotlib to interactive mode (and
    applies the kernel's ``InlineBackend.rc``). Done inside the style block, by the first figure
    of a session, those settings would be undone on leaving it, and the notebook's later figures
    would no longer be shown.
    """
    import matplotlib
    import matplotlib.pyplot as plt

    load = getattr(plt, "_get_backend_mod", None)  # pyplot's own loader (it closes no figure, unlike switch_backend)
    if load is not None:
        load()
    else:  # pragma: no cover - other matplotlib versions: at least resolve the name
        matplotlib.get_backend()


@contextmanager
def hep_style(**rc) -> Iterator[None]:
    """mplhep's ROOT style plus :data:`STYLE` (and ``rc``), for the duration of the ``with`` block only."""
    import matplotlib.pyplot as plt
    import mplhep
    from cycler import cycler

    _load_backend()
    with plt.style.context([mplhep.style.ROOT, {**STYLE, "axes.prop_cycle": cycler(color=COLOURS), **rc}]):
        yield


def colour(i: int) -> str:
    """The ``i``-th colour of the style's cycle (resolved now: ``"C0"`` strings are looked up when drawn)."""
    return COLOURS[i % len(COLOURS)]


def _label_points(size) -> float:
    from matplotlib.font_manager import FontProperties

    return FontProperties(size=size).get_size_in_points()


def style_axes(ax) -> None:
    """Write the current tick style into ``ax`` (to be called inside :func:`hep_style`).

    The first tick of each list is made now (later ones copy it when the figure is drawn), and
    the direction, length, width, label size and the ticks on all four sides are set on the axes,
    which also styles axes the caller made before the style was entered. Linear axes with
    automatic ticks get minor ticks; axes with fixed ticks (categories, bin edges) get none.
    """
    import matplotlib as mpl
    from matplotlib.ticker import AutoMinorLocator, FixedLocator, NullLocator

    rc = mpl.rcParams
    for name, axis, sides in (("xtick", ax.xaxis, ("bottom", "top")), ("ytick", ax.yaxis, ("left", "right"))):
        for which in ("major", "minor"):
            ax.tick_params(axis=name[0], which=which, direction=rc[f"{name}.direction"],
                           length=rc[f"{name}.{which}.size"], width=rc[f"{name}.{which}.width"],
                           labelsize=_label_points(rc[f"{name}.labelsize"]),
                           **{s: bool(rc[f"{name}.{s}"] and rc[f"{name}.{which}.{s}"]) for s in sides})
        # minor ticks on linear, auto-ticked axes; none between fixed ticks (categories, bin edges)
        if isinstance(axis.get_major_locator(), FixedLocator):
            axis.set_minor_locator(NullLocator())
        elif (rc[f"{name}.minor.visible"] and axis.get_scale() == "linear"
              and isinstance(axis.get_minor_locator(), NullLocator)):
            axis.set_minor_locator(AutoMinorLocator())
    _template_ticks(ax)


def _template_ticks(ax) -> None:
    """Make the first major and minor tick of both axes now, in the current style: the ticks that
    matplotlib adds when the figure is drawn copy these."""
    for axis in (ax.xaxis, ax.yaxis):
        _ = axis.majorTicks, axis.minorTicks


def _returned_axes(result) -> list:
    from matplotlib.axes import Axes

    if isinstance(result, Axes):
        return [result]
    if isinstance(result, (list, tuple, np.ndarray)):
        return [a for a in np.ravel(np.asarray(result, dtype=object)) if isinstance(a, Axes)]
    return []


def hep_figure(func: Callable) -> Callable:
    """Decorator: run a matplotlib figure function inside :func:`hep_style` and style the axes it
    returns (and their colour bars) before leaving the style. Signature and return value unchanged."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with hep_style():
            result = func(*args, **kwargs)
            axes = _returned_axes(result)
            for ax in axes:
                style_axes(ax)
                for other in ax.get_figure().axes:  # colour bars drawn for these axes: ticks only
                    cb = getattr(other, "_colorbar", None)
                    if cb is not None and getattr(cb.mappable, "axes", None) is ax:
                        _template_ticks(other)
        return result

    return wrapper


def histogram(values, edges):
    """A ``hist.Hist`` of ``values`` on the bin ``edges`` (values outside them go to the flow bins,
    which the figures do not draw)."""
    import hist

    h = hist.Hist(hist.axis.Variable(np.asarray(edges, dtype=np.float64)))
    h.fill(np.asarray(values, dtype=np.float64))
    return h


def trackml_label(ax, text: str = "Simulation", **kwargs):
    """The experiment-style label of a TrackML figure, e.g. **TrackML** *Simulation* above the
    axes (no collaboration name: this is a study on the TrackML open data)."""
    import mplhep

    return mplhep.label.exp_label(exp="TrackML", llabel=text, rlabel="", ax=ax, **kwargs)


__all__ = ["COLOURS", "FONTS", "STYLE", "colour", "hep_figure", "hep_style", "histogram", "style_axes",
           "trackml_label"]
