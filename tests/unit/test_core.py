"""The shared ground: settings from one place, one-sentence errors, the vocabulary, durable writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mushroom_lib.core import fileio
from mushroom_lib.core.errors import SchemaError, one_line, shorten
from mushroom_lib.core.settings import Settings, env_name, find_home, get_settings
from mushroom_lib.core.vocab import label_code, label_word, norm_column, utc_iso, utc_stamp


# ---------------------------------------------------------------- settings
def test_every_setting_has_a_description_and_a_mushroom_variable():
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no description"
        assert env_name(name).startswith("MUSHROOM_"), name


def test_settings_come_from_the_environment_and_arguments_win(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSHROOM_K", "3")
    monkeypatch.setenv("MUSHROOM_WORKER_IDLE", "7.5")
    monkeypatch.setenv("MUSHROOM_REPORT_ON_PROMOTE", "0")
    s = get_settings(tmp_path)
    assert (s.k, s.worker_idle_seconds, s.report_on_promote, s.home) == (3, 7.5, False, tmp_path.resolve())
    assert get_settings(tmp_path, k=5).k == 5
    assert get_settings(tmp_path, k=None).k == 3  # None means "not given"
    assert s.with_(seed=7).seed == 7 and s.with_(seed=7).k == 3


@pytest.mark.parametrize(("name", "value", "words"), [
    ("MUSHROOM_K", "0", "MUSHROOM_K='0' is not valid"),
    ("MUSHROOM_K", "ten", "MUSHROOM_K='ten' is not valid"),
    ("MUSHROOM_REPORTS_KEEP", "-1", "MUSHROOM_REPORTS_KEEP='-1' is not valid"),
    ("MUSHROOM_WORKER_IDLE", "soon", "MUSHROOM_WORKER_IDLE='soon' is not valid"),
    ("MUSHROOM_DASHBOARD_POOL", "500", "MUSHROOM_DASHBOARD_POOL='500' is not valid"),
])
def test_a_bad_setting_is_one_sentence_naming_the_variable(tmp_path, monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:
        get_settings(tmp_path)
    text = str(info.value)
    assert words in text and "\n" not in text and len(text) <= 300


def test_an_unknown_setting_is_refused(tmp_path):
    with pytest.raises(ValueError, match="not valid"):
        get_settings(tmp_path, colour="blue")


def test_secrets_stay_out_of_the_settings_repr(tmp_path):
    s = get_settings(tmp_path, api_key="hunter2-key", dashboard_token="tok-123")
    assert "hunter2-key" not in repr(s) and "tok-123" not in repr(s)


def test_the_home_is_found_from_a_folder_inside_it(tmp_path, monkeypatch):
    home = tmp_path / "project"
    (home / "data").mkdir(parents=True)
    (home / "data" / "mushrooms.csv").write_text("class\n")
    inside = home / "notebooks" / "deeper"
    inside.mkdir(parents=True)
    monkeypatch.delenv("MUSHROOM_HOME", raising=False)
    monkeypatch.chdir(inside)
    assert find_home() == home.resolve() and get_settings().home == home.resolve()
    elsewhere = tmp_path / "empty"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert get_settings().home == elsewhere.resolve()  # nothing above: a new home here
    monkeypatch.setenv("MUSHROOM_HOME", str(home))
    assert get_settings().home == home.resolve()


# ---------------------------------------------------------------- errors and vocabulary
def test_messages_are_one_line_and_cut():
    assert one_line("a\n  b\tc") == "a b c"
    long = one_line("x" * 1000)
    assert len(long) == 300 and long.endswith("…")
    assert len(shorten("y" * 100)) <= 40
    err = SchemaError("row 3\ncolumn 'odor'", row=3, column="odor", value="q")
    assert str(err) == "row 3 column 'odor'" and err.problems == [str(err)]


def test_labels_and_columns_have_one_spelling():
    assert [label_code(v) for v in ("e", " P ", "edible", "Poisonous", 0, 1, True, "x")] == \
        ["e", "p", "e", "p", "e", "p", None, None]
    assert label_word("p") == "poisonous" and label_word("nope") is None
    assert norm_column("\ufeffBruises?") == "bruises" and norm_column(" Cap_Shape ") == "cap-shape"
    assert utc_iso().endswith("Z") and len(utc_stamp()) == 16


# ---------------------------------------------------------------- durable writes
def test_an_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path):
    target = tmp_path / "out" / "file.json"
    fileio.atomic_write_json(target, {"a": 1})
    assert fileio.read_json(target) == {"a": 1}
    with pytest.raises(RuntimeError):
        with fileio.atomic_writer(target) as fh:
            fh.write(b"half")
            raise RuntimeError("crash mid-write")
    assert fileio.read_json(target) == {"a": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.json"]  # no temporary file left
    assert fileio.read_json(tmp_path / "missing.json", "default") == "default"


def test_fsync_of_a_folder_that_cannot_be_opened_is_logged_not_raised(tmp_path, caplog):
    fileio.fsync_dir(tmp_path / "does-not-exist")
    assert "cannot open" in caplog.text
    fileio.fsync_dir(Path(os.devnull).parent)  # a real folder: no message
