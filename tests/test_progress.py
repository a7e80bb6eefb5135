"""Progress bars on the long phases (tokenizer training, text encoding, encoder training), off when quiet."""

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.core.method import FitContext
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from bench.sid.quantize import train_quantizer
from bench.sid.stages import tokenize_items
from methods.encoders.text import TextST
from methods.tokenizers.rqvae import RQVAEModel


@pytest.fixture(scope="module")
def split():
    return Split(load_dataset("synthetic"), Protocol())


def _tiny_training(**kwargs) -> None:
    torch.manual_seed(0)
    x = torch.randn(40, 6)
    model = RQVAEModel(6, [8], 4, 2, 4, ["l2", "l2"], ["nearest", "nearest"])
    with torch.no_grad():
        latent = model.encoder(x)
    model.quantizer.init_codebooks(latent, lambda r, k, level: (r[:k].copy(), np.arange(len(r)) % k),
                                   torch.Generator())
    train_quantizer(model, x, epochs=5, batch_size=16, lr=1e-2, generator=torch.Generator().manual_seed(0),
                    name="tiny-rq", **kwargs)


def test_train_quantizer_shows_an_epoch_bar_unless_quiet(capsys, one_torch_thread):
    _tiny_training(quiet=False)
    assert "tiny-rq" in capsys.readouterr().err  # the bar, named after the quantiser, on stderr
    _tiny_training(quiet=True)
    assert capsys.readouterr().err == ""
    _tiny_training()  # called as a library, it stays quiet unless asked
    assert capsys.readouterr().err == ""


def test_tokenize_items_hands_quiet_to_the_tokenizer(split, capsys, one_torch_thread):
    params = {"latent_dim": 4, "hidden": (8,), "n_levels": 2, "codebook_size": 8, "epochs": 2, "batch_size": 256}
    vectors = np.random.default_rng(0).normal(size=(split.n_items, 6)).astype(np.float32)
    tokenize_items("rqvae", params, vectors, "progress-quiet", split, quiet=True)
    assert "rqvae" not in capsys.readouterr().err
    tokenize_items("rqvae", params, vectors, "progress-shown", split, quiet=False)  # another key: not a cache hit
    assert "rqvae" in capsys.readouterr().err


class _FakeSentenceModel:
    """Stands in for a sentence-transformers model: records how ``encode`` was called."""

    def __init__(self):
        self.calls = []

    def encode(self, texts, **kwargs):
        self.calls.append(kwargs)
        return np.zeros((len(texts), 4), dtype=np.float32)


@pytest.mark.parametrize("quiet", [False, True])
def test_text_st_encoding_shows_its_bar_unless_quiet(split, monkeypatch, quiet):
    fake = _FakeSentenceModel()
    monkeypatch.setattr(TextST, "_load", lambda self, device: fake)
    TextST().fit(split, FitContext(device=torch.device("cpu"), seed=0, valid=None, quiet=quiet))
    TextST().fit(split)  # no run context: quiet
    assert [call["show_progress_bar"] for call in fake.calls] == [not quiet, False]


def test_diagnose_shows_the_encoders_training_unless_quiet(capsys, one_torch_thread):
    # it printed nothing for minutes on beauty: its context was quiet by default
    args = ["diagnose", "--tokenizer", "random", "--encoder", "sasrec-emb", "--encoder-set", "d_model=8;d_ff=16;epochs=1",
            "--dataset", "synthetic", "--device", "cpu"]
    assert main(args + ["--seed", "1", "--quiet"]) == 0
    assert "epoch 1/1" not in capsys.readouterr().err
    assert main(args + ["--seed", "2"]) == 0  # another seed: the encoder trains again
    assert "train epoch 1/1" in capsys.readouterr().err
