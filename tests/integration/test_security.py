"""Security on a dedicated local broker with a throwaway CA (openssl): a worker processes
a simulated workload over SASL_SSL with SCRAM-SHA-512, over SASL_SSL with PLAIN and over
mTLS (SSL with a client certificate), and its KPI records, SLA events and churn signals
equal ``replay``; a wrong password stops start-up with one clear line; no secret ever
reaches a log. ``/metrics`` over TLS with basic auth answers 401 without the right
credentials and 200 with them, and no customer, ticket, agent (or any other) id from
the input ever appears as a label value.

The broker's listeners: ``SECURE`` (SASL_SSL: SCRAM-SHA-512 users created at format
time with ``--add-scram``, PLAIN users in its JAAS line), ``MTLS`` (SSL, client
certificate required) and an internal PLAINTEXT ``BROKER`` listener that the test
itself uses to produce input and read output.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams import localkafka
from streams.codec import encode_event
from streams.codec.records import encode_signal, encode_sla
from streams.core.pipeline import CoreConfig
from streams.replay import run_replay
from streams.simulate import SimConfig, generate
from tests.e2e.harness import (
    METRIC_LABELS,
    WorkerProcess,
    diff_kpis,
    heartbeat_events,
    latest_kpis,
    produce,
    read_topic,
    replay_kpis,
    topic_env,
)
from tests.e2e.prom import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 3
SCRAM_USER, PLAIN_USER, METRICS_USER = "crm-kpi-scram", "crm-kpi-plain", "prometheus"
ALLOWED_LABELS = METRIC_LABELS  # the KPI dimensions and the pipeline's own: anything else would be a leak


# --------------------------------------------------------------------------- PKI and broker


@dataclass(frozen=True)
class Pki:
    ca: Path
    broker_keystore: Path  # PEM: key + chain
    client_cert: Path
    client_key: Path
    metrics_cert: Path
    metrics_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(args)}:\n{result.stderr}"


def _issue(cwd: Path, name: str, subject: str, extensions: str) -> tuple[Path, Path]:
    """A key and a certificate signed by the test CA."""
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject, cwd=cwd)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=cwd)
    return cwd / f"{name}.crt", cwd / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    cwd = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=crm-kpi throwaway test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cwd)
    server_ext = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n"
    broker_cert, broker_key = _issue(cwd, "broker", "/CN=localhost", server_ext)
    client_cert, client_key = _issue(cwd, "worker", "/CN=crm-kpi-worker",
                                     "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n")
    metrics_cert, metrics_key = _issue(cwd, "metrics", "/CN=localhost", server_ext)
    keystore = cwd / "broker-keystore.pem"  # Kafka's PEM keystore: PKCS#8 key, then the chain
    keystore.write_text(broker_key.read_text() + broker_cert.read_text() + (cwd / "ca.pem").read_text())
    for key in cwd.glob("*.key"):
        key.chmod(0o600)
    return Pki(cwd / "ca.pem", keystore, client_cert, client_key, metrics_cert, metrics_key)


@dataclass(frozen=True)
class Secrets:
    scram: str
    plain: str
    metrics: str
    wrong: str


@pytest.fixture(scope="module")
def passwords() -> Secrets:
    # url-safe: no ',' or ']' that would end the --add-scram argument early
    return Secrets(*(f"{tag}-{secrets.token_urlsafe(18)}" for tag in ("scram", "plain", "metrics", "wrong")))


@pytest.fixture(scope="module")
def secure_kafka(pki: Pki, passwords: Secrets) -> Iterator[localkafka.LocalKafka]:
    properties = {
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        "listener.name.secure.sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        "listener.name.secure.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.secure.plain.sasl.jaas.config":
            f'org.apache.kafka.common.security.plain.PlainLoginModule required user_{PLAIN_USER}="{passwords.plain}";',
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(pki.broker_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(pki.ca),
        "listener.name.mtls.ssl.client.auth": "required",
    }
    try:
        broker = localkafka.start(
            partitions_default=PARTITIONS, listeners={"SECURE": "SASL_SSL", "MTLS": "SSL"},
            extra_properties=properties,
            storage_args=["--add-scram", f"SCRAM-SHA-512=[name={SCRAM_USER},password={passwords.scram}]"],
        )
    except localkafka.LocalKafkaError as exc:
        pytest.fail(f"secured local Kafka broker unavailable: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()


def plaintext(broker: localkafka.LocalKafka) -> str:
    """The internal listener the test uses for its own input and output."""
    return broker.listeners["BROKER"]


# --------------------------------------------------------------------------- workload


@dataclass
class Workload:
    messages: list[tuple[str, bytes, bytes, int | None]]
    ids: set[str]
    kpis: dict
    sla: list
    signals: list


ID_FIELDS = ("ticket_id", "agent_id", "order_id", "lead_id", "subscription_id", "interaction_id")


@pytest.fixture(scope="module")
def workload() -> Workload:
    sim = list(generate(SimConfig(seed=23, customers=400, duration="1d", late=0.0, tail="6h")))
    end_ms = max(m.event_time_ms for m in sim)
    messages = [(m.topic, m.key, m.value, None) for m in sim]
    messages += [("crm.interactions.v1", e.customer_id.encode(), encode_event(e), p)
                 for p, e in heartbeat_events(PARTITIONS, end_ms + 60_000)]
    ids: set[str] = set()
    for _, _, value, _ in messages:
        try:
            document = msgspec.json.decode(value)
        except msgspec.DecodeError:
            continue
        if not isinstance(document, dict):
            continue
        ids.update(str(document[k]) for k in ("customer_id", "event_id") if k in document)
        if document.get("event_type") == "marketing.spend":
            # spend is booked on the campaign as its "customer": the campaign is a bounded
            # KPI dimension (crm_cac_minor{campaign=...}), not a person's id
            ids.discard(str(document.get("customer_id")))
        data = document.get("data")
        if isinstance(data, dict):
            ids.update(str(data[k]) for k in ID_FIELDS if data.get(k) is not None)
    replay = run_replay([("s", i, v) for i, (_, _, v, _) in enumerate(messages)], CoreConfig())
    assert any(i.startswith("T-") or "ticket" in i.lower() for i in ids) or len(ids) > 1000
    return Workload(messages, ids, replay_kpis(replay.records), sorted(encode_sla(r) for r in replay.sla),
                    sorted(encode_signal(s) for s in replay.signals))


# --------------------------------------------------------------------------- workers and /metrics



def fetch(port: int, path: str = "/metrics", *, tls: ssl.SSLContext | None = None,
          auth: tuple[str, str] | None = None) -> tuple[int, str, dict]:
    scheme = "https" if tls is not None else "http"
    request = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5, context=tls) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), dict(exc.headers)


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


@dataclass
class Run:
    worker: WorkerProcess
    env: dict[str, str]
    tls: ssl.SSLContext | None
    auth: tuple[str, str] | None

    def metrics(self) -> str:
        status, text, _ = fetch(self.worker.metrics_port, tls=self.tls, auth=self.auth)
        assert status == 200, (status, text[:200])
        return text

    def log(self) -> str:
        return self.worker.log_path.read_text(errors="replace")


def start_worker(broker: localkafka.LocalKafka, workload: Workload, prefix: str, tmp_path: Path,
                 security: dict[str, str], tls: ssl.SSLContext | None = None,
                 auth: tuple[str, str] | None = None, listener: str = "SECURE") -> Run:
    env = {**topic_env(prefix), **security}
    rename = {f"crm.{n}.v1": env[f"CRM_KPI_TOPICS__{n.upper()}"] for n in ("tickets", "interactions", "purchases")}
    localkafka.create_topics(plaintext(broker), list(rename.values()), partitions=PARTITIONS)
    asyncio.run(produce(plaintext(broker), ((rename[t], k, v, p) for t, k, v, p in workload.messages)))
    worker = WorkerProcess(broker.listeners[listener], prefix, free_port(), tmp_path / f"{prefix}.log", **env)
    return Run(worker, env, tls, auth)


def run_until_done(run: Run, broker: localkafka.LocalKafka, workload: Workload, timeout_s: float = 180) -> None:
    """Until every message was taken, nothing lags and the KPI topic stopped growing."""
    deadline = time.monotonic() + timeout_s
    last, stable, state = -1, 0, "no scrape yet"
    while time.monotonic() < deadline:
        time.sleep(2)
        assert run.worker.process.poll() is None, f"worker exited {run.worker.process.returncode}:\n{run.worker.tail()}"
        try:
            found = samples(run.metrics())
        except (OSError, AssertionError) as exc:
            state = f"/metrics: {exc}"
            continue
        taken = sum(s.value for s in found if s.name in ("crm_events_processed_total", "crm_events_rejected_total"))
        lag = sum(s.value for s in found if s.name == "crm_consumer_lag")
        records = len(asyncio.run(read_topic(plaintext(broker), run.env["CRM_KPI_TOPICS__KPI"])))
        state = f"taken {taken:.0f}/{len(workload.messages)}, lag {lag:.0f}, {records} KPI records"
        if taken == len(workload.messages) and lag == 0 and records == last and records > 0:
            stable += 1
            if stable >= 3:
                return
        else:
            stable = 0
        last = records
    raise AssertionError(f"not done after {timeout_s:.0f}s: {state}\n{run.worker.tail()}")


def assert_equals_replay(run: Run, broker: localkafka.LocalKafka, workload: Workload) -> int:
    bootstrap = plaintext(broker)
    stream = latest_kpis(asyncio.run(read_topic(bootstrap, run.env["CRM_KPI_TOPICS__KPI"])))
    problems = diff_kpis(stream, workload.kpis)
    assert not problems, "\n".join(problems)
    assert sorted(m.value for m in asyncio.run(read_topic(bootstrap, run.env["CRM_KPI_TOPICS__SLA"]))) == workload.sla
    signals = sorted(m.value for m in asyncio.run(read_topic(bootstrap, run.env["CRM_KPI_TOPICS__SIGNALS"])))
    assert signals == workload.signals
    return len(stream)


def assert_no_secret(text: str, passwords: Secrets) -> None:
    for secret in (passwords.scram, passwords.plain, passwords.metrics, passwords.wrong):
        assert secret not in text, "a password appears in the worker log"


def tls_client(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


# --------------------------------------------------------------------------- SASL_SSL + SCRAM, /metrics


@pytest.fixture(scope="module")
def scram_run(secure_kafka, pki, passwords, workload, tmp_path_factory) -> Iterator[Run]:
    """A worker over SASL_SSL + SCRAM-SHA-512 (password from a file), serving /metrics over
    TLS with basic auth (password from a file too); kept running for the tests below."""
    tmp = tmp_path_factory.mktemp("scram")
    sasl_file, metrics_file = tmp / "sasl-password", tmp / "metrics-password"
    sasl_file.write_text(passwords.scram + "\n")
    metrics_file.write_text(passwords.metrics + "\n")
    for path in (sasl_file, metrics_file):
        path.chmod(0o600)
    security = {
        "CRM_KPI_SECURITY_PROTOCOL": "SASL_SSL", "CRM_KPI_SASL_MECHANISM": "SCRAM-SHA-512",
        "CRM_KPI_SASL_USERNAME": SCRAM_USER, "CRM_KPI_SASL_PASSWORD_FILE": str(sasl_file),
        "CRM_KPI_SSL_CAFILE": str(pki.ca),
        "CRM_KPI_METRICS_TLS_CERTFILE": str(pki.metrics_cert), "CRM_KPI_METRICS_TLS_KEYFILE": str(pki.metrics_key),
        "CRM_KPI_METRICS_BASIC_AUTH_USER": METRICS_USER, "CRM_KPI_METRICS_BASIC_AUTH_PASSWORD_FILE": str(metrics_file),
    }
    run = start_worker(secure_kafka, workload, "sec-scram", tmp, security, tls=tls_client(pki),
                       auth=(METRICS_USER, passwords.metrics))
    try:
        run_until_done(run, secure_kafka, workload)
        yield run
    finally:
        run.worker.stop()


def test_scram_sha512_over_tls_equals_replay_and_never_logs_a_secret(scram_run, secure_kafka, workload, passwords):
    records = assert_equals_replay(scram_run, secure_kafka, workload)
    assert records > 100
    assert_no_secret(scram_run.log(), passwords)


def test_metrics_over_tls_need_basic_auth(scram_run, pki, passwords):
    port = scram_run.worker.metrics_port
    tls = tls_client(pki)
    # HTTPS only: a plain-HTTP request gets no answer
    with pytest.raises((OSError, urllib.error.URLError)):
        fetch(port)
    # the certificate is checked against the CA and the address
    status, _, _ = fetch(port, "/healthz", tls=tls)
    assert status == 200  # liveness stays open
    status, body, headers = fetch(port, tls=tls)
    assert status == 401 and headers.get("WWW-Authenticate", "").startswith("Basic "), (status, body)
    assert "crm_" not in body
    assert fetch(port, tls=tls, auth=(METRICS_USER, passwords.wrong))[0] == 401
    assert fetch(port, tls=tls, auth=("someone-else", passwords.metrics))[0] == 401
    status, body, _ = fetch(port, tls=tls, auth=(METRICS_USER, passwords.metrics))
    assert status == 200 and "crm_events_processed_total" in body
    assert_no_secret(scram_run.log(), passwords)


def test_no_input_id_is_ever_a_metric_label(scram_run, workload):
    """Every label value on /metrics, against every id in the input: customer, event,
    ticket, agent, order, lead, subscription and interaction ids."""
    found = samples(scram_run.metrics())
    assert any(s.name.startswith("crm_first_response_time_seconds") for s in found)
    names = {name for s in found for name in s.labels}
    assert names <= ALLOWED_LABELS, names - ALLOWED_LABELS
    values = {value for s in found for value in s.labels.values()}
    leaked = values & workload.ids
    assert not leaked, f"ids used as label values: {sorted(leaked)[:10]}"
    id_like = re.compile(r"^(cus|cust|tkt|ticket|agent|ord|order|sub|lead|evt|int|T|O|L|S|A)[-_]?\d{3,}", re.I)
    assert not [v for v in values if id_like.match(v)], sorted(v for v in values if id_like.match(v))[:10]
    print(f"labels: {len(found)} samples, {len(values)} distinct label values, {len(workload.ids)} input ids, "
          f"0 shared")


# --------------------------------------------------------------------------- SASL_SSL + PLAIN, mTLS


@pytest.mark.parametrize("mode", ["plain", "mtls"])
def test_worker_over_plain_and_mtls_equals_replay(mode, secure_kafka, pki, passwords, workload, tmp_path):
    if mode == "plain":
        security = {"CRM_KPI_SECURITY_PROTOCOL": "SASL_SSL", "CRM_KPI_SASL_MECHANISM": "PLAIN",
                    "CRM_KPI_SASL_USERNAME": PLAIN_USER, "CRM_KPI_SASL_PASSWORD": passwords.plain,
                    "CRM_KPI_SSL_CAFILE": str(pki.ca)}
        listener = "SECURE"
    else:
        security = {"CRM_KPI_SECURITY_PROTOCOL": "SSL", "CRM_KPI_SSL_CAFILE": str(pki.ca),
                    "CRM_KPI_SSL_CERTFILE": str(pki.client_cert), "CRM_KPI_SSL_KEYFILE": str(pki.client_key)}
        listener = "MTLS"
    run = start_worker(secure_kafka, workload, f"sec-{mode}", tmp_path, security, listener=listener)
    try:
        run_until_done(run, secure_kafka, workload)
        assert assert_equals_replay(run, secure_kafka, workload) > 100
    finally:
        run.worker.stop()
    assert_no_secret(run.log(), passwords)


# --------------------------------------------------------------------------- wrong credentials


@dataclass
class FailedStart:
    log: str
    exit_code: int | None  # None: still running 30 s after the error was logged
    error_lines: list[str]


@pytest.fixture(scope="module", params=["scram-file", "plain-env"])
def wrong_password(request, secure_kafka, pki, passwords, workload, tmp_path_factory) -> FailedStart:
    tmp = tmp_path_factory.mktemp(f"wrong-{request.param}")
    if request.param == "scram-file":
        secret = tmp / "sasl-password"
        secret.write_text(passwords.wrong)
        security = {"CRM_KPI_SECURITY_PROTOCOL": "SASL_SSL", "CRM_KPI_SASL_MECHANISM": "SCRAM-SHA-512",
                    "CRM_KPI_SASL_USERNAME": SCRAM_USER, "CRM_KPI_SASL_PASSWORD_FILE": str(secret),
                    "CRM_KPI_SSL_CAFILE": str(pki.ca)}
    else:
        security = {"CRM_KPI_SECURITY_PROTOCOL": "SASL_SSL", "CRM_KPI_SASL_MECHANISM": "PLAIN",
                    "CRM_KPI_SASL_USERNAME": PLAIN_USER, "CRM_KPI_SASL_PASSWORD": passwords.wrong,
                    "CRM_KPI_SSL_CAFILE": str(pki.ca)}
    env = {**topic_env(f"wrong-{request.param}"), **security}
    worker = WorkerProcess(secure_kafka.listeners["SECURE"], f"wrong-{request.param}", free_port(),
                           tmp / "worker.log", **env)
    # an error is a log line at ERROR or above, or the command's own error line on stderr
    errors = re.compile(r"^(?:\S+ \S+ \[\d+\] \[(ERROR|CRITICAL)\] (?!Unclosed)|crm-kpi: )", re.M)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and worker.process.poll() is None \
                and not errors.search(worker.log_path.read_text(errors="replace")):
            time.sleep(0.5)
        try:
            code = worker.process.wait(30)
        except subprocess.TimeoutExpired:
            code = None
    finally:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()
        worker.log.close()
    log = worker.log_path.read_text(errors="replace")
    return FailedStart(log, code, [m.group(0) + log[m.end():].split("\n", 1)[0] for m in errors.finditer(log)])


def test_a_wrong_password_stops_start_up_with_a_clear_error_and_is_never_logged(wrong_password, passwords):
    assert wrong_password.error_lines, f"no error logged:\n{wrong_password.log[-3000:]}"
    first = wrong_password.error_lines[0]
    assert re.search(r"SaslAuthenticationFailed: Authentication failed", first), first
    assert wrong_password.exit_code not in (None, 0), "still running 30 s after the start-up error"
    assert_no_secret(wrong_password.log, passwords)


def test_a_wrong_password_is_reported_in_one_line(wrong_password):
    """The worker checks its credentials before faust starts its clients: one line on
    stderr naming the user, the mechanism and the setting to check, and no stack trace."""
    assert len(wrong_password.error_lines) == 1, wrong_password.error_lines
    line = wrong_password.error_lines[0]
    assert line.startswith("crm-kpi: Kafka authentication failed for user "), line
    assert re.search(r"check CRM_KPI_SASL_PASSWORD(_FILE)? ", line), line
    assert "Traceback" not in wrong_password.log


# --------------------------------------------------------------------------- settings


def test_metrics_security_settings_are_checked_at_start_up(pki, tmp_path):
    from streams.settings import ConfigError, load_settings

    empty = tmp_path / "empty"
    empty.write_text("\n")
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    bad = [
        ({"metrics_tls_certfile": str(pki.metrics_cert)}, "go together"),
        ({"metrics_tls_certfile": str(tmp_path / "nope.crt"), "metrics_tls_keyfile": str(pki.metrics_key)},
         "no such file"),
        ({"metrics_basic_auth_user": "prometheus"}, "needs metrics_basic_auth_password"),
        ({"metrics_basic_auth_password": "x"}, "needs metrics_basic_auth_user"),
        ({"metrics_basic_auth_user": "a:b", "metrics_basic_auth_password": "x"}, "no ':'"),
        ({"metrics_basic_auth_user": "prometheus", "metrics_basic_auth_password_file": str(empty)}, "empty"),
    ]
    for overrides, message in bad:
        with pytest.raises(ConfigError, match=message):
            load_settings(**overrides)
    good = load_settings(metrics_basic_auth_user="prometheus", metrics_basic_auth_password_file=str(secret),
                         metrics_tls_certfile=str(pki.metrics_cert), metrics_tls_keyfile=str(pki.metrics_key))
    assert good.metrics_basic_auth_password_value() == "s3cret"
    assert "s3cret" not in repr(good) and "s3cret" not in str(good.model_dump())
