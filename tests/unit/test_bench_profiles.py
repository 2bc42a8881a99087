"""The bench's py-spy summary charges samples to the right area and to our nearest code."""

from bench.profiles import NOT_OURS, area, load, markdown, parse

SITE = "/work/.venv/lib/python3.11/site-packages"
RAW = "\n".join(
    [
        # our handler calling into asyncpg: 30 samples
        "run (/work/main/shared/consumer.py:250)"
        ";_apply (/work/main/services/scoring/service.py:130)"
        f";fetch ({SITE}/asyncpg/connection.py:690);_read ({SITE}/asyncpg/protocol.py:12) 30",
        # the pure core itself: 50 samples
        "run (/work/main/shared/consumer.py:250)"
        ";_apply (/work/main/services/scoring/service.py:130)"
        ";apply (/work/main/services/scoring/scoring.py:400) 50",
        # the event loop with none of our frames: 20 samples
        "<module> (/usr/lib/python3.11/asyncio/runners.py:118)"
        ";_run_once (/usr/lib/python3.11/asyncio/base_events.py:1900) 20",
        "a line py-spy would not write",
    ]
)


def test_areas_are_the_innermost_frames_package() -> None:
    assert area(f"{SITE}/asyncpg/protocol.py") == "asyncpg"
    assert area(f"{SITE}/orjson.cpython-311-x86_64-linux-gnu.so") == "orjson"
    assert area("/work/main/services/scoring/scoring.py") == "services/scoring"
    assert area("/work/main/shared/consumer.py") == "shared"
    assert area("/usr/lib/python3.11/asyncio/base_events.py") == "asyncio (event loop)"
    assert area("/usr/lib/python3.11/json/decoder.py") == "python (stdlib, interpreter)"


def test_samples_are_counted_by_area_by_our_nearest_code_and_by_leaf() -> None:
    profile = parse(RAW, "scoring")
    assert profile.samples == 100
    assert profile.areas == {
        "asyncpg": 30,
        "services/scoring": 50,
        "asyncio (event loop)": 20,
    }
    assert profile.ours == {
        "_apply (services/scoring/service.py)": 30,
        "apply (services/scoring/scoring.py)": 50,
        NOT_OURS: 20,
    }
    assert profile.leaves.most_common(1) == [("apply (services/scoring/scoring.py)", 50)]


def test_the_report_section_gives_shares_of_the_sampled_cpu() -> None:
    text = "\n".join(markdown([parse(RAW, "scoring")]))
    assert "### scoring: 1.0 s sampled running" in text
    assert "| asyncpg | 30.0% |" in text
    assert "| apply (services/scoring/scoring.py) | 50.0% |" in text


def test_the_entry_point_is_not_charged_and_profiles_are_named_by_scenario(tmp_path) -> None:
    raw = (
        "main (/work/main/services/cli.py:271);_serve (/work/main/services/cli.py:47)"
        f";Server.run ({SITE}/uvicorn/server.py:86) 7"
    )
    (tmp_path / "ingest").mkdir()
    (tmp_path / "ingest" / "ingest-4242.txt").write_text(raw)
    [profile] = load(tmp_path)
    assert profile.name == "ingest/ingest-4242"
    assert profile.ours == {NOT_OURS: 7}
