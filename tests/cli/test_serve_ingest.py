"""``medarchive serve`` with the MLLP listener and the MQTT subscriber: settings that cannot
work end it with a message and exit status 2 before anything starts serving; a broker that is
down does not (the subscriber retries in the background)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medarchive.cli.main import app
from medarchive.cli.serve import _start_mqtt
from medarchive.settings import Settings


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    environment = {"MEDARCHIVE_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}",
                   "MEDARCHIVE_AUTH": "off", **env}
    result = CliRunner().invoke(app, ["serve", "--port", str(free_port()), *args],
                                env=environment)
    return result.exit_code, " ".join(result.output.split())


def test_a_busy_mllp_port_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        code, output = serve(tmp_path, "--mllp-port", str(port))
    assert code == 2
    assert f"cannot listen for MLLP on 127.0.0.1:{port}" in output and "in use" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(("args", "env", "words"), [
    (("--mqtt-url", "ws://127.0.0.1:9001"), {}, "must be mqtt://host:port or mqtts://"),
    (("--mqtt-url", "mqtt://127.0.0.1"), {"MEDARCHIVE_MQTT_TLS_CA": "ca.pem"},
     "mqtt_tls_ca is set but mqtt_url is not mqtts://"),
    (("--mqtt-url", "mqtts://127.0.0.1"), {"MEDARCHIVE_MQTT_TLS_CA": "/nonexistent/ca.pem"},
     "mqtt_tls_ca '/nonexistent/ca.pem'"),
    (("--mllp-port", "2575"), {"MEDARCHIVE_MLLP_ALLOWED_SENDERS": "HIS"},
     "'HIS' is neither APP^FACILITY nor an IP network"),
    (("--mllp-port", "2575"), {"MEDARCHIVE_MLLP_TLS_CA": "ca.pem"},
     "mllp_tls_ca (client certificates) needs mllp_tls_cert"),
    (("--mllp-port", "2575"), {"MEDARCHIVE_MLLP_HOST": "0.0.0.0"},
     "MEDARCHIVE_AUTH=off: refusing to bind mllp_host to 0.0.0.0"),
])
def test_settings_that_cannot_work_end_serve_with_a_message(
        tmp_path: Path, args: tuple[str, ...], env: dict[str, str], words: str) -> None:
    code, output = serve(tmp_path, *args, **env)
    assert code == 2 and words in output and "Traceback" not in output


def test_a_broker_that_is_down_does_not_stop_the_server(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'db.sqlite'}", auth="off",
                        mqtt_url=f"mqtt://127.0.0.1:{free_port()}", mqtt_connections=1)
    subscriber = _start_mqtt(settings)
    try:
        assert "not reachable yet; the subscriber keeps retrying" in " ".join(
            capsys.readouterr().err.split())
        assert subscriber.subscriber.connections == 0
    finally:
        subscriber.stop()
