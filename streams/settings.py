"""One ``Settings`` object for every command, read from ``CRM_KPI_*`` environment
variables (and CLI flags that override them). Every field has a documented default.

Bad configuration stops start-up with a one-line reason: call :func:`load_settings`,
which raises :class:`ConfigError` with a message fit for a terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.core.durations import parse_duration


class ConfigError(Exception):
    """Configuration is invalid; the message is one line naming the setting and why."""


class Topics(BaseSettings):
    """Topic names (catalogue §2). Override with e.g. ``CRM_KPI_TOPICS__KPI=my.kpi``."""

    model_config = SettingsConfigDict(extra="forbid")

    tickets: str = "crm.tickets.v1"
    interactions: str = "crm.interactions.v1"
    purchases: str = "crm.purchases.v1"
    kpi: str = "crm.kpi.v1"
    sla: str = "crm.sla.v1"
    signals: str = "crm.churn-signals.v1"
    dlq: str = "crm.dlq.v1"
    partials: str = "crm.kpi-partials"

    def inputs(self) -> list[str]:
        return [self.tickets, self.interactions, self.purchases]

    def outputs(self) -> list[str]:
        return [self.kpi, self.sla, self.signals, self.dlq]

    def all(self) -> list[str]:
        return [*self.inputs(), *self.outputs(), self.partials]


def _duration_field(default: str, description: str):
    return Field(default=default, description=description)


class Settings(BaseSettings):
    """All settings. Environment: ``CRM_KPI_<FIELD>`` (nested: ``CRM_KPI_TOPICS__KPI``)."""

    model_config = SettingsConfigDict(
        env_prefix="CRM_KPI_",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
    )

    # --- Kafka -------------------------------------------------------------------
    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma separated")
    app_id: str = Field("crm-kpi", description="consumer group / application id")
    topics: Topics = Field(default_factory=Topics, description="topic names")
    partitions: int = Field(6, ge=1, le=1024, description="partitions when the tool creates topics")
    replication_factor: int = Field(1, ge=1, le=16, description="replication factor when the tool creates topics")
    changelog_segment_bytes: int = Field(
        64 * 1024 * 1024, ge=1024 * 1024, le=1024 * 1024 * 1024,
        description="segment.bytes of the changelog topics the tool creates: Kafka never compacts the active "
        "segment, so a restore reads up to this much per partition on top of the state (broker default: 1 GiB)",
    )

    # --- Kafka security ----------------------------------------------------------
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="Kafka security protocol"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism (with SASL_* protocols)"
    )
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password (or use sasl_password_file)")
    sasl_password_file: Path | None = Field(None, description="file holding the SASL password")
    ssl_cafile: Path | None = Field(None, description="CA bundle that signed the broker certificate")
    ssl_certfile: Path | None = Field(None, description="client certificate (mTLS)")
    ssl_keyfile: Path | None = Field(None, description="client private key (mTLS)")

    # --- metrics endpoint --------------------------------------------------------
    metrics_host: str = Field("127.0.0.1", description="bind address of /metrics")
    metrics_port: int = Field(9108, ge=0, le=65535, description="port of /metrics (0 = pick a free port)")

    # --- event time --------------------------------------------------------------
    windows: str = Field("5m,1h,1d,30d", description="window sizes; 30d is rolling, advancing daily")
    out_of_orderness: str = Field("30s", description="watermark = max event time - this bound")
    grace: str = Field("60s", description="a window closes at end + grace (watermark time)")
    allowed_lateness: str = Field("1d", description="late events up to this after close yield revisions")
    idle_timeout: str = Field("30s", description="an idle partition stops holding the watermark back after this")

    # --- runtime ------------------------------------------------------------------
    batch_max_events: int = Field(20_000, ge=1, le=1_000_000, description="events fetched per batch at most")
    provisional_interval: str = Field("2s", description="how often open windows are published (final: false)")
    commit_interval: str = Field(
        "1s", description="a task behind its input commits at most this often (0s: every batch)"
    )
    live_commit_interval: str = Field(
        "100ms", description="a task caught up with its input commits at most this often (0s: every batch); "
        "results wait this long at most, and a longer interval means fewer transactions for the broker"
    )
    fetch_max_wait: str = Field(
        "50ms", description="the broker holds an input fetch that finds nothing this long at most "
        "(1ms-10s; a quiet input topic can delay the others' events by up to this)"
    )

    # --- KPI options -------------------------------------------------------------
    min_sample: int = Field(30, ge=1, description="NPS/CSAT/CES below this n are published as suppressed")
    max_label_values: int = Field(
        100, ge=1, le=100_000, description="distinct values per free-form label (team, product, ...) before 'other'"
    )
    label_allowlist: dict[str, list[str]] = Field(
        default_factory=dict, description="JSON {label: [values]}: only these values keep their own label"
    )
    dedupe_max_ids_per_customer: int = Field(
        50_000, ge=100, description="event ids remembered per customer for dedupe (within allowed lateness)"
    )
    dedupe_inline_ids: int = Field(
        256, ge=1, le=100_000,
        description="a customer's dedupe ids kept in its own changelog record; beyond, they go to chunks "
        "appended per commit (a busy customer's record is not rewritten whole ten times a second)",
    )
    sla_policy_file: Path | None = Field(None, description="TOML file with SLA policies (default: catalogue targets)")

    # --- logging -----------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")

    # --- metrics endpoint security -------------------------------------------------
    metrics_tls_certfile: Path | None = Field(
        None, description="certificate chain (PEM): serve /metrics over HTTPS"
    )
    metrics_tls_keyfile: Path | None = Field(None, description="private key (PEM) of metrics_tls_certfile")
    metrics_basic_auth_user: str | None = Field(
        None, description="user that /metrics requires (HTTP basic auth; /healthz stays open)"
    )
    metrics_basic_auth_password: SecretStr | None = Field(
        None, description="password of that user (or use metrics_basic_auth_password_file)"
    )
    metrics_basic_auth_password_file: Path | None = Field(
        None, description="file holding the /metrics basic-auth password"
    )

    @field_validator("out_of_orderness", "grace", "allowed_lateness", "idle_timeout", "provisional_interval",
                     "commit_interval", "live_commit_interval")
    @classmethod
    def _valid_duration(cls, value: str) -> str:
        parse_duration(value)
        return value

    @field_validator("fetch_max_wait")
    @classmethod
    def _valid_fetch_wait(cls, value: str) -> str:
        # 0 would make an idle consumer poll the broker in a busy loop
        if not 1 <= parse_duration(value) <= 10_000:
            raise ValueError(f"fetch_max_wait must be between 1ms and 10s, got {value!r}")
        return value

    @field_validator("windows")
    @classmethod
    def _valid_windows(cls, value: str) -> str:
        sizes = [part.strip() for part in value.split(",") if part.strip()]
        if not sizes:
            raise ValueError("at least one window size is required")
        for size in sizes:
            if parse_duration(size) <= 0:
                raise ValueError(f"window size must be positive: {size}")
        return ",".join(sizes)

    @model_validator(mode="after")
    def _security_consistent(self) -> Settings:
        if self.security_protocol.startswith("SASL"):
            if not self.sasl_mechanism:
                raise ValueError(f"security_protocol={self.security_protocol} needs sasl_mechanism")
            if not self.sasl_username:
                raise ValueError(f"security_protocol={self.security_protocol} needs sasl_username")
            if self.sasl_password is None and self.sasl_password_file is None:
                raise ValueError("SASL needs sasl_password or sasl_password_file")
        for name in ("sasl_password_file", "ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file: {path}")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together (mTLS)")
        return self

    @model_validator(mode="after")
    def _metrics_security_consistent(self) -> Settings:
        if (self.metrics_tls_certfile is None) != (self.metrics_tls_keyfile is None):
            raise ValueError("metrics_tls_certfile and metrics_tls_keyfile go together")
        for name in ("metrics_tls_certfile", "metrics_tls_keyfile", "metrics_basic_auth_password_file"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: no such file: {path}")
        has_password = self.metrics_basic_auth_password is not None or self.metrics_basic_auth_password_file is not None
        if self.metrics_basic_auth_user is None:
            if has_password:
                raise ValueError("a metrics basic-auth password needs metrics_basic_auth_user")
            return self
        if not self.metrics_basic_auth_user or ":" in self.metrics_basic_auth_user:
            raise ValueError("metrics_basic_auth_user must be non-empty and contain no ':'")
        if not has_password:
            raise ValueError("metrics_basic_auth_user needs metrics_basic_auth_password or metrics_basic_auth_password_file")
        if not self.metrics_basic_auth_password_value():
            raise ValueError("the metrics basic-auth password is empty")
        return self

    # --- derived values (milliseconds) ---------------------------------------------
    @property
    def window_sizes(self) -> list[str]:
        return self.windows.split(",")

    @property
    def out_of_orderness_ms(self) -> int:
        return parse_duration(self.out_of_orderness)

    @property
    def grace_ms(self) -> int:
        return parse_duration(self.grace)

    @property
    def allowed_lateness_ms(self) -> int:
        return parse_duration(self.allowed_lateness)

    @property
    def idle_timeout_ms(self) -> int:
        return parse_duration(self.idle_timeout)

    @property
    def provisional_interval_ms(self) -> int:
        return parse_duration(self.provisional_interval)

    @property
    def commit_interval_ms(self) -> int:
        return parse_duration(self.commit_interval)

    @property
    def live_commit_interval_ms(self) -> int:
        return parse_duration(self.live_commit_interval)

    @property
    def fetch_max_wait_ms(self) -> int:
        return parse_duration(self.fetch_max_wait)

    def metrics_basic_auth_password_value(self) -> str | None:
        """The /metrics basic-auth password, from the setting or its file. Never log it."""
        if self.metrics_basic_auth_password is not None:
            return self.metrics_basic_auth_password.get_secret_value()
        if self.metrics_basic_auth_password_file is not None:
            return Path(self.metrics_basic_auth_password_file).read_text().strip()
        return None

    def sasl_password_value(self) -> str | None:
        """The SASL password, from the setting or its file. Never log the result."""
        if self.sasl_password is not None:
            return self.sasl_password.get_secret_value()
        if self.sasl_password_file is not None:
            return Path(self.sasl_password_file).read_text().strip()
        return None


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment plus explicit overrides.

    Raises :class:`ConfigError` with a single line such as
    ``invalid setting CRM_KPI_GRACE: not a duration: 'soon' (expected e.g. 30s, 5m, 1h, 1d)``.
    """
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        error = exc.errors()[0]
        location = "__".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        where = f"CRM_KPI_{location.upper()}" if location else "settings"
        raise ConfigError(f"invalid setting {where}: {message}") from None


def core_config(settings: Settings):
    """The pure core's configuration from settings (loads the SLA policy file if set).

    Raises ``ValueError`` with a one-line reason when a referenced file is invalid.
    """
    from streams.core.pipeline import CoreConfig
    from streams.core.sla import SlaPolicies, load_policies
    from streams.core.windows import Lateness, parse_window_specs

    policies = load_policies(settings.sla_policy_file) if settings.sla_policy_file else SlaPolicies.default()
    return CoreConfig(
        specs=parse_window_specs(settings.windows),
        lateness=Lateness(settings.out_of_orderness_ms, settings.grace_ms, settings.allowed_lateness_ms),
        min_sample=settings.min_sample,
        policies=policies,
        dedupe_max_ids_per_customer=settings.dedupe_max_ids_per_customer,
        max_label_values=settings.max_label_values,
        label_allowlist={label: tuple(values) for label, values in settings.label_allowlist.items()},
    )


def settings_table() -> str:
    """The Markdown table of every setting, its variable and default (README's worker
    section embeds it; a test keeps the two equal)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if name == "topics":
            for topic, topic_field in Topics.model_fields.items():
                rows.append(
                    f"| `CRM_KPI_TOPICS__{topic.upper()}` | `{topic_field.default}` | topic name |"
                )
            continue
        value = field.get_default(call_default_factory=True)
        default = "—" if value is None else f"`{value}`"
        rows.append(f"| `CRM_KPI_{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows)
