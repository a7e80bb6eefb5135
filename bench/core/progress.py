"""Progress bars through tqdm, silenced by ``--quiet``."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], desc: str, quiet: bool = False, **kwargs) -> Iterable[T]:
    return tqdm(items, desc=desc, disable=quiet, leave=False, dynamic_ncols=True, **kwargs)
