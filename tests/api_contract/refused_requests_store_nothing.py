"""A schemathesis check for `dpo serve`: a refused `POST /api/pairs` stores nothing.

After every answer to `POST /api/pairs` it asks `GET /api/stats` how many pairs are stored and
compares that with the pairs the server said it stored (`201`, or `200` for a retry), counted
by idempotency key so that schemathesis' replays while shrinking count once. Loaded by
`tests/tests/serving/api_contract.rs` through `SCHEMATHESIS_HOOKS`.
"""

import json
import urllib.request
from urllib.parse import urljoin

import schemathesis


@schemathesis.check
class RefusedPairsStoreNothing:
    """A refused pair leaves the store as it was; an accepted one is stored once."""

    def __init__(self):
        self.accepted_keys = set()

    def after_response(self, ctx, response, case):
        if case.method.upper() != "POST" or case.operation.path != "/api/pairs":
            return
        if response.status_code in (200, 201):
            self.accepted_keys.add(json.loads(response.content)["idempotency_key"])
        stats_url = urljoin(response.request.url, "/api/stats")
        with urllib.request.urlopen(stats_url, timeout=30) as answer:
            stored = json.load(answer)["total"]
        if stored != len(self.accepted_keys):
            raise AssertionError(
                f"{stored} pairs stored after {len(self.accepted_keys)} accepted: "
                f"this {response.status_code} answer "
                + ("stored a pair" if stored > len(self.accepted_keys) else "lost one")
            )
