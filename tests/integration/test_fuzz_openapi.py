"""Schemathesis against the server's own `/openapi.json`: every documented operation (the
v4 commands and the console JSON API), from a real `imcloud serve` on 127.0.0.1, on
SQLite and PostgreSQL, signed in: v4 calls carry the app admin's UserSig, console calls
a signed-in session with its CSRF token.

Each operation gets positive and negative cases (schemathesis's generation modes); the
stateful test chains calls along the schema's OpenAPI links (create_group's GroupId →
get_group_info, add_group_member, send_group_msg, …; account_import → account_check;
the console's POST /apps → its app routes, inferred from the path parameters).

What must hold for every reply: no 5xx; the status code, content type and body match
the schema; a /v4 reply is always HTTP 200 with a consistent ActionStatus / ErrorCode /
ErrorInfo envelope; and the server logs no error. The size comes from
IMCLOUD_TEST_FUZZ_EXAMPLES (half of it per operation; default 24).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from imcloud.api import v4
from imcloud.api.app import create_app
from imcloud.im import usersig
from tests import fuzzcount
from tests.conftest import FUZZ_EXAMPLES
from tests.integration import v4_fixtures as fx
from tests.integration.v4_fixtures import Env

ADMIN = "administrator"
OP_EXAMPLES = max(2, FUZZ_EXAMPLES // 2)
PASSWORD = "alice-fuzz-password"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Moving the simulated clock is left out: it only goes forward, and a fuzzer that moves
# it to the year 9999 makes ~95,000 months due for the bill run it also calls.
EXCLUDED = [("POST", "/console/api/clock")]


@dataclass
class Site:
    env: Env
    sdkappid: int
    secret_key: str
    console: requests.Session

    def sign_in(self) -> None:
        r = self.console.post(
            f"{self.env.base}/console/api/login",
            json={"username": "alice", "password": PASSWORD},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        self.console.headers["X-CSRF-Token"] = r.json()["csrf_token"]

    def authorize(self, case: Any) -> dict[str, Any]:
        """Valid credentials on the case; the keyword arguments for `case.call`."""
        if case.path.startswith("/v4/"):
            case.query = {
                **(case.query or {}),
                "sdkappid": self.sdkappid,
                "identifier": ADMIN,
                "usersig": usersig.generate(self.sdkappid, self.secret_key, ADMIN, 3600),
            }
            return {"timeout": 30}
        return {"session": self.console, "timeout": 30}

    def after(self, case: Any, response: Any) -> None:
        kind = "v4" if case.path.startswith("/v4/") else "console"
        fuzzcount.record(f"requests:schemathesis-{kind}")
        if response.status_code >= 500:
            fuzzcount.record("5xx")
        accepted = (response.status_code < 300 and not case.path.startswith("/v4/")) or (
            response.status_code == 200 and b'"ErrorCode":0,' in response.content
        )
        if accepted:
            fuzzcount.record(f"accepted:schemathesis-{kind}")
        if case.path in ("/console/api/logout", "/console/api/login"):
            self.sign_in()  # a fuzzed sign-out ends the session every other case uses


@pytest.fixture(scope="module", params=fx.BACKENDS)
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    for env in fx.serve(request):
        env.imcloud("console", "add-user", "alice", "--admin", "--password", PASSWORD)
        env.imcloud("console", "add-user", "bob", "--password", "bob-fuzz-password")
        # the v4 app is bob's, so the console fuzzing (alice's session) cannot touch it
        app = env.imcloud("app", "create", "v4-target", "--owner", "bob")
        env.imcloud("app", "upgrade", str(app["sdkappid"]), "--edition", "flagship")
        env.imcloud("app", "create", "alice-app", "--owner", "alice")
        site = Site(env, app["sdkappid"], app["secret_key"], requests.Session())
        site.sign_in()
        admin = env.client(app)
        admin.ok(fx.MULTI_IMPORT, {"Accounts": ["u1", "u2", "u3"]})
        yield site
        site.console.close()


@pytest.fixture(scope="module")
def api_schema(site: Site) -> Any:
    schema = schemathesis.openapi.from_url(f"{site.env.base}/openapi.json")
    schema.config.generation.update(max_examples=OP_EXAMPLES)
    for method, path in EXCLUDED:
        schema = schema.exclude(method=method, path=path)
    return schema


def v4_envelope(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every /v4 reply: HTTP 200, JSON, ActionStatus consistent with ErrorCode."""
    if not case.path.startswith("/v4/"):
        return None
    if response.status_code != 200:
        fuzzcount.record("non-envelope")
        raise AssertionError(f"/v4 answered HTTP {response.status_code}")
    data = response.json()
    ok = (
        isinstance(data, dict)
        and isinstance(data.get("ErrorCode"), int)
        and isinstance(data.get("ErrorInfo"), str)
        and data.get("ActionStatus") == ("OK" if data["ErrorCode"] == 0 else "FAIL")
    )
    if not ok:
        fuzzcount.record("non-envelope")
        raise AssertionError(f"not an envelope: {response.text[:300]}")
    return True


def _documented() -> list[tuple[str, str]]:
    """Every operation of the schema, as `imcloud serve` builds it (test ids are fixed at
    collection; the test checks the served schema has exactly these)."""
    paths = create_app().openapi()["paths"]
    return [
        (m.upper(), p) for p, ops in paths.items() for m in ops if (m.upper(), p) not in EXCLUDED
    ]


OPERATIONS = _documented()


def test_the_served_schema_has_the_operations_fuzzed(api_schema: Any) -> None:
    served = {(m.upper(), p) for p, ops in api_schema.raw_schema["paths"].items() for m in ops}
    assert served - set(EXCLUDED) == set(OPERATIONS)
    assert {p for _, p in OPERATIONS if p.startswith("/v4/")} == {
        f"/v4/{service}/{name}" for service, name in v4.COMMANDS
    }


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_documented_operation_answers_per_its_schema(
    api_schema: Any, site: Site, method: str, path: str
) -> None:
    """Positive and negative cases of one operation (schemathesis's generation modes)."""
    op = api_schema[path][method]
    cases = st.one_of(
        op.as_strategy(GenerationMode.POSITIVE), op.as_strategy(GenerationMode.NEGATIVE)
    )

    @given(cases)
    @hsettings(
        max_examples=OP_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        kwargs = site.authorize(case)
        response = case.call(**kwargs)
        site.after(case, response)
        case.validate_response(response, checks=CHECKS, additional_checks=[v4_envelope])

    run()


def test_stateful_link_chains_answer_per_the_schema(api_schema: Any, site: Site) -> None:
    """Chains of calls along the OpenAPI links: ids that one reply carries, used by the
    next calls; then the server is still healthy and logged no error."""
    since = len(site.env.node.lines)
    machine = api_schema.as_state_machine()
    chains = {name for name in dir(machine) if "___200_" in name or "___201_" in name}
    for link in (
        "create_group___200_GroupInfo__POST_v4_group_open_http_svc_get_group_info",
        "create_group___200_AddMember__POST_v4_group_open_http_svc_add_group_member",
        "create_group___200_Send__POST_v4_group_open_http_svc_send_group_msg",
        "create_group___200_Destroy__POST_v4_group_open_http_svc_destroy_group",
        "account_import___200_CheckImported__POST_v4_im_open_login_svc_account_check",
        "POST_console_api_apps___201_Show__GET_console_api_apps_sdkappid_",
        "POST_console_api_apps___201_Disable__POST_console_api_apps_sdkappid_disable",
    ):
        assert any(name.endswith(link) for name in chains), (link, sorted(chains))

    class Workflow(machine):  # type: ignore[misc, valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return site.authorize(case)

        def after_call(self, response: Any, case: Any) -> None:
            site.after(case, response)

        def validate_response(
            self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, additional_checks=[v4_envelope])

    Workflow.run(
        settings=hsettings(
            max_examples=OP_EXAMPLES,
            stateful_step_count=8,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    assert requests.get(f"{site.env.base}/healthz", timeout=10).json() == {"status": "ok"}
    assert site.env.node.problems(since) == []
