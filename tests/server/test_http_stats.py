"""The request metrics' collector: counted in dictionaries, scraped as Prometheus families."""

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pyorder.server.metrics import HttpStats


def scrape(stats: HttpStats) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_counts_and_cumulative_buckets_as_prometheus_has_them() -> None:
    stats = HttpStats(buckets=(0.001, 0.01, 1))
    for seconds in (0.0005, 0.001, 0.01, 0.5):  # a bound is in its own bucket (le)
        stats.observe("POST", "/v1/orders", 201, seconds)
    stats.observe("POST", "/v1/orders", 409, 5.0)
    stats.observe("GET", "/v1/orders/{order_id}", 404, 0.002)
    got = scrape(stats)
    route = (("method", "POST"), ("route", "/v1/orders"))

    def requests(status: str) -> float:
        return got[("pyorder_http_requests_total", (*route, ("status", status)))]

    assert (requests("201"), requests("409")) == (4.0, 1.0)
    buckets = {
        le: got[("pyorder_http_request_seconds_bucket", (("le", le), *route))]
        for le in ("0.001", "0.01", "1.0", "+Inf")
    }
    assert buckets == {"0.001": 2.0, "0.01": 3.0, "1.0": 4.0, "+Inf": 5.0}
    assert got[("pyorder_http_request_seconds_count", route)] == 5.0
    assert abs(got[("pyorder_http_request_seconds_sum", route)] - 5.5115) < 1e-9
    other = (("method", "GET"), ("route", "/v1/orders/{order_id}"))
    assert got[("pyorder_http_request_seconds_bucket", (("le", "0.01"), *other))] == 1.0


def test_nothing_observed_scrapes_empty_families() -> None:
    assert scrape(HttpStats(buckets=(0.1,))) == {}
