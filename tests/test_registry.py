import subprocess
import sys

import pytest

from bench.core import registry
from bench.core.errors import ConfigError


def test_unknown_name_lists_known_names_and_the_closest_match():
    with pytest.raises(ConfigError) as err:
        registry.get("method", "popp")
    assert "Did you mean 'pop'" in str(err.value)
    assert "pop" in str(err.value)


def test_unknown_dataset_suggests_a_match():
    from bench.data.dataset import get_recipe

    with pytest.raises(ConfigError, match="Did you mean 'beauty'"):
        get_recipe("beuty")


def test_decorator_registers_and_lazy_entries_load_on_use():
    @registry.register("tokenizer", "test-dummy", "a dummy")
    class Dummy:
        pass

    assert registry.get("tokenizer", "test-dummy") is Dummy
    registry.register_lazy("encoder", "test-lazy", "collections:OrderedDict", "lazy")
    entry = registry.get_entry("encoder", "test-lazy")
    assert isinstance(entry.target, str)
    from collections import OrderedDict

    assert registry.get("encoder", "test-lazy") is OrderedDict


def test_broken_lazy_entry_is_a_clear_error():
    registry.register_lazy("encoder", "test-broken", "no_such_module_xyz:Thing", "broken")
    with pytest.raises(ConfigError, match="could not be imported"):
        registry.get("encoder", "test-broken")


def test_list_imports_no_model_code():
    code = "import sys; from bench.cli import main; main(['list']); print('methods.pop' in sys.modules, 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False False"
