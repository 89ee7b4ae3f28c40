"""Prometheus metrics, one registry per app (tests build several apps per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

# Phones on mobile networks: most of the latency budget is the network, so
# the interesting range for the server side is a few ms to a few seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "shoplens_http_request_duration_seconds",
            "HTTP request latency by route template and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.embed_seconds = Histogram(
            "shoplens_embed_seconds",
            "Decode + preprocess + model inference time of one query.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.search_seconds = Histogram(
            "shoplens_search_seconds",
            "Vector search + filtering time of one query.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.index_size = Gauge(
            "shoplens_index_size",
            "Searchable catalog size.",
            ["kind"],
            registry=self.registry,
        )
        self.index_info = Info(
            "shoplens_index", "The live index version and model.", registry=self.registry
        )
        self.index_reloads = Counter(
            "shoplens_index_reloads",
            "Snapshots swapped in without downtime.",
            registry=self.registry,
        )
        self.query_domain_searches = Gauge(
            "shoplens_query_domain_searches",
            "Photo searches the shop's query mean is made of (studio snapshots centre "
            "photo searches on it from 30 on; serving/query_domain.py).",
            registry=self.registry,
        )
        self.ready = Gauge(
            "shoplens_ready",
            "1 when an index is loaded and searches are served.",
            registry=self.registry,
        )

        # Learning from shoppers. Click-through rate:
        #   rate(shoplens_feedback_received_total{event="click"}[1h])
        #     / rate(shoplens_searches_logged_total[1h])
        # and the confirm rate the same with event="confirm".
        self.searches_logged = Counter(
            "shoplens_searches_logged",
            "Search answers given a search_id that feedback can name.",
            registry=self.registry,
        )
        self.feedback_received = Counter(
            "shoplens_feedback_received",
            "Feedback events accepted (202), by event.",
            ["event"],
            registry=self.registry,
        )
        self.feedback_refused = Counter(
            "shoplens_feedback_refused",
            "Feedback events refused, by error code (unknown_search, search_too_old, ...).",
            ["code"],
            registry=self.registry,
        )
        self.feedback_kept = Counter(
            "shoplens_feedback_photos_kept",
            "Shopper photos kept from confirmations (learning on), by state (pending review "
            "or approved).",
            ["state"],
            registry=self.registry,
        )
        self.feedback_not_kept = Counter(
            "shoplens_feedback_photos_not_kept",
            "Confirmations whose photo was not kept, by reason (a poisoning guard, "
            "learning off, ...).",
            ["reason"],
            registry=self.registry,
        )
        self.feedback_reviewed = Counter(
            "shoplens_feedback_photos_reviewed",
            "Shopper photos an admin approved or rejected.",
            ["decision"],
            registry=self.registry,
        )
        self.feedback_learnt = Gauge(
            "shoplens_feedback_photos_learnt",
            "Shopper photos the last learn run (this process) learnt from.",
            registry=self.registry,
        )

    def set_index(self, size: dict[str, int], version: str, model: str) -> None:
        for kind in ("products", "images", "vectors"):
            self.index_size.labels(kind).set(size.get(kind, 0))
        self.index_info.info({"version": version, "model": model})
        self.ready.set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
