import io

import pytest

from services.ingest import apikey, auth
from shared.settings import REPO_ROOT


def test_a_key_file_line_round_trips_through_the_loader(tmp_path):
    path = tmp_path / "keys"
    path.write_text(apikey.key_file_line("web", "s3cret-key") + "\n")
    assert auth.ApiKeys.load(path).source_for("Bearer s3cret-key") == "web"
    assert "s3cret-key" not in path.read_text()


def test_source_names_stay_label_safe():
    with pytest.raises(ValueError, match="lower-case"):
        apikey.key_file_line("Web Forms", "k")


def test_main_prints_a_new_key_once_and_its_line(capsys):
    assert apikey.main(["crm"]) == 0
    out, err = capsys.readouterr()
    key = err.rsplit(" ", 1)[-1].strip()
    assert out.strip() == apikey.key_file_line("crm", key)
    assert key not in out  # stdout (the line for the key file) never holds the key


def test_main_hashes_a_key_from_stdin(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("dev-key\n"))
    assert apikey.main(["web", "--stdin"]) == 0
    out, err = capsys.readouterr()
    example = (REPO_ROOT / "deploy" / "api-keys.example").read_text()
    assert out.strip() in example.splitlines()  # the dev key `make run` uses
    assert err == ""
