"""All settings in one pydantic-settings object (environment prefix ``SHOPLENS_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_model_cache() -> Path:
    return Path.home() / ".cache" / "shoplens" / "models"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOPLENS_", env_file=None, extra="ignore")

    # Where indexes, the metadata database and AR assets live.
    data_dir: Path = Path("./shoplens-data")
    # postgresql://user:pass@host/db: every store's rows in that one database,
    # shared by any number of `shoplens serve` replicas that also share data_dir
    # (docs/scaling.md). Unset: one SQLite file per store under data_dir.
    database_url: SecretStr | None = None
    # Replicas over PostgreSQL: each `shoplens serve` refreshes its replica row
    # and its running job's heartbeat this often (seconds); a replica or a job
    # silent for replica_stale_s is counted dead (its job taken over by another).
    replica_heartbeat_s: float = Field(default=5.0, gt=0)
    replica_stale_s: float = Field(default=15.0, gt=0)
    # Exported ONNX models are cached here, shared by every data dir on the machine.
    model_cache_dir: Path = Field(default_factory=_default_model_cache)

    # Embedding model: a registry name or "open_clip:<arch>". The default is
    # EfficientNet-Lite0 with the multi-layer descriptor (head + stages 4 and 5
    # of the same forward pass), int8-quantised: with catalog adaptation it
    # finds the right product first 0.804 of the time on the grocery val
    # queries (0.794 in float32, 0.764 for plain pooled features) at half the
    # float32 inference time (benchmarks/results/quality.md, embed.md).
    model: str = "effnet-lite0-lite1-ml-int8"
    # Local checkpoint for OpenCLIP models; nothing is ever downloaded.
    openclip_checkpoint: Path | None = None
    # ONNX Runtime intra-op threads; 0 lets ORT use every core.
    ort_threads: int = 0

    # Indexing.
    batch_size: int = 32
    decode_workers: int = 2
    # Below this many vectors the index is exact; above it an ANN index with
    # exact re-ranking is built.
    exact_index_max: int = 50_000
    # Memory budget for the vector index, used to pick the index type at scale.
    index_memory_budget_mb: int = 1500
    # Catalog adaptation (shoplens.models.adapt): "lda" fits a projection on the
    # catalog's own product ids at every snapshot build and searches in that
    # space (grocery val Recall@1 0.56 -> ~0.76, benchmarks/results/quality.md);
    # it needs several photos per product and falls back to the plain features
    # otherwise. SHOPLENS_ADAPTATION=none turns it off (from the next index run).
    adaptation: Literal["lda", "none"] = "lda"
    # Photo searches on a studio snapshot (too few photos per product to learn an
    # adaptation from) verify their first products with local features
    # (indexer/serving/rerank.py): studio-catalog R@1 0.42 -> 0.48, for ~10 ms of
    # CPU per search. SHOPLENS_RERANK=off keeps the plain ranking (takes effect at once).
    rerank: Literal["auto", "off"] = "auto"
    # Photo searches on a studio snapshot are centred on the mean of the shop's
    # own photo searches once there are 30 (indexer/serving/query_domain.py):
    # studio-catalog R@1 +0.05, for a vector subtraction. Only a running sum and
    # count are kept (data_dir/query_domain), never a photo or a single search's
    # vector. SHOPLENS_QUERY_CENTRING=off neither keeps nor uses it.
    query_centring: Literal["auto", "off"] = "auto"
    # Where decoding + embedding run: this process, or a Ray cluster (docs/ray.md).
    index_engine: Literal["local", "ray"] = "local"
    # Ray cluster address ("ray://head:10001", "auto"); None starts a local Ray.
    ray_address: str | None = None
    ray_actors: int = 2
    ray_threads_per_actor: int = 1
    # Ship local paths instead of bytes: only when every worker sees the same files.
    ray_paths_on_workers: bool = False

    # Remote (http/https) manifest images.
    fetch_max_connections: int = 8
    fetch_connect_timeout_s: float = 5.0
    fetch_read_timeout_s: float = 20.0
    fetch_retries: int = 3

    # Disk budgets (MiB) of the two caches under data_dir/cache: past one, its
    # least recently used entries are evicted (an evicted rendition is made
    # again on request, an evicted download fetched again in full).
    renditions_cache_max_mb: int = Field(default=512, ge=1)
    fetch_cache_max_mb: int = Field(default=2048, ge=1)
    # `shoplens gc` leaves unreferenced photos and embeddings younger than this
    # alone: a PUT or a run may have written them and not committed its rows yet.
    gc_grace_s: float = Field(default=3600.0, ge=0)

    # Upload limits.
    max_request_bytes: int = 25 * 1024 * 1024
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 75_000_000
    max_asset_bytes: int = 100 * 1024 * 1024

    # Service.
    host: str = "127.0.0.1"
    port: int = 8000
    admin_token: SecretStr | None = None
    cors_origins: list[str] = Field(default_factory=list)
    rate_limit_per_minute: int = 0  # 0 = off
    # How often the service looks for a newly published snapshot (seconds).
    reload_interval_s: float = 1.0
    # Public base URL used in absolute links (AR intents need one); empty = from the request.
    public_base_url: str = ""

    # Learning from shoppers (docs/feedback.md). Off by default, privacy first:
    # without it no shopper photo (nor its vector) is ever kept, only the
    # search's id, time and the product ids it showed, for the feedback window.
    learn_from_feedback: bool = False
    # Kept shopper photos wait for an admin's approval before `shoplens learn` uses them.
    feedback_review: bool = False
    # Kept shopper photos are deleted this many days after the search.
    feedback_retention_days: float = Field(default=90.0, gt=0)
    # Feedback on a search is accepted this long after it (410 after); a held
    # photo of a search nobody confirmed is deleted when it closes.
    feedback_window_hours: float = Field(default=24.0, gt=0)

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError("SHOPLENS_DATABASE_URL must be a postgresql:// URL")
        return value

    @property
    def db_path(self) -> Path:
        return self.data_dir / "catalog.db"

    def database(self, sqlite_file: Path) -> Path | str:
        """Where a store keeps its rows: the shared PostgreSQL database when one
        is configured, else its own SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return sqlite_file

    @property
    def snapshots_dir(self) -> Path:
        return self.data_dir / "snapshots"

    @property
    def assets_dir(self) -> Path:
        return self.data_dir / "ar"

    @property
    def renditions_cache_dir(self) -> Path:
        """Phone-sized renditions the service made of catalog photos."""
        return self.data_dir / "cache" / "renditions"

    @property
    def fetch_cache_dir(self) -> Path:
        """Downloaded manifest images with their validators (ETag/Last-Modified)."""
        return self.data_dir / "cache" / "fetch"
