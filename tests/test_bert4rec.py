import json

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.data.dataset import load_dataset
from bench.data.protocol import Protocol, Split
from methods.id.bert4rec import (
    IGNORE,
    BERT4Rec,
    BERT4RecConfig,
    BERT4RecModel,
    cloze_mask,
)

PAD, MASK = 100, 101


@pytest.fixture(scope="module")
def split():
    return Split(load_dataset("synthetic"), Protocol(history_len=8))


def random_windows(n: int, length: int, seed: int = 0) -> torch.Tensor:
    """Left-padded windows of random items (< PAD) with 1..length real items each."""
    gen = torch.Generator().manual_seed(seed)
    items = torch.randint(0, PAD, (n, length), generator=gen)
    n_real = torch.randint(1, length + 1, (n, 1), generator=gen)
    return items.masked_fill(torch.arange(length)[None] < length - n_real, PAD)


def test_cloze_mask_masks_only_real_items_at_the_right_rate():
    torch.manual_seed(0)
    windows = random_windows(20000, 12)
    inputs, labels = cloze_mask(windows, PAD, MASK, mask_prob=0.6, last_mask_prob=0.0)
    masked = inputs == MASK
    real = windows != PAD
    assert not (masked & ~real).any()  # pads are never masked
    assert masked.any(1).all()  # at least one masked position per window
    assert torch.equal(inputs[~masked], windows[~masked])  # everything else is untouched
    assert torch.equal(labels[masked], windows[masked])  # labels at masked positions ...
    assert (labels[~masked] == IGNORE).all()  # ... and nowhere else
    # the forced one-per-window mask adds a little on top of mask_prob, mostly in 1-item windows
    rate = masked[real.sum(1) >= 4].sum() / real[real.sum(1) >= 4].sum()
    assert abs(float(rate) - 0.6) < 0.02


def test_cloze_mask_last_only_windows():
    torch.manual_seed(0)
    windows = random_windows(20000, 12)
    inputs, _ = cloze_mask(windows, PAD, MASK, mask_prob=0.6, last_mask_prob=0.3)
    masked = inputs == MASK
    long = (windows != PAD).sum(1) >= 8  # where a random mask almost never masks the last item alone
    last_only = masked[long, -1] & (masked[long].sum(1) == 1)
    assert abs(float(last_only.float().mean()) - 0.3) < 0.03
    everything_last = cloze_mask(windows, PAD, MASK, mask_prob=0.6, last_mask_prob=1.0)[0] == MASK
    assert everything_last[:, -1].all() and everything_last.sum() == len(windows)


def test_cloze_windows_cover_long_sequences(split):
    length = split.protocol.history_len
    windows = split.train_windows(length, min_items=1)
    assert windows.shape[1] == length + 1
    assert len(windows) > split.n_users  # some sequences are longer than one window
    assert np.array_equal(windows[: 1], split.train_windows(length)[:1])  # first window = the last items
    covered = sum(int((w != split.pad).sum()) for w in windows)
    overlap = len(windows) - split.n_users  # consecutive windows of a user share one item
    assert covered - overlap == sum(len(s) for s in split.train_seqs)


def test_cloze_loss_is_finite_and_decreases(split):
    torch.manual_seed(0)
    cfg = BERT4RecConfig(d_model=32, n_layers=1, d_ff=64, dropout=0.0, attn_dropout=0.0)
    method = BERT4Rec(cfg)
    method.model_ = BERT4RecModel(split, cfg)
    batch = (torch.from_numpy(split.train_windows(split.protocol.history_len, min_items=1)[:64]),)
    optimizer = torch.optim.AdamW(method.model_.parameters(), lr=1e-2)
    losses = []
    for _ in range(20):
        torch.manual_seed(1)  # the same mask every step, so the loss can only fall by learning
        loss = method.loss(batch)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_encoder_is_bidirectional_and_score_predicts_the_appended_mask(split):
    torch.manual_seed(0)
    model = BERT4RecModel(split, BERT4RecConfig(d_model=16, n_layers=2, d_ff=32)).eval()
    hist = torch.tensor([[split.pad, split.pad, 3, 7, 11, 19, 23, 42, model.mask_token]])
    changed = hist.clone()
    changed[0, 6] = 99  # change a later item
    with torch.no_grad():
        a, b = model.hidden(hist), model.hidden(changed)
        assert not torch.allclose(a[0, 2:6], b[0, 2:6])  # earlier positions see it
        scores = model.score(hist[:, :-1])
        assert scores.shape == (1, split.n_items)
        head = model.logits(a[:, -1], model.items.table())
    assert torch.allclose(scores, head, atol=1e-5)


def test_smoke_budget_beats_pop_on_synthetic(tmp_path):
    code = main(["run", "--methods", "pop,bert4rec", "--dataset", "synthetic", "--budget", "smoke",
                 "--quiet", "--out", str(tmp_path)])
    assert code == 0
    records = {m: json.loads((tmp_path / "synthetic" / m / "seed0" / "result.json").read_text())
               for m in ("pop", "bert4rec")}
    pop = records["pop"]["metrics"]["test"]["ndcg@10"]
    bert = records["bert4rec"]
    assert bert["metrics"]["test"]["ndcg@10"] > 2 * pop
    assert bert["extra"]["train"]["best_epoch"] >= 0
    assert bert["extra"]["windows"] >= 3000
