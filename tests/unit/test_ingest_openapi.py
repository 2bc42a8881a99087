from services.ingest.app import EXAMPLES, build_app
from services.ingest.sources import hubspot, marketo, mautic, segment
from shared.settings import Settings


def test_openapi_describes_every_endpoint_with_an_example_per_platform():
    spec = build_app(Settings()).openapi()
    events = spec["paths"]["/v1/events"]["post"]
    assert "examples" in str(events["requestBody"])
    webhook = spec["paths"]["/v1/webhooks/{source}"]["post"]
    examples = webhook["requestBody"]["content"]["application/json"]["examples"]
    assert set(examples) == {"hubspot", "marketo", "mautic", "segment"}
    for operation in (events, webhook):
        assert {"202", "400", "401", "413", "415", "422", "429", "503"} <= set(
            operation["responses"]
        )


def test_the_documented_examples_are_accepted_as_they_stand():
    normalisers = {
        "hubspot": hubspot.normalise,
        "mautic": mautic.normalise,
        "segment": segment.normalise,
        "marketo": marketo.normalise,
    }
    for source, example in EXAMPLES.items():
        out = normalisers[source](example)
        assert len(out.events) == 1 and not out.unusable, source
