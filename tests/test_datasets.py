import numpy as np
import pytest

from bench.core.errors import DataError
from bench.data.dataset import load_dataset
from bench.data.readers import read_s3rec_sequences
from bench.data.recipes import discover


def test_builtin_recipes_are_found():
    assert {"beauty", "scientific", "office", "synthetic", "sports", "toys", "yelp"} <= set(discover())


def test_beauty_statistics_and_text_join(mirror):
    ds = load_dataset("beauty")
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == (22363, 12101, 198502)
    assert ds.stats["items_with_title"] >= 12090
    assert ds.stats["items_with_brand"] >= 10000
    # item_description.csv row 1 is ASIN 7806397051, which is S3-Rec item 4
    item4 = ds.item_ids.index("4")
    assert "WAWO 15 Color Professionl Makeup Eyeshadow" in ds.text[item4]
    assert ds.vocabs["brand"][ds.fields["brand"][item4]] == "COKA"
    assert ds.vocabs["cat1"][ds.fields["cat1"][item4]] == "Makeup"  # root 'Beauty' dropped
    assert ds.vocabs["cat3"][ds.fields["cat3"][item4]] == "Makeup > Face > Concealers & Neutralizers"
    assert ds.fields["price"][item4] > 0
    # S3-Rec item ids are 1..12101 and map to indices 0..12100 in order
    assert ds.item_ids[:3] == ["1", "2", "3"]
    # attribute bag from item2attributes: item 4 has attributes [1, 2, 3]
    bag = ds.bags["attributes"][item4]
    assert [ds.vocabs["attributes"][a] for a in bag[bag > 0]] == ["1", "2", "3"]


@pytest.mark.parametrize("name,stats", [("scientific", (8317, 4344, 58492)), ("office", (4905, 2420, 53258))])
def test_lcrec_datasets(mirror, name, stats):
    ds = load_dataset(name)
    assert (ds.stats["users"], ds.stats["items"], ds.stats["interactions"]) == stats
    assert ds.stats["items_with_title"] > 0.9 * stats[1]
    assert len(ds.vocabs["cat1"]) > 2


def test_processed_dataset_is_cached_and_identical(mirror):
    first = load_dataset("office")
    again = load_dataset("office")
    assert first.checksum == again.checksum
    assert all(np.array_equal(a, b) for a, b in zip(first.sequences, again.sequences))


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "X.txt"
    path.write_text("1 1 2 3\n2 4 x 5\n")
    with pytest.raises(DataError, match=r"X.txt, line 2"):
        read_s3rec_sequences(path)
