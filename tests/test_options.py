"""The one option parser (bench.core.options) and every place that reads options through it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.core.errors import ConfigError
from bench.core.method import build_config
from bench.core.options import check_positive, parse_options, parse_pairs, parse_value
from bench.data.protocol import Protocol
from bench.nn.train import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text, value", [("true", True), ("TRUE", True), ("1", True), ("Yes", True),
                                         ("false", False), ("False", False), ("0", False), ("no", False),
                                         (" NO ", False)])
def test_booleans_accept_only_the_six_words_in_any_case(text, value):
    assert parse_value(text, False, "flag") is value
    assert parse_value(text, True, "flag") is value


@pytest.mark.parametrize("text", ["ture", "t", "y", "on", "2", ""])
def test_any_other_boolean_is_an_error_that_lists_the_accepted_words(text):
    with pytest.raises(ConfigError) as err:
        parse_value(text, False, "--protocol exclude_history")
    assert str(err.value) == (f"--protocol exclude_history: expected a boolean (true/false/1/0/yes/no), "
                              f"found {text!r}")


def test_typed_values_are_checked_not_converted():
    """Values from TOML arrive typed: a boolean is not an integer, an integer is a number."""
    assert parse_value(True, False, "b") is True
    assert parse_value(3, 1.0, "x") == 3.0 and isinstance(parse_value(3, 1.0, "x"), float)
    with pytest.raises(ConfigError, match=r"^b: expected a boolean .*, found 1 \(int\)$"):
        parse_value(1, False, "b")
    with pytest.raises(ConfigError, match=r"^n: expected an integer, found True \(bool\)$"):
        parse_value(True, 0, "n")
    with pytest.raises(ConfigError, match=r"^n: expected an integer, found 2.5 \(float\)$"):
        parse_value(2.5, 0, "n")
    with pytest.raises(ConfigError, match=r"^s: expected a string, found 5 \(int\)$"):
        parse_value(5, "", "s")


def test_integers_and_numbers():
    assert parse_value("42", 0, "n") == 42 and parse_value(" -3 ", 0, "n") == -3
    assert parse_value("1e-3", 0.1, "lr") == 0.001 and parse_value("2", 0.1, "lr") == 2.0
    for text in ("4.0", "1e3", "four", ""):
        with pytest.raises(ConfigError, match=rf"^--set sasrec.epochs: expected an integer, found {text!r}$"):
            parse_value(text, 10, "--set sasrec.epochs")
    with pytest.raises(ConfigError, match=r"^lr: expected a number, found 'fast'$"):
        parse_value("fast", 0.1, "lr")


def test_strings_and_choices():
    assert parse_value("dim=64;seed=1", "", "encoder_options") == "dim=64;seed=1"
    assert parse_value("cosine", "constant", "schedule", choices=("constant", "cosine")) == "cosine"
    with pytest.raises(ConfigError, match=r"^schedule: expected one of constant, cosine, found 'cos'$"):
        parse_value("cos", "constant", "schedule", choices=("constant", "cosine"))


def test_tuples_are_comma_separated_and_typed_by_the_defaults_first_item():
    assert parse_value("5, 10,20", (5,), "ks") == (5, 10, 20)
    assert parse_value("", (5,), "ks") == ()
    assert parse_value([64, 32], (512, 256), "hidden") == (64, 32)  # a TOML array
    assert parse_value(["brand"], ["brand", "cat1"], "fields") == ["brand"]
    assert parse_value("4,x,2.5", (), "branching") == (4, "x", 2.5)  # an empty default: each item as it reads
    with pytest.raises(ConfigError, match=r"^--protocol ks: expected a comma-separated list of integers, found '5,x'$"):
        parse_value("5,x", (5, 10), "--protocol ks")
    with pytest.raises(ConfigError, match=r"expected a comma-separated list of integers, found \[5, 'x'\] \(list\)"):
        parse_value([5, "x"], (5, 10), "ks")


def test_a_none_default_takes_an_integer_a_number_a_string_or_none():
    assert parse_value("3", None, "tok_seed") == 3
    assert parse_value("0.5", None, "x") == 0.5
    assert parse_value("none", None, "x") is None and parse_value("Null", None, "x") is None
    assert parse_value("abc", None, "x") == "abc"
    assert parse_value(7, None, "x") == 7


def test_unknown_keys_get_a_did_you_mean_hint_and_the_known_names():
    defaults = {"history_len": 20, "exclude_history": False}
    with pytest.raises(ConfigError) as err:
        parse_options({"histroy_len": "5"}, defaults, "--protocol ")
    assert str(err.value) == ("--protocol: unknown option 'histroy_len' (did you mean 'history_len'?); "
                              "known options are history_len, exclude_history")
    with pytest.raises(ConfigError, match=r"^--protocol: unknown option 'zzz'; known options"):
        parse_options({"zzz": "5"}, defaults, "--protocol ")
    assert parse_options({"exclude_history": "yes"}, defaults, "--protocol ") == {"exclude_history": True}


def test_key_value_lists():
    assert parse_pairs(["a=1", " b = x=y "], "--set") == {"a": "1", "b": "x=y"}
    assert parse_pairs("dim=64; ;seed=1;", "encoder text-tfidf") == {"dim": "64", "seed": "1"}
    assert parse_pairs(["a=1", "a=2"], "--set") == {"a": "2"}  # a later value wins, as with any repeated flag
    for bad in ("novalue", "=3"):
        with pytest.raises(ConfigError, match=rf"^--set: expected KEY=VALUE, found {bad!r}$"):
            parse_pairs([bad], "--set")


def test_counts_must_be_positive_wherever_they_are_options():
    with pytest.raises(ConfigError, match=r"^--set sasrec.epochs: expected a positive integer, found 0$"):
        parse_options({"epochs": "0"}, {"epochs": 10}, "--set sasrec.")
    with pytest.raises(ConfigError, match=r"^batch_size: expected a positive integer, found -1$"):
        TrainConfig(batch_size=-1)
    with pytest.raises(ConfigError, match="epochs: expected a positive integer, found 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match=r"^--protocol ks: expected a non-empty list of positive integers, found 5,0$"):
        Protocol.from_options({}, {"ks": "5,0"})
    with pytest.raises(ConfigError, match="ks: expected a non-empty list of positive integers, found an empty list"):
        Protocol(ks=())
    check_positive({"epochs": 3, "ks": (1, 5)}, "")


def test_method_configs_are_built_through_the_parser():
    from methods.id.sasrec import SASRec

    cfg = build_config(SASRec, "sasrec", "smoke", {"epochs": "3", "item_fields": "yes", "lr": "1e-2"})
    assert (cfg.epochs, cfg.item_fields, cfg.lr) == (3, True, 0.01)
    with pytest.raises(ConfigError, match=r"^method sasrec: unknown option 'epoch' \(did you mean 'epochs'\?\)"):
        build_config(SASRec, "sasrec", "smoke", {"epoch": "3"})
    with pytest.raises(ConfigError, match=r"^method sasrec schedule: expected one of constant, cosine, found 'cos'$"):
        build_config(SASRec, "sasrec", "smoke", {"schedule": "cos"})


def test_protocol_from_recipe_defaults_and_text_overrides():
    proto = Protocol.from_options({"history_len": 20, "ks": [5, 10]}, {"exclude_history": "TRUE", "ks": "1,2"})
    assert (proto.history_len, proto.exclude_history, proto.ks) == (20, True, (1, 2))
    with pytest.raises(ConfigError, match=r"^--protocol history_len: expected an integer, found 'long'$"):
        Protocol.from_options({}, {"history_len": "long"})
    with pytest.raises(ConfigError, match="select_metric: expected recall@K, ndcg@K or mrr, found 'ndcg'"):
        Protocol.from_options({}, {"select_metric": "ndcg"})


def test_encoder_and_synthetic_options_go_through_the_parser():
    from bench.data.synthetic import generate
    from bench.sid.pipeline import parse_options as plugin_options
    from methods.encoders.text import TextTfidf

    assert plugin_options("dim=16; seed=2", TextTfidf, "encoder text-tfidf") == {"dim": 16, "seed": 2}
    with pytest.raises(ConfigError, match=r"^encoder text-tfidf option dim: expected an integer, found 'x'$"):
        plugin_options("dim=x", TextTfidf, "encoder text-tfidf")
    with pytest.raises(ConfigError, match=r"^encoder text-tfidf: unknown option 'dimm' \(did you mean 'dim'\?\)"):
        plugin_options("dimm=3", TextTfidf, "encoder text-tfidf")
    with pytest.raises(ConfigError, match=r"^synthetic dataset option n_items: expected an integer, found 'many'$"):
        generate({"n_items": "many"})
    small = {"n_items": "120", "n_users": "50", "n_groups": "6", "n_brands": "8", "min_len": "3", "mean_len": "4"}
    assert len(generate(small).raw.sequences) == 50  # text is typed by the defaults


@pytest.mark.parametrize("args, message", [
    (["--methods", "pop", "--protocol", "exclude_history=ture"],
     "--protocol exclude_history: expected a boolean (true/false/1/0/yes/no), found 'ture'"),
    (["--methods", "pop,sasrec", "--set", "sasrec.item_fields=ture"],
     "--set sasrec.item_fields: expected a boolean (true/false/1/0/yes/no), found 'ture'"),
    (["--methods", "pop,sasrec", "--set", "epochs=0"], "--set sasrec.epochs: expected a positive integer, found 0"),
    (["--methods", "pop,sasrec", "--set", "batch_size=-8"], "--set sasrec.batch_size: expected a positive integer"),
    (["--methods", "pop,sasrec", "--set", "loss=bc"], "method sasrec: loss must be 'ce' or 'bce', found 'bc'"),
    (["--methods", "pop", "--protocol", "ks=10,0"], "--protocol ks: expected a non-empty list of positive integers"),
    (["--methods", "pop", "--seeds", "0,0"], "--seeds: expected distinct seeds, found 0 more than once"),
    (["--methods", "pop", "--seeds", "-1"], "--seeds: expected non-negative integers, found -1"),
    (["--methods", "pop", "--seeds", "0,one"], "--seeds: expected a comma-separated list of integers, found '0,one'"),
    (["--methods", "pop,knn-last", "--set", "knn-last.encoder_options=dimm=3"],
     "method knn-last encoder_options: encoder text-tfidf: unknown option 'dimm' (did you mean 'dim'?)"),
    (["--methods", "pop,tiger", "--set", "tok_epochs=0"], "method tiger tok_epochs: expected a positive integer"),
    (["--methods", "pop,tiger", "--set", "tiger.tok_hidden=64,x"],
     "--set tiger.tok_hidden: expected a comma-separated list of integers, found '64,x'"),
    (["--methods", "pop,tiger", "--set", "collisions=hungarain"],
     "method tiger collisions: expected one of extra-level, hungarian, found 'hungarain'"),
])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_bad_value_for_any_method_fails_before_anything_trains(tmp_path, capsys, monkeypatch, args, message, jobs):
    """The last method's bad value fails at once: exit 2, one line on stderr, nothing trained or written."""

    def no_training(*args, **kwargs):
        raise AssertionError("a method was trained")

    monkeypatch.setattr("bench.run.runner.BenchmarkRun._run_one", no_training)
    out = tmp_path / "out"
    assert main(["run", "--dataset", "synthetic", "--out", str(out), "--quiet", "--jobs", jobs, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not out.exists()


def test_the_command_line_exits_2_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--methods", "pop", "--dataset", "synthetic",
                           "--protocol", "exclude_history=ture", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == ("error: --protocol exclude_history: expected a boolean (true/false/1/0/yes/no), "
                           "found 'ture'\n")
    assert not out.exists()


BAD_RECIPE = """name = "broken"
description = "a protocol table with a typo'd boolean"
reader = "synthetic"

[protocol]
exclude_history = "ture"
"""


def test_a_bad_recipe_names_its_file_and_field_and_list_still_works(tmp_path, capsys, monkeypatch):
    from bench.data.dataset import get_recipe
    from bench.data.recipes import discover

    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "broken.toml").write_text(BAD_RECIPE)
    (folder / "typed.toml").write_text('name = "typed"\nreader = "synthetic"\ndescription = 5\n')
    (folder / "table.toml").write_text('name = "table"\nreader = "synthetic"\nprotocol = 20\n')
    (folder / "typo.toml").write_text('name = "typo"\nreader = "synthetic"\n[protocl]\nhistory_len = 5\n')
    (folder / "items.toml").write_text('name = "items"\nreader = "synthetic"\n[items]\nmin_interactions = "3x"\n')
    monkeypatch.setenv("SIDBENCH_RECIPES", str(folder))
    assert {"synthetic", "beauty"} <= set(discover()) and "broken" not in discover()
    cases = {
        "broken": "protocol.exclude_history: expected a boolean (true/false/1/0/yes/no), found 'ture'",
        "typed": "description: expected a string, found 5 (int)",
        "table": "protocol: expected a table, found 20 (int)",
        "typo": "unknown option 'protocl' (did you mean 'protocol'?)",
        "items": "items.min_interactions: expected an integer, found '3x'",
    }
    for name, message in cases.items():
        with pytest.raises(ConfigError) as err:
            get_recipe(name)
        assert str(err.value).startswith(f"recipe {folder / (name + '.toml')}") and message in str(err.value)
    assert main(["data", "info", "broken"]) == 2
    assert "broken.toml: protocol.exclude_history" in capsys.readouterr().err
    assert get_recipe("synthetic").name == "synthetic"  # the other recipes still work
    listed = subprocess.run([sys.executable, "-m", "bench", "list"], cwd=ROOT, env=dict(os.environ),
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0 and "synthetic" in listed.stdout and "beauty" in listed.stdout
    assert "broken.toml: protocol.exclude_history" in listed.stderr and "Traceback" not in listed.stderr


def test_reader_options_of_a_recipe_go_through_the_parser(tmp_path, monkeypatch):
    from bench.data.dataset import load_dataset

    (tmp_path / "synth-text.toml").write_text('name = "synth-text"\nreader = "synthetic"\n'
                                              '[reader_options]\nn_items = "many"\n')
    monkeypatch.setenv("SIDBENCH_RECIPES", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        load_dataset("synth-text")
    assert str(err.value) == (f"recipe {tmp_path / 'synth-text.toml'}: reader_options: synthetic dataset option "
                              "n_items: expected an integer, found 'many'")


def test_recipes_keep_their_values_and_processed_keys():
    """Checked recipe tables hold the same values as before (the processed-data cache key is made from them)."""
    from bench.data.recipes import discover

    beauty = discover()["beauty"]
    assert beauty.items == {"fields": ["brand", "cat1", "cat2", "cat3", "price"], "drop_root_category": True}
    assert beauty.protocol == {"history_len": 20} and beauty.expected["users"] == 22363
    assert json.dumps(discover()["synthetic"].reader_options) == '{"seed": 0}'


def test_a_budgets_encoder_options_stay_under_the_users_own_unless_the_encoder_changes():
    from bench.core import registry

    resid = registry.get("method", "resid")
    smoke = dict(pair.split("=") for pair in resid.budgets["smoke"]["encoder_options"].split(";"))
    cfg = build_config(resid, "resid", "smoke", {"encoder_options": "fields=brand,cat1;epochs=1"})
    got = dict(pair.split("=") for pair in cfg.encoder_options.split(";"))
    assert got == {**smoke, "fields": "brand,cat1", "epochs": "1"}  # the smoke sizes kept, the user's on top
    cfg = build_config(resid, "resid", "smoke", {"encoder": "text-tfidf", "encoder_options": "max_features=50"})
    assert cfg.encoder_options == "max_features=50"  # another encoder: the budget's pairs are not its own
    assert build_config(resid, "resid", "default", {"encoder_options": "epochs=3"}).encoder_options == "epochs=3"
