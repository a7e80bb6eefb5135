import os
from pathlib import Path

import pytest

MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mirror"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own cache; the mirror stands in for the network."""
    os.environ["SIDBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ.setdefault("SIDBENCH_MIRROR", str(MIRROR))
    yield


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = Path(os.environ.get("SIDBENCH_MIRROR", MIRROR))
    if not path.is_dir():
        pytest.skip(f"dataset mirror not found at {path}; set SIDBENCH_MIRROR")
    return path


@pytest.fixture
def one_torch_thread():
    """Tiny torch models run faster on one thread, and far faster on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
