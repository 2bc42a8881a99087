import pytest

from shared.playbook import PlaybookError, load_playbook, parse_playbook
from shared.settings import REPO_ROOT

EXAMPLE = REPO_ROOT / "deploy" / "playbook.example.yaml"


def test_example_playbook_is_valid():
    playbook = load_playbook(EXAMPLE)
    assert playbook.taxonomy.mql_threshold == 50
    assert playbook.taxonomy.tier_for(85) == "hot"
    assert playbook.taxonomy.tier_for(60) == "warm"
    assert playbook.taxonomy.tier_for(-20) == "cold"


def test_error_names_line_and_field():
    text = EXAMPLE.read_text().replace("mql_threshold: 50", "mql_threshold: fifty")
    line = next(i for i, text_line in enumerate(text.splitlines(), 1) if "fifty" in text_line)
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "pb.yaml")
    assert f"pb.yaml:{line}: taxonomy.mql_threshold:" in str(err.value)


def test_unknown_field_is_refused_with_its_line():
    text = EXAMPLE.read_text().replace(
        "    - { activity: page_view, points: 1 }", "    - { activity: page_view, pionts: 1 }"
    )
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "pb.yaml")
    assert "scoring.behaviour.6.pionts" in str(err.value)


def test_broken_yaml_names_the_line():
    with pytest.raises(PlaybookError, match=r"pb.yaml:2: not valid YAML"):
        parse_playbook("taxonomy:\n  mql_threshold: 1: 2\n", "pb.yaml")


def test_duplicate_rep_ids_are_refused():
    text = EXAMPLE.read_text().replace("id: rep-ben", "id: rep-ana")
    with pytest.raises(PlaybookError, match="repeated: \\['rep-ana'\\]"):
        parse_playbook(text)
