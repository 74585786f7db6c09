"""Two regions, deployed: an instance per region, each behind its own nginx, one Postgres.

Each region runs gunicorn (``-c gunicorn.conf.py wsgi:app``, two workers) with
its own SERVICE_REGION, behind a real nginx whose server block is
deploy/nginx.conf itself (tests/support/deployment.py replaces only the listen
address and the upstream), against one Postgres database made by ``alembic
upgrade head`` and one Redis for the limiter. The servers start once for the
module; each test uses daemon ids of its own.

Real processes run on the real clock, so the test that needs daemons to go
stale uses a short TTL (DAEMON_TTL_SECONDS=3) and waits it out.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.api import registration
from tests.support.deployment import Nginx, nginx_binary, start_instances, start_nginx
from tests.support.gunicorn_servers import Gunicorn
from tests.support.http_client import Reply, request
from tests.support.processes import service_env
from tests.support.redis_store import REDIS_URL, delete_redis_keys, redis_server_pid
from tests.support.unavailable import skip_or_fail_when_unavailable

ADMIN_KEY = "region-deploy-admin-key-0123"
TTL_SECONDS = 3
REGIONS = ("eu-west", "us-east")


@dataclass
class RegionSite:
    """One region's instance and the nginx in front of it."""

    region: str
    instance: Gunicorn
    nginx: Nginx

    def call(self, method: str, path: str, body=None) -> Reply:
        return request(self.nginx.port, method, path, body=body, api_key=ADMIN_KEY)

    def register(self, daemon_id: str, **fields) -> None:
        reply = self.call("POST", "/api/daemon/register", registration(daemonId=daemon_id, **fields))
        assert reply.status == 201, (reply.status, reply.body, self.instance.output())


@contextmanager
def region_site(workdir: Path, database_url: str, redis_url: str, prefix: str,
                region: str) -> Iterator[RegionSite]:
    env = service_env(
        WEB_CONCURRENCY="2",
        ADMIN_API_KEY=ADMIN_KEY,
        DATABASE_URL=database_url,
        TRUSTED_PROXY_HOPS="1",
        RATELIMIT_STORAGE_URI=redis_url,
        RATELIMIT_KEY_PREFIX=prefix,
        ADMIN_RATE_LIMIT="1000000 per minute",
        DAEMON_TTL_SECONDS=str(TTL_SECONDS),
        SERVICE_REGION=region,
    )
    [instance] = start_instances(workdir / "gunicorn", env, count=1, workers=2)
    try:
        nginx = start_nginx(workdir / "nginx", upstream_ports=[instance.port])
        try:
            yield RegionSite(region, instance, nginx)
        finally:
            nginx.stop()
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def sites(tmp_path_factory, migrated_postgres_url) -> Iterator[dict[str, RegionSite]]:
    nginx_binary()  # skip (locally) or fail (CI) before starting anything
    with skip_or_fail_when_unavailable():
        redis_server_pid(REDIS_URL)
    prefix = f"region-deploy-{uuid.uuid4().hex}"
    try:
        with ExitStack() as stack:
            yield {
                region: stack.enter_context(region_site(
                    tmp_path_factory.mktemp(region), migrated_postgres_url, REDIS_URL, prefix, region))
                for region in REGIONS
            }
    finally:
        delete_redis_keys(REDIS_URL, prefix)


@pytest.fixture
def run() -> str:
    """A prefix for this test's daemon ids."""
    return f"r{uuid.uuid4().hex[:8]}"


def _ids(states: list[dict]) -> set[str]:
    return {state["daemonId"] for state in states}


def test_a_daemon_registering_through_each_instance_lands_in_its_region(sites, run):
    west, east = sites["eu-west"], sites["us-east"]
    west.register(f"{run}-w")
    east.register(f"{run}-e")
    east.register(f"{run}-own", region="ap-south")  # a region of its own wins
    for site in (west, east):  # either instance reads the same registry
        regions = {
            daemon_id: site.call("GET", f"/api/daemon/{daemon_id}").json()["region"]
            for daemon_id in (f"{run}-w", f"{run}-e", f"{run}-own")
        }
        assert regions == {f"{run}-w": "eu-west", f"{run}-e": "us-east", f"{run}-own": "ap-south"}


def test_regions_through_either_instance_show_both(sites, run):
    west, east = sites["eu-west"], sites["us-east"]
    west.register(f"{run}-w")
    east.register(f"{run}-e")
    through_west = west.call("GET", "/api/regions").json()
    through_east = east.call("GET", "/api/regions").json()
    for found in (through_west, through_east):
        by_region = {entry["region"]: entry for entry in found}
        assert {"eu-west", "us-east"} <= set(by_region)
        assert by_region["eu-west"]["active"] >= 1 and by_region["us-east"]["active"] >= 1
        assert by_region["eu-west"]["disrupted"] is False
    assert [e["region"] for e in through_west] == [e["region"] for e in through_east]


def test_a_region_filter_through_one_instance_reaps_only_that_region(sites, run):
    west, east = sites["eu-west"], sites["us-east"]
    west_ids = {f"{run}-w{n}" for n in range(3)}
    east_ids = {f"{run}-e{n}" for n in range(3)}
    for daemon_id in sorted(west_ids):
        west.register(daemon_id)
    for daemon_id in sorted(east_ids):
        east.register(daemon_id)
    threading.Event().wait(TTL_SECONDS + 0.5)  # real processes, real time: let the TTL run out
    west.register(f"{run}-w-live")

    # us-east's stale daemons, reaped through eu-west's instance: none of eu-west's.
    reply = west.call("GET", "/api/daemon/health?region=us-east")
    assert reply.status == 200, reply.body
    body = reply.json()
    assert east_ids <= _ids(body["stale"])
    assert all(state["region"] == "us-east" for state in body["stale"] + body["activeDaemons"])
    assert not west_ids & _ids(body["stale"])

    # eu-west's are still there, reported once, to a reader of that region through the other.
    regions = {e["region"]: e for e in east.call("GET", "/api/regions").json()}
    assert regions["eu-west"]["stale"] >= 3
    # us-east has nothing left in the registry (listed, if at all, with nothing stale).
    assert regions.get("us-east", {"stale": 0})["stale"] == 0
    reply = east.call("GET", "/api/daemon/health?region=eu-west")
    body = reply.json()
    assert west_ids <= _ids(body["stale"])
    assert f"{run}-w-live" in _ids(body["activeDaemons"])
    assert not west_ids & _ids(west.call("GET", "/api/daemon/health").json()["stale"])
