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
    assert playbook.taxonomy.band("warm") == (50, 80)
    assert playbook.taxonomy.band("cold")[0] == float("-inf")


def test_error_names_line_and_field():
    text = EXAMPLE.read_text().replace("mql_threshold: 50", "mql_threshold: fifty")
    line = next(i for i, text_line in enumerate(text.splitlines(), 1) if "fifty" in text_line)
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "pb.yaml")
    assert f"pb.yaml:{line}: taxonomy.mql_threshold:" in str(err.value)


def test_unknown_field_is_refused_with_its_line():
    text = EXAMPLE.read_text().replace(
        "    - { activity: unsubscribe, points: -50 }",
        "    - { activity: unsubscribe, pionts: -50 }",
    )
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text, "pb.yaml")
    assert "scoring.behaviour.8.pionts" in str(err.value)


def test_broken_yaml_names_the_line():
    with pytest.raises(PlaybookError, match=r"pb.yaml:2: not valid YAML"):
        parse_playbook("taxonomy:\n  mql_threshold: 1: 2\n", "pb.yaml")


def test_duplicate_rep_ids_are_refused():
    text = EXAMPLE.read_text().replace("id: rep-ben", "id: rep-ana")
    with pytest.raises(PlaybookError, match="repeated: \\['rep-ana'\\]"):
        parse_playbook(text)


def test_conditions_take_exactly_one_test_and_a_valid_regex():
    base = EXAMPLE.read_text()
    two = base.replace(
        "attribute: company_size, gte: 200,", "attribute: company_size, gte: 200, exists: true,"
    )
    with pytest.raises(PlaybookError, match="exactly one of"):
        parse_playbook(two)
    bad_regex = base.replace('regex: "/pricing"', 'regex: "(unclosed"')
    with pytest.raises(PlaybookError, match="regex does not compile"):
        parse_playbook(bad_regex)


def test_unknown_stage_names_are_refused():
    text = EXAMPLE.read_text().replace(
        "    customer: The deal closed.", "    client: The deal closed."
    )
    with pytest.raises(PlaybookError, match="unknown stages"):
        parse_playbook(text)


def test_fit_conditions():
    playbook = load_playbook(EXAMPLE)
    rules = {r.name: r for r in playbook.scoring.fit}
    assert rules["large_company"].matches(250) and not rules["large_company"].matches(199)
    assert rules["large_company"].matches("300") and not rules["large_company"].matches("many")
    assert rules["senior_title"].matches("Head of Sales") and not rules["senior_title"].matches(
        "Header"
    )
    assert rules["free_mail"].matches("GMAIL.COM") and not rules["free_mail"].matches(None)
