"""Every route the emulator serves is documented, in the docs and in its OpenAPI document,
from one description (``emulator._http_api.ENDPOINTS``), and what it documents is true."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from timeback_client.emulator import Emulator
from timeback_client.emulator._http_api import ENDPOINTS, openapi, reference_markdown

pytestmark = pytest.mark.anyio

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "emulator-http.md"


def served(emulator: Emulator) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD comes with GET)."""
    app = emulator.app._app  # type: ignore[attr-defined]  # behind the fault middleware
    return {
        (method, route.path)
        for route in app.routes
        if isinstance(route, Route)
        for method in route.methods or ()
        if method != "HEAD"
    }


@pytest.mark.parametrize("mount", ["/api/timeback", "/backend/tb"])
def test_every_served_route_is_described_and_every_described_one_served(mount: str) -> None:
    with Emulator(mount=mount) as emulator:
        routes = served(emulator)
    described = {(e.method, e.served_path(mount)) for e in ENDPOINTS}
    assert routes - described == set(), "served but not in ENDPOINTS (emulator/_http_api.py)"
    assert described - routes == set(), "in ENDPOINTS but not served"


def test_every_served_route_is_in_the_docs_reference() -> None:
    page = PAGE.read_text(encoding="utf-8")
    with Emulator() as emulator:
        for method, path in sorted(served(emulator)):
            assert f"\n### {method} {path}\n" in page, f"{method} {path} is not in {PAGE.name}"


def test_the_docs_reference_is_rendered_from_the_description() -> None:
    assert PAGE.read_text(encoding="utf-8") == reference_markdown(), (
        "docs/reference/emulator-http.md is stale: write reference_markdown() of "
        "timeback_client.emulator._http_api to it"
    )


async def test_the_openapi_document_is_served_for_the_mount_in_use() -> None:
    with Emulator(mount="/backend/tb") as emulator:
        async with httpx.AsyncClient(
            transport=emulator.transport(), base_url="http://emulator"
        ) as http:
            document = (await http.get("/_emulator/openapi.json")).json()
        assert document == openapi("/backend/tb")
        paths = {
            (method.upper(), path)
            for path, operations in document["paths"].items()
            for method in operations
        }
        assert paths == served(emulator)
        assert document["openapi"] == "3.1.0"


@pytest.mark.e2e  # importing the validator takes seconds (jsonschema's format checkers)
def test_the_openapi_document_is_valid_openapi_3_1() -> None:
    from openapi_spec_validator import validate

    validate(openapi())  # type: ignore[arg-type]  # a plain dict is what it reads


#: The routes that change the emulator: their examples' answers follow from their bodies.
CHANGES = {
    ("POST", "/_emulator/record"),
    ("PUT", "/_emulator/roster"),
    ("POST", "/_emulator/roster"),
    ("PUT", "/_emulator/courses"),
    ("POST", "/_emulator/courses"),
    ("POST", "/_emulator/courses/sync"),
    ("POST", "/_emulator/faults"),
}
#: What the clock and the order of the examples decide, and the Caliper event abridged.
UNSHOWN = {"seq", "endedAt", "receivedAt", "objectId", "caliper"}


def disagreements(example: object, answer: object, where: str = "$") -> list[str]:
    """Where the example and the answer differ, but for the `UNSHOWN` fields."""
    if isinstance(example, dict) and isinstance(answer, dict):
        found = [f"{where}: keys {sorted(set(example) ^ set(answer))}"]
        found = found if set(example) != set(answer) else []
        for key in set(example) & set(answer) - UNSHOWN:
            found += disagreements(example[key], answer[key], f"{where}.{key}")
        return found
    if isinstance(example, list) and isinstance(answer, list):
        found = [f"{where}: {len(example)} items, not {len(answer)}"]
        found = found if len(example) != len(answer) else []
        for index, (one, other) in enumerate(zip(example, answer, strict=False)):
            found += disagreements(one, other, f"{where}[{index}]")
        return found
    return [] if example == answer else [f"{where}: {example!r}, not {answer!r}"]


async def test_each_documented_example_gets_a_documented_status() -> None:
    """The examples, sent in the page's order, are answered with a status the page lists;
    a change's answer is the example's."""
    with Emulator(students={"tok-ada": "ada@example.edu"}) as emulator:
        async with httpx.AsyncClient(
            transport=emulator.transport(),
            base_url="http://emulator",
            headers={"Authorization": "Bearer tok-ada"},
        ) as http:
            for endpoint in ENDPOINTS:
                path = endpoint.served_path(emulator.mount).replace(
                    "{run_id}", emulator.runs()[0].run_id if emulator.runs() else "none"
                )
                kwargs = {} if endpoint.body is None else {"json": endpoint.body_example}
                response = await http.request(endpoint.method, path, **kwargs)  # type: ignore[arg-type]
                statuses = [status for status, _ in endpoint.statuses]
                assert response.status_code == statuses[0], (endpoint, response.text)
                if (endpoint.method, endpoint.path) in CHANGES:
                    # What a change answers is the example, but for what the clock decides.
                    assert disagreements(endpoint.answer_example, response.json()) == [], endpoint
