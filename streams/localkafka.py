"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) on
127.0.0.1, for the tests and the demo. No Docker: the broker jars are resolved once with
Maven from ``deploy/kafka/pom.xml`` (the pinned version lives there) into
``.cache/kafka/<version>/libs`` and run with the local ``java``.

Library use (tests)::

    with localkafka.start() as kafka:
        localkafka.create_topics(kafka.bootstrap, ["t"], partitions=6)

Command line (demo)::

    python -m streams.localkafka fetch | start [--partitions N] [--create-topics] | status | stop

Only the standard library is imported at module level; aiokafka is imported inside the
functions that talk to the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
POM_PATH = REPO_ROOT / "deploy" / "kafka" / "pom.xml"
# Used only if the POM cannot be read; the POM's <kafka.version> is the source of truth.
DEFAULT_KAFKA_VERSION = "4.1.1"
HOST = "127.0.0.1"
READY_TIMEOUT_S = 90.0
_STAMP = ".complete"

# Kafka error codes we treat specially when creating topics.
_TOPIC_ALREADY_EXISTS = 36
_RETRIABLE_CREATE_ERRORS = {
    5,  # LEADER_NOT_AVAILABLE
    7,  # REQUEST_TIMED_OUT
    38,  # INVALID_REPLICATION_FACTOR: broker not registered/unfenced yet
    41,  # NOT_CONTROLLER
}

_LOG4J2_PROPERTIES = """\
# Written by streams/localkafka.py: everything to stdout, which goes to broker.log.
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.cleaner.name = kafka.log.LogCleaner
logger.cleaner.level = WARN
"""


class LocalKafkaError(RuntimeError):
    """The local broker cannot be fetched, started or reached; the message says why."""


# --------------------------------------------------------------------------- paths


def kafka_version() -> str:
    """The pinned Kafka version: ``<kafka.version>`` of deploy/kafka/pom.xml."""
    try:
        root = ET.parse(POM_PATH).getroot()
    except (OSError, ET.ParseError):
        return DEFAULT_KAFKA_VERSION
    namespace = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = root.find("m:properties/m:kafka.version", namespace)
    return node.text.strip() if node is not None and node.text else DEFAULT_KAFKA_VERSION


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``, else ``$CRM_KPI_CACHE_DIR``, else ``<repo>/.cache``."""
    if cache_dir is not None:
        return Path(cache_dir).resolve()
    env = os.environ.get("CRM_KPI_CACHE_DIR")
    return Path(env).resolve() if env else REPO_ROOT / ".cache"


def libs_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    return cache_root(cache_dir) / "kafka" / kafka_version() / "libs"


def state_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the CLI's detached broker is recorded."""
    return cache_root(cache_dir) / "kafka" / "run" / "state.json"


def _say(message: str) -> None:
    # Progress goes to stderr so stdout stays machine-readable (the CLI prints the
    # bootstrap address there).
    print(f"[localkafka] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- tools


def _java() -> str:
    """Path of ``java`` ($JAVA_HOME first, then PATH), or a one-line LocalKafkaError."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home, "bin", "java"), os.X_OK):
        return str(Path(java_home, "bin", "java"))
    found = shutil.which("java")
    if not found:
        raise LocalKafkaError(
            "java not found on PATH: install OpenJDK 17 (apt-get install openjdk-17-jre-headless)"
        )
    return found


_java_versions: dict[str, str] = {}


def _java_version(java: str) -> str:
    """``java -version`` output; raises LocalKafkaError below Java 17 (Kafka 4 needs it)."""
    if java in _java_versions:
        return _java_versions[java]
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.SubprocessError) as exc:
        raise LocalKafkaError(f"cannot run {java}: {exc}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if match:
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8.0_x"
            major = int(match.group(2))
        if major < 17:
            raise LocalKafkaError(
                f"{java} is Java {major}; Kafka {kafka_version()} needs Java 17+ "
                "(apt-get install openjdk-17-jre-headless)"
            )
    _java_versions[java] = out
    return out


def _mvn() -> str:
    found = shutil.which("mvn")
    if not found:
        raise LocalKafkaError(
            "mvn not found on PATH: it resolves the Kafka jars once (apt-get install maven)"
        )
    return found


# --------------------------------------------------------------------------- fetch


def _pom_digest() -> str:
    return hashlib.sha256(POM_PATH.read_bytes()).hexdigest()[:16]


def fetch(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the broker jars into ``<cache>/kafka/<version>/libs`` and return that path.

    Skips the work when the completion stamp matches the current POM. Prints one progress
    line (stderr). Raises LocalKafkaError if java or (on a cold cache) mvn is missing, or
    if Maven fails.
    """
    _java()
    version = kafka_version()
    libs = libs_dir(cache_dir)
    stamp = libs.parent / _STAMP
    digest = _pom_digest()
    if stamp.is_file() and stamp.read_text().strip() == digest and any(libs.glob("*.jar")):
        _say(f"Apache Kafka {version}: {len(list(libs.glob('*.jar')))} jars cached in {libs}")
        return libs

    mvn = _mvn()
    libs.parent.mkdir(parents=True, exist_ok=True)
    # A lock so two processes (e.g. parallel test runs) don't resolve into the same place.
    with _file_lock(libs.parent / ".lock"):
        if stamp.is_file() and stamp.read_text().strip() == digest and any(libs.glob("*.jar")):
            _say(f"Apache Kafka {version}: jars cached in {libs}")
            return libs
        _say(
            f"Apache Kafka {version}: resolving broker jars with Maven into {libs} (first run only)"
        )
        staging = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
        command = [
            mvn, "-q", "-B",
            "-f", str(POM_PATH),
            f"-Dmaven.repo.local={cache_root(cache_dir) / 'm2'}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ]  # fmt: skip
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            raise LocalKafkaError("mvn timed out resolving the Kafka jars (30 min)") from None
        if result.returncode != 0 or not any(staging.glob("kafka_*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            tail = _tail_text(result.stdout + result.stderr, 15)
            raise LocalKafkaError(
                f"mvn could not resolve Kafka {version} (exit {result.returncode}); "
                f"command: {' '.join(command)}\n{tail}"
            )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        stamp.write_text(digest + "\n")
    return libs


@contextlib.contextmanager
def _file_lock(path: Path):
    import fcntl

    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- broker


def free_port(host: str = HOST) -> int:
    """A TCP port free on ``host`` right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def new_cluster_id() -> str:
    """A random Kafka cluster id (URL-safe base64 of a UUID, like ``kafka-storage random-uuid``).

    Ids starting with ``-`` are drawn again: the storage tool's argument parser would
    read one as an option (Kafka's own ``random-uuid`` avoids them the same way)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _port_open(address: str, timeout: float = 0.5) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return True
    except OSError:
        return False


def _tail_text(text: str, lines: int) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _reason(text: str) -> str | None:
    """The last exception line of a JVM's output (not its stack frames), if any."""
    found = None
    for line in text.splitlines():
        if line[:1].isspace():
            continue
        if re.search(r"(Exception|Error)\b.*:", line) and " INFO " not in line:
            found = line.strip()
    return found


def _tail_file(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64_000))
            return _tail_text(handle.read().decode("utf-8", "replace"), lines)
    except OSError:
        return "(no broker log)"


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: the broker gets SIGTERM if the Python process that started it dies, so a
    # crashed test session leaves no orphan JVM behind.
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


@dataclass
class LocalKafka:
    """Handle on a running local broker. ``stop()`` ends only this broker's process."""

    bootstrap: str
    listeners: dict[str, str]  # name -> host:port (client listeners, plus BROKER if added)
    protocols: dict[str, str]  # name -> security protocol
    workdir: Path
    config_path: Path
    log_path: Path
    data_dir: Path
    cluster_id: str
    command: list[str]
    startup_seconds: float = 0.0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    # Class-data-sharing archive: the broker dumps its loaded classes to cds_pending at
    # its first clean exit; stop() moves it to cds_archive, which later starts map
    # (saves ~1.5 s of class loading per start).
    cds_pending: Path | None = field(default=None, repr=False)
    cds_archive: Path | None = field(default=None, repr=False)
    _remove_workdir: bool = field(default=True, repr=False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20, *, remove: bool | None = None) -> int | None:
        """SIGTERM (controlled shutdown), then SIGKILL after ``timeout`` seconds.

        Removes the temporary workdir unless ``remove=False`` (or the workdir was given
        by the caller). Returns the broker's exit code.
        """
        code = None
        if self.process is not None:
            code = _terminate(self.process, timeout)
            if code in (0, 128 + signal.SIGTERM):  # a clean exit wrote a complete archive
                _adopt_cds(self.cds_pending, self.cds_archive)
        if remove if remove is not None else self._remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        return code

    def kill(self) -> None:
        """SIGKILL the broker (a crash); its data stays for :meth:`restart`."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self, *, hard: bool = False, timeout: float = READY_TIMEOUT_S) -> None:
        """Stop (or kill when ``hard``) and start again on the same ports and data."""
        if hard:
            self.kill()
        elif self.process is not None:
            _terminate(self.process, 20)
        began = time.monotonic()
        self.process = _spawn(self.command, self.workdir, self.log_path, detach=False)
        _await_ready(self, timeout)
        self.startup_seconds = time.monotonic() - began

    def tail(self, lines: int = 40) -> str:
        """The last lines of the broker log."""
        return _tail_file(self.log_path, lines)

    def __enter__(self) -> LocalKafka:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _cds_archive(java: str, libs: Path) -> Path:
    # An archive only fits the exact JVM build and classpath it was dumped with.
    key = f"{os.path.realpath(java)}\n{_java_version(java)}\n{_pom_digest()}"
    return libs.parent / f"broker-{hashlib.sha256(key.encode()).hexdigest()[:12]}.jsa"


def _adopt_cds(pending: Path | None, archive: Path | None) -> None:
    if pending is None or archive is None or archive.exists():
        return
    with contextlib.suppress(OSError):
        if pending.is_file() and pending.stat().st_size > 0:
            staging = archive.with_name(f".{archive.name}.{os.getpid()}")
            shutil.move(pending, staging)  # may cross file systems (/tmp -> .cache)
            os.replace(staging, archive)


def _terminate(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.wait()
    return process.returncode


def _spawn(
    command: list[str], workdir: Path, log_path: Path, *, detach: bool
) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: ^C in a terminal hits us, not it
            preexec_fn=None if detach or not sys.platform.startswith("linux") else _die_with_parent,
        )


def _default_properties(
    listeners: Mapping[str, str], ports: Mapping[str, int], data_dir: Path, partitions: int
) -> dict[str, str]:
    controller = f"{HOST}:{ports['CONTROLLER']}"
    inter_broker = next(name for name, proto in listeners.items() if proto == "PLAINTEXT")
    protocol_map = {"CONTROLLER": "PLAINTEXT", **listeners}
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": controller,
        "controller.listener.names": "CONTROLLER",
        "listeners": ",".join(
            [f"{name}://{HOST}:{ports[name]}" for name in listeners]
            + [f"CONTROLLER://{controller}"]
        ),
        "advertised.listeners": ",".join(f"{name}://{HOST}:{ports[name]}" for name in listeners),
        "listener.security.protocol.map": ",".join(f"{k}:{v}" for k, v in protocol_map.items()),
        "inter.broker.listener.name": inter_broker,
        "log.dirs": str(data_dir),
        "num.partitions": str(partitions),
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        # One node needs no spread: 50 partitions each (the default) make the first
        # consumer group / transaction wait while the broker creates them.
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.num.partitions": "8",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "delete.topic.enable": "true",
    }


def start(
    *,
    partitions_default: int = 6,
    extra_properties: Mapping[str, Any] | None = None,
    listeners: Mapping[str, str] | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    heap: str = "512m",
    port: int | None = None,
    workdir: str | os.PathLike[str] | None = None,
    storage_args: Sequence[str] = (),
    jvm_options: Sequence[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    ready_timeout: float = READY_TIMEOUT_S,
    ready_check: Callable[[LocalKafka], None] | None = None,
    warm_up: bool = True,
    detach: bool = False,
) -> LocalKafka:
    """Format and start a single-node KRaft broker on 127.0.0.1; return once it serves metadata.

    - ``listeners``: client listeners, name -> security protocol, e.g.
      ``{"PLAINTEXT": "PLAINTEXT", "SECURE": "SASL_SSL"}``. Each gets a free port; the
      first one is ``.bootstrap`` and all are in ``.listeners`` (name -> host:port). If
      none is PLAINTEXT, an internal ``BROKER`` PLAINTEXT listener is added for
      inter-broker traffic and the readiness check.
    - ``extra_properties``: server.properties entries that extend or override the
      defaults (``None`` as a value deletes a default), e.g. ``sasl.enabled.mechanisms``,
      ``listener.name.secure.ssl.keystore.location``, ``super.users``.
    - ``storage_args``: extra ``kafka-storage format`` arguments, e.g.
      ``["--add-scram", "SCRAM-SHA-256=[name=admin,password=secret]"]``.
    - ``log_dir``: Kafka's data directory (log.dirs); default ``<workdir>/data``. A
      directory that already holds ``meta.properties`` is reused without formatting.
    - ``port``: fixed port for the first client listener (default: a free one).
    - ``ready_check``: replaces the default readiness probe (a PLAINTEXT metadata request),
      for setups where the caller must supply credentials.
    - ``warm_up``: ask for a group and a transaction coordinator once, so the broker
      creates ``__consumer_offsets`` and ``__transaction_state`` now (~0.3 s) rather
      than making the first consumer group back off for ~2 s.
    - ``detach``: don't tie the broker's life to this process (the CLI's ``start``).

    Raises LocalKafkaError (with the tail of the broker log) if it is not ready in
    ``ready_timeout`` seconds.
    """
    began = time.monotonic()
    java = _java()
    _java_version(java)
    libs = fetch(cache_dir)

    client_listeners = dict(listeners or {"PLAINTEXT": "PLAINTEXT"})
    if not client_listeners:
        raise LocalKafkaError("listeners must name at least one listener")
    for name, protocol in client_listeners.items():
        if name.upper() == "CONTROLLER" or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise LocalKafkaError(f"bad listener name {name!r}: use upper case, not CONTROLLER")
        if protocol not in {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"}:
            raise LocalKafkaError(f"listener {name}: unknown security protocol {protocol!r}")
    all_listeners = dict(client_listeners)
    if "PLAINTEXT" not in all_listeners.values():
        all_listeners["BROKER"] = "PLAINTEXT"

    own_workdir = workdir is None
    work = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="crm-kpi-kafka-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir = Path(log_dir).resolve() if log_dir else work / "data"
    config_path = work / "server.properties"
    log_path = work / "broker.log"
    first = next(iter(client_listeners))

    last_error: LocalKafkaError | None = None
    for _attempt in range(3):  # a picked port can be taken before the JVM binds it
        ports = {name: free_port() for name in [*all_listeners, "CONTROLLER"]}
        if port:
            ports[first] = port
        properties = _default_properties(all_listeners, ports, data_dir, partitions_default)
        for key, value in (extra_properties or {}).items():
            if value is None:
                properties.pop(key, None)
            else:
                properties[key] = _property_value(value)
        config_path.write_text(
            "# Written by streams/localkafka.py\n"
            + "".join(f"{key}={_escape(value)}\n" for key, value in properties.items())
        )
        log4j = work / "log4j2.properties"
        log4j.write_text(_LOG4J2_PROPERTIES)
        jvm_args = [
            f"-Xmx{heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",  # 2-core boxes: no parallel GC threads fighting the tests
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log4j}",
            *os.environ.get("CRM_KPI_KAFKA_JVM_OPTS", "").split(),
            *jvm_options,
            "-cp",
            f"{libs}/*",
        ]
        cds: list[str] = []
        cds_archive = cds_pending = None
        if os.environ.get("CRM_KPI_KAFKA_CDS", "1") != "0":
            cds_archive = _cds_archive(java, libs)
            if cds_archive.is_file():
                cds = [f"-XX:SharedArchiveFile={cds_archive}"]
            else:
                cds_pending = work / "broker.jsa"
                cds = [f"-XX:ArchiveClassesAtExit={cds_pending}"]

        formatted = not (data_dir / "meta.properties").is_file()
        # The format tool runs for a second: C1 only starts it faster.
        format_jvm = [java, "-XX:TieredStopAtLevel=1", *jvm_args]
        cluster_id = _format_storage(format_jvm, config_path, data_dir, log_path, storage_args)
        handle = LocalKafka(
            bootstrap=f"{HOST}:{ports[first]}",
            listeners={name: f"{HOST}:{ports[name]}" for name in all_listeners},
            protocols=dict(all_listeners),
            workdir=work,
            config_path=config_path,
            log_path=log_path,
            data_dir=data_dir,
            cluster_id=cluster_id,
            command=[java, *cds, *jvm_args, "kafka.Kafka", str(config_path)],
            cds_pending=cds_pending,
            cds_archive=cds_archive,
            _remove_workdir=own_workdir,
        )
        handle.process = _spawn(handle.command, work, log_path, detach=detach)
        try:
            if ready_check is not None:
                ready_check(handle)
            else:
                _await_ready(handle, ready_timeout)
                if warm_up:
                    _run(_warm_up(_readiness_address(handle), ready_timeout))
        except LocalKafkaError as exc:
            bind_failed = "Address already in use" in handle.tail(200)
            died = handle.process.poll() is not None
            handle.stop(remove=False)
            if died and cds_archive is not None and cds_pending is None:
                # A start that died while mapping the archive: drop it, try without.
                cds_archive.unlink(missing_ok=True)
                bind_failed = True
            if bind_failed and not port:
                last_error = exc
                if formatted:  # the quorum's voter record names the old controller port
                    shutil.rmtree(data_dir, ignore_errors=True)
                continue
            raise
        except BaseException:
            handle.stop(remove=False)
            raise
        handle.startup_seconds = time.monotonic() - began
        if not detach:  # a forgotten stop() must not leave a JVM and a temp dir behind
            atexit.register(handle.stop)
        return handle
    assert last_error is not None
    raise last_error


def _property_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _escape(value: str) -> str:
    # java.util.Properties: backslashes escape, so Windows-ish paths and JAAS configs
    # with backslashes must be doubled; newlines are not allowed in a value.
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _format_storage(
    jvm: list[str], config_path: Path, data_dir: Path, log_path: Path, storage_args: Sequence[str]
) -> str:
    meta = data_dir / "meta.properties"
    if meta.is_file():  # an existing data dir (e.g. a restart test): keep its cluster
        match = re.search(r"^cluster\.id=(\S+)", meta.read_text(), re.M)
        if match:
            return match.group(1)
    cluster_id = new_cluster_id()
    command = [
        *jvm, "kafka.tools.StorageTool", "format", "--standalone",
        "-t", cluster_id, "-c", str(config_path), *storage_args,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    with open(log_path, "a") as log:
        log.write(result.stdout + result.stderr)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        raise LocalKafkaError(
            f"kafka-storage format failed (exit {result.returncode}): "
            f"{_reason(output) or _tail_text(output, 5)} (log: {log_path})"
        )
    return cluster_id


def _readiness_address(handle: LocalKafka) -> str:
    # The probe needs no credentials: use a PLAINTEXT listener (there always is one).
    for name, protocol in handle.protocols.items():
        if protocol == "PLAINTEXT":
            return handle.listeners[name]
    return handle.bootstrap


def _await_ready(handle: LocalKafka, timeout: float) -> None:
    address = _readiness_address(handle)
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if handle.process is not None and handle.process.poll() is not None:
            reason = _reason(handle.tail(200))
            raise LocalKafkaError(
                f"Kafka broker exited with code {handle.process.returncode} during start-up"
                + (f": {reason}" if reason else "")
                + f"; log {handle.log_path}:\n{handle.tail()}"
            )
        if _port_open(address):
            try:
                _run(_list_topics(address, min(5.0, max(1.0, deadline - time.monotonic()))))
                return
            except Exception as exc:  # noqa: BLE001 - any failure means "not yet"
                last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.2)
    raise LocalKafkaError(
        f"Kafka broker at {address} not ready after {timeout:.0f}s ({last}); "
        f"log {handle.log_path}:\n{handle.tail()}"
    )


async def _list_topics(bootstrap: str, timeout: float, **client_config: Any) -> list[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **client_config
    )
    try:
        await asyncio.wait_for(admin.start(), timeout)
        return list(await asyncio.wait_for(admin.list_topics(), timeout))
    finally:
        await admin.close()


async def _warm_up(bootstrap: str, timeout: float) -> None:
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + timeout
        for coordinator_type, key in ((0, "localkafka-warm-up"), (1, "localkafka-warm-up")):
            while True:
                try:
                    await admin.find_coordinator(key, coordinator_type)
                    break
                except KafkaError as exc:  # "not available" until the topic has leaders
                    if time.monotonic() > deadline:
                        raise LocalKafkaError(
                            f"no coordinator after {timeout:.0f}s: {exc}"
                        ) from None
                    await asyncio.sleep(0.05)
    finally:
        await admin.close()


def wait_ready(bootstrap: str, timeout: float = READY_TIMEOUT_S, **client_config: Any) -> list[str]:
    """Block until the broker at ``bootstrap`` answers a metadata request; return its topics.

    ``client_config`` goes to aiokafka's admin client (security settings, for example).
    Raises LocalKafkaError after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            remaining = max(1.0, min(5.0, deadline - time.monotonic()))
            return _run(_list_topics(bootstrap, remaining, **client_config))
        except Exception as exc:  # noqa: BLE001 - keep trying until the deadline
            last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
    raise LocalKafkaError(f"Kafka at {bootstrap} not ready after {timeout:.0f}s ({last})")


def _run(coro: Any) -> Any:
    """asyncio.run, also from inside a running loop (then in a helper thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name="localkafka-admin")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


# --------------------------------------------------------------------------- topics


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[Any, int]:
    """The log-end offset of every partition of ``topics`` (``TopicPartition`` -> offset);
    used by tests and benchmarks to tell whether consumers reached the end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = []
        for topic in topics:
            partitions = consumer.partitions_for_topic(topic)
            if partitions is None:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                partitions = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in partitions]
        return await consumer.end_offsets(tps) if tps else {}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str) -> dict[Any, int]:
    """The committed offsets of consumer group ``group`` (``TopicPartition`` -> offset)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


async def create_topics_async(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 6,
    compacted: Iterable[str] = (),
    config: Mapping[str, str] | None = None,
    *,
    timeout: float = 30.0,
    **client_config: Any,
) -> list[str]:
    """Create topics (replication factor 1); existing ones are left as they are.

    Topics named in ``compacted`` get ``cleanup.policy=compact``; ``config`` applies to
    all. Returns the names that were newly created. Waits until every partition of every
    named topic has a leader, so producers don't start with NotLeaderForPartition.
    """
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    names = list(dict.fromkeys(names))
    compacted = set(compacted)
    unknown = compacted - set(names)
    if unknown:
        raise ValueError(f"compacted topics not in names: {sorted(unknown)}")
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000), **client_config
    )
    await admin.start()
    try:
        created: list[str] = []
        pending = names
        deadline = time.monotonic() + timeout
        while pending:
            new_topics = []
            for name in pending:
                topic_config = dict(config or {})
                if name in compacted:
                    topic_config["cleanup.policy"] = "compact"
                new_topics.append(NewTopic(name, partitions, 1, topic_configs=topic_config))
            response = await admin.create_topics(new_topics, timeout_ms=int(timeout * 1000))
            retry = []
            for error in response.topic_errors:
                topic, code, message = error[0], error[1], error[2] if len(error) > 2 else ""
                if code == 0:
                    created.append(topic)
                elif code == _TOPIC_ALREADY_EXISTS:
                    pass
                elif code in _RETRIABLE_CREATE_ERRORS and time.monotonic() < deadline:
                    retry.append(topic)
                else:
                    raise LocalKafkaError(f"cannot create topic {topic}: error {code} {message}")
            pending = retry
            if pending:
                await asyncio.sleep(0.3)
        await _await_leaders(admin, names, deadline)
        return created
    finally:
        await admin.close()


async def _await_leaders(admin: Any, names: list[str], deadline: float) -> None:
    while True:
        described = await admin.describe_topics(names)
        missing = [
            entry["topic"]
            for entry in described
            if entry["error_code"] != 0
            or not entry["partitions"]
            or any(part["leader"] < 0 for part in entry["partitions"])
        ]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise LocalKafkaError(f"topics without leaders after creation: {missing}")
        await asyncio.sleep(0.1)


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 6,
    compacted: Iterable[str] = (),
    config: Mapping[str, str] | None = None,
    *,
    timeout: float = 30.0,
    **client_config: Any,
) -> list[str]:
    """Synchronous :func:`create_topics_async`."""
    return _run(
        create_topics_async(
            bootstrap, names, partitions, compacted, config, timeout=timeout, **client_config
        )
    )


def catalogue_topics() -> tuple[list[str], list[str]]:
    """(all topic names, the compacted ones) from ``streams.settings.Topics``."""
    from streams.settings import Topics

    topics = Topics()
    return topics.all(), [topics.kpi]


# --------------------------------------------------------------------------- CLI state


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _process_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def _is_our_broker(state: Mapping[str, Any]) -> bool:
    """True if the state's pid is alive and is a kafka.Kafka JVM using the state's config."""
    try:
        pid = int(state["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    cmdline = _process_cmdline(pid)
    return "kafka.Kafka" in cmdline and str(state.get("config", "")) in cmdline


def _config_in_use(config: Path) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _pid_alive(int(entry.name)):
            cmdline = _process_cmdline(int(entry.name))
            if "kafka.Kafka" in cmdline and str(config) in cmdline:
                return True
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _cmd_fetch(args: argparse.Namespace) -> int:
    print(fetch())
    return 0


def _cmd_start(args: argparse.Namespace) -> int:
    path = state_path()
    state = _read_state(path)
    if state and _is_our_broker(state):
        _say(f"already running: pid {state['pid']}, workdir {state['workdir']}")
        if args.create_topics:
            _create_catalogue(state["bootstrap"], args.partitions)
        print(state["bootstrap"])
        return 0
    handle = start(partitions_default=args.partitions, port=args.port or None, detach=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": handle.pid,
        "bootstrap": handle.bootstrap,
        "workdir": str(handle.workdir),
        "config": str(handle.config_path),
        "log": str(handle.log_path),
        "kafka_version": kafka_version(),
        "cluster_id": handle.cluster_id,
        "cds_pending": str(handle.cds_pending) if handle.cds_pending else None,
        "cds_archive": str(handle.cds_archive) if handle.cds_archive else None,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)
    _say(
        f"Kafka {kafka_version()} ready in {handle.startup_seconds:.1f}s: pid {handle.pid}, "
        f"log {handle.log_path}"
    )
    if args.create_topics:
        _create_catalogue(handle.bootstrap, args.partitions)
    print(handle.bootstrap)
    return 0


def _create_catalogue(bootstrap: str, partitions: int) -> None:
    names, compacted = catalogue_topics()
    created = create_topics(bootstrap, names, partitions=partitions, compacted=compacted)
    _say(f"topics: {len(created)} created, {len(names) - len(created)} already there")


def _cmd_stop(args: argparse.Namespace) -> int:
    path = state_path()
    state = _read_state(path)
    if not state:
        print("not running")
        return 0
    if _is_our_broker(state):
        pid = int(state["pid"])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _pid_alive(pid) and _is_our_broker(state):
            os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.05)
        elif state.get("cds_pending") and state.get("cds_archive"):
            _adopt_cds(Path(state["cds_pending"]), Path(state["cds_archive"]))
        print(f"stopped pid {pid}")
    else:
        print(f"not running (stale state for pid {state.get('pid')})")
    workdir = Path(str(state.get("workdir", "")))
    config = workdir / "server.properties"
    # Only ever delete a directory we made (it holds our server.properties) and that no
    # live broker uses.
    if (
        workdir.name.startswith("crm-kpi-kafka-")
        and config.is_file()
        and not _config_in_use(config)
    ):
        shutil.rmtree(workdir, ignore_errors=True)
    path.unlink(missing_ok=True)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    state = _read_state(state_path())
    if state and _is_our_broker(state):
        answering = "answering" if _port_open(state["bootstrap"]) else "NOT answering"
        print(f"running: pid {state['pid']}, Kafka {state.get('kafka_version')}, {answering}")
        print(state["bootstrap"])
        return 0
    print("not running")
    return 3  # LSB status code for "not running"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m streams.localkafka",
        description=f"Local single-node Apache Kafka {kafka_version()} (KRaft) on {HOST}.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="resolve the broker jars into the cache (once)")
    start_parser = sub.add_parser("start", help="start a detached broker; prints its bootstrap")
    start_parser.add_argument("--partitions", type=int, default=6, help="default partitions")
    start_parser.add_argument(
        "--create-topics", action="store_true", help="create the catalogue topics"
    )
    start_parser.add_argument("--port", type=int, default=0, help="client port (0 = free port)")
    stop_parser = sub.add_parser("stop", help="stop the broker started by `start`")
    stop_parser.add_argument("--timeout", type=float, default=20.0, help="seconds before SIGKILL")
    sub.add_parser("status", help="is the `start`ed broker running? (exit 3 if not)")
    args = parser.parse_args(argv)
    handlers = {"fetch": _cmd_fetch, "start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status}
    try:
        return handlers[args.command](args)
    except LocalKafkaError as exc:
        print(f"localkafka: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
