"""The Grafana dashboard asks only for series the services really export."""

from runtime import metrics
from tests.dashboard_queries import metric_names, queries


def test_every_dashboard_query_names_an_exported_metric() -> None:
    """A renamed metric would leave a panel silently empty."""
    exported = metrics.exported_names()
    unknown = {name for expr in queries() for name in metric_names(expr)} - exported
    assert unknown == set()


def test_the_dashboard_shows_throughput_lag_dead_letters_and_job_outcomes() -> None:
    """Each of the four views the issue asks for has a panel over its metric."""
    named = {name for expr in queries() for name in metric_names(expr)}
    assert {
        "archiver_messages_handled_total",
        "archiver_consumer_pending_messages",
        "archiver_consumer_ack_pending_messages",
        "archiver_messages_dead_lettered_total",
        "archiver_jobs_finished_total",
        "archiver_datasets_finished_total",
    } <= named


def test_metric_names_are_read_from_promql() -> None:
    """Functions, grouping labels, matchers and durations are not taken for metric names."""
    expr = (
        "histogram_quantile(0.95, sum by (consumer, le) "
        '(rate(archiver_handler_duration_seconds_bucket{outcome="ok"}[5m])))'
    )
    assert metric_names(expr) == {"archiver_handler_duration_seconds_bucket"}


def test_every_replica_is_counted_once_in_each_panel() -> None:
    """With one Prometheus target per replica, a consumer's backlog (every replica reports the
    same one) is taken with max, and work done (each replica its own share) is summed."""
    for expr in queries():
        names = metric_names(expr)
        if names & {"archiver_consumer_pending_messages", "archiver_consumer_ack_pending_messages"}:
            assert expr.startswith("max by (consumer) ("), expr
        elif any(name.endswith(("_total", "_bucket")) for name in names):
            assert "sum" in expr, expr
