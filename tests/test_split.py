
from bench.data.dataset import RawData, build_dataset
from bench.data.protocol import Protocol, Split


def make_split(history_len=3):
    # every item occurs once per user so positions can be traced by item id
    raw = RawData(sequences={
        "a": [str(i) for i in range(1, 8)],  # 7 items
        "b": ["10", "11", "12"],  # the minimum: 1 train, 1 valid, 1 test
        "c": ["20", "21"],  # too short: dropped and counted
    }, items={})
    ds = build_dataset("toy", raw, {"fields": []})
    return ds, Split(ds, Protocol(history_len=history_len))


def test_short_users_are_dropped_and_counted():
    ds, _ = make_split()
    assert ds.stats["users"] == 2
    assert ds.stats["dropped_short_users"] == 1


def test_no_validation_or_test_item_ever_in_training_input():
    ds, split = make_split()
    hist, targets, users = split.train_examples()
    for u in range(split.n_users):
        held_out = {split.valid_targets[u], split.test_targets[u]}
        rows = users == u
        seen = set(hist[rows].ravel()) | set(targets[rows])
        assert not held_out & seen
    windows = split.train_windows(3)
    assert not set(windows.ravel()) & (set(split.valid_targets) | set(split.test_targets))


def test_every_prefix_is_a_training_example_with_truncated_history():
    ds, split = make_split(history_len=3)
    hist, targets, users = split.train_examples()
    a = users == 0  # train sequence of user a: items 0..4 -> 4 examples
    assert targets[a].tolist() == [1, 2, 3, 4]
    pad = split.pad
    assert hist[a].tolist() == [[pad, pad, 0], [pad, 0, 1], [0, 1, 2], [1, 2, 3]]
    assert (users == 1).sum() == 0  # user b has a single training item: no prefix example


def test_eval_histories_end_right_before_the_target():
    ds, split = make_split(history_len=3)
    vh, vt = split.eval_inputs("valid")
    th, tt = split.eval_inputs("test")
    assert vt[0] == 5 and vh[0].tolist() == [2, 3, 4]
    assert tt[0] == 6 and th[0].tolist() == [3, 4, 5]
    assert vh[1].tolist() == [split.pad, split.pad, ds.item_ids.index("10")]


def test_item_counts_use_training_items_only():
    ds, split = make_split()
    counts = split.item_counts()
    assert counts.sum() == 5 + 1
    assert counts[split.valid_targets].sum() == 0 and counts[split.test_targets].sum() == 0


def test_windows_hold_every_prefix_target_exactly_once():
    raw = RawData(sequences={"a": [str(i) for i in range(1, 30)], "b": ["1", "5", "9", "2"]}, items={})
    split = Split(build_dataset("toy", raw, {"fields": []}), Protocol(history_len=5))
    _, targets, _ = split.train_examples()
    windows = split.train_windows(5)
    inputs, outputs = windows[:, :-1], windows[:, 1:]
    window_targets = outputs[inputs != split.pad]
    assert sorted(window_targets.tolist()) == sorted(targets.tolist())
    # each window is a contiguous run of a training sequence
    a = split.train_seqs[0].tolist()
    for row in windows:
        items = [x for x in row.tolist() if x != split.pad]
        if items[0] in a and len(items) > 2:
            start = a.index(items[0])
            assert a[start:start + len(items)] == items
