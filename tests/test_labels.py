"""data.labels: label name files, the short lists that keep log lines and messages bounded."""

import pytest

from trainer.data import labels
from trainer.errors import UserError


def test_shorten_keeps_short_lists_and_cuts_long_ones_with_a_count():
    assert labels.shorten([]) == ""
    assert labels.shorten(["a", "b"]) == "a, b"
    exactly = [f"l{i}" for i in range(labels.SHOWN)]
    assert labels.shorten(exactly) == ", ".join(exactly)
    names = (f"label_{i}" for i in range(100_000))  # Any iterable, e.g. a generator of log items.
    line = labels.shorten(names)
    assert line.startswith("label_0, label_1, ") and line.endswith("label_19, ... and 99980 more")
    assert len(line) < 300
    assert labels.shorten(["a", "b", "c"], limit=2) == "a, b, ... and 1 more"


def test_read_names_refuses_blank_lines_and_duplicates(tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("joy\nanger\n\n")
    assert labels.read_names(str(good)) == ["joy", "anger"]
    blank = tmp_path / "blank.txt"
    blank.write_text("joy\n\nanger\n")
    with pytest.raises(UserError, match="blank.txt:2 is blank"):
        labels.read_names(str(blank))
    twice = tmp_path / "twice.txt"
    twice.write_text("joy\njoy\n")
    with pytest.raises(UserError, match="names 'joy' more than once"):
        labels.read_names(str(twice))
