"""Progress bars through tqdm, silenced by ``--quiet``."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, quiet: bool = False, **kwargs) -> tqdm:
    """A tqdm bar over ``items`` on stderr, cleared when done (iterate it; ``set_postfix`` adds a value);
    a silent one when ``quiet`` (``--quiet``).

    ``kwargs`` go to tqdm: e.g. ``miniters=N`` redraws at most every N items, for a loop whose steps are
    too quick to pay for a redraw each (the bar reads only a counter and the clock, never the GPU).
    """
    return tqdm(items, desc=desc, disable=quiet, leave=False, dynamic_ncols=True, **kwargs)
