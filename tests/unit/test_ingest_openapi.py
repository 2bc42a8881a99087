from services.ingest.app import build_app
from services.ingest.sources import registry
from shared.settings import Settings


def test_openapi_describes_every_endpoint_with_an_example_per_platform():
    spec = build_app(Settings()).openapi()
    events = spec["paths"]["/v1/events"]["post"]
    assert "examples" in str(events["requestBody"])
    webhook = spec["paths"]["/v1/webhooks/{source}"]["post"]
    examples = webhook["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"hubspot", "marketo", "mautic", "segment"} == set(registry())
    for operation in (events, webhook):
        assert {"202", "400", "401", "413", "415", "422", "429", "503"} <= set(
            operation["responses"]
        )


def test_the_documented_examples_are_accepted_as_they_stand():
    for name, source in registry().items():
        out = source.normalise(source.EXAMPLE, Settings())
        assert len(out.events) == 1 and not out.unusable, name


def test_every_error_is_documented_as_problem_json_and_422_is_not_fastapis_schema():
    spec = build_app(Settings()).openapi()
    assert "HTTPValidationError" not in str(spec)
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            for status, response in operation["responses"].items():
                if status == "default" or (status[0] in "45" and path != "/readyz"):
                    assert list(response["content"]) == ["application/problem+json"], (
                        path,
                        status,
                    )
