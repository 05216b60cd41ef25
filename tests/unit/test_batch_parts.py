"""The building blocks of `mushroom predict`: numbering distinct rows and rendering lines as pandas does."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from mushroom_lib.batch.distinct import RowIds
from mushroom_lib.batch.writer import gather, header_line, render_rows


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(min_value=0, max_value=2**62), min_size=0, max_size=300), min_size=1,
                max_size=4), st.integers(min_value=8, max_value=12))
def test_row_ids_give_each_distinct_key_one_number_across_chunks(chunks, bits):
    ids, numbered = RowIds(bits), {}
    for chunk in chunks:
        key = np.array(chunk, dtype=np.int64)
        before = ids.count
        numbers, first = ids.number(key)
        for k, n in zip(chunk, numbers.tolist()):
            assert numbered.setdefault(k, n) == n  # the same key, the same number, in every chunk
        # a key new to this call gets the next free numbers; ``first`` names one row of each, in number order
        assert numbers[first].tolist() == list(range(before, ids.count))
        assert len({int(key[p]) for p in first}) == len(first)
    assert sorted(numbered.values()) == list(range(ids.count)) and len(numbered) == ids.count


def test_rendered_lines_are_the_bytes_to_csv_writes():
    frame = pd.DataFrame({"odor": ["n", "a,b", 'q"x', ""], "p_poisonous": [0.1, 1 / 3, float("nan"), 0.0],
                          "nearest_known": np.array([0, 1, 2, 3]), "uncertain": [True, False, True, False]})
    want = frame.to_csv(index=False, lineterminator="\n")
    lines = render_rows([frame[c].to_numpy() for c in frame.columns])
    assert header_line(list(frame.columns)) + "".join(lines) == want
    encoded = np.array([line.encode() for line in lines], dtype=object)
    assert gather(encoded, np.array([3, 0, 0])) == (lines[3] + lines[0] + lines[0]).encode()
    assert pd.read_csv(io.StringIO(want), keep_default_na=False)["odor"].tolist()[:3] == ["n", "a,b", 'q"x']
