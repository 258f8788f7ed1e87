"""The deployment's TLS (hft.tls): its CA, each host's certificate, and how the clients (Kafka, Redis, their CLIs)
switch to TLS when the hosts file says ``tls = true``. Real handshakes with Python's ssl module on loopback."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path

import pytest

from hft import tls
from hft.kafka_conn import PASSWORD_ENV, client_config, java_properties, properties_text, spark_options


@pytest.fixture
def home(tmp_path, monkeypatch):
    for name in (tls.CA_CERT_ENV, tls.CA_KEY_ENV, PASSWORD_ENV, "HFT_HOSTS_FILE", "HFT_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def hosts_file(path: Path, flag: str = "tls = true", address: str = "127.0.0.2") -> Path:
    path.write_text(f"{flag}\n[hosts.a]\naddress = '{address}'\nservices = ['kafka', 'redis']\n"
                    f"[hosts.b]\naddress = '127.0.0.3'\nservices = ['kafka-2']\n"
                    "[stack]\nkafka_brokers = 2\nkafka_cluster_id = 'q1Sh-9_ISia_zwGINzRvyQ'\n")
    return path


def handshake(cert: Path, key: Path, ca_pem: str, address: str = "127.0.0.1",
              client_cert: tuple[Path, Path] | None = None, want_client_cert: bool = False) -> str:
    """Serve one TLS connection on ``address`` with ``cert``/``key``; a client that trusts ``ca_pem`` connects to
    it by that address. Returns "ok" or the client's error."""
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    if want_client_cert:
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        server_ctx.load_verify_locations(cadata=ca_pem)
    listener = socket.create_server((address, 0))
    port = listener.getsockname()[1]

    def serve():
        try:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.sendall(b"hello")
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    ctx = ssl.create_default_context(cadata=ca_pem)
    if client_cert:
        ctx.load_cert_chain(*client_cert)
    try:
        with ctx.wrap_socket(socket.create_connection((address, port), timeout=5), server_hostname=address) as s:
            return "ok" if s.recv(5) == b"hello" else "closed"
    except (ssl.SSLError, ssl.CertificateError, OSError) as e:
        return f"refused: {e}"
    finally:
        thread.join(5)
        listener.close()


def test_a_host_certificate_is_trusted_for_its_address_only_and_only_by_its_ca(home, tmp_path):
    ca_cert, ca_key = tls.ensure_ca(home)
    files = tls.host_files(home, tmp_path / "run", "127.0.0.1")
    assert handshake(files.cert, files.key, ca_cert) == "ok"
    # a client that trusts another CA, or that dials an address the certificate does not name, is refused
    assert "certificate verify failed" in handshake(files.cert, files.key, tls.new_ca()[0])
    other = tls.host_files(home, tmp_path / "run-b", "127.0.0.2")
    assert "IP address mismatch" in handshake(other.cert, other.key, ca_cert, address="127.0.0.1")
    # the CA is kept 0600 and found again; the key store holds the key and the chain (Kafka's PEM key store)
    assert tls.ensure_ca(home) == (ca_cert, ca_key)
    for path in (home / "secrets" / tls.CA_KEY_NAME, files.key, files.keystore):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert files.keystore.read_text() == files.key.read_text() + files.cert.read_text()
    assert files.cert.read_text().endswith(ca_cert) and files.ca.read_text() == ca_cert


def test_the_host_certificate_is_a_client_certificate_too(home, tmp_path):
    ca_cert, _ = tls.ensure_ca(home)
    server = tls.host_files(home, tmp_path / "a", "127.0.0.1")
    client = tls.host_files(home, tmp_path / "b", "127.0.0.3")
    assert handshake(server.cert, server.key, ca_cert, client_cert=(client.cert, client.key),
                     want_client_cert=True) == "ok"
    outsider = tls.issue(*tls.new_ca(), "127.0.0.3")  # a certificate of another CA: refused by the server
    (tmp_path / "o.pem").write_text(outsider[0])
    (tmp_path / "o.key").write_text(outsider[1])
    assert handshake(server.cert, server.key, ca_cert, client_cert=(tmp_path / "o.pem", tmp_path / "o.key"),
                     want_client_cert=True) != "ok"


def test_host_files_are_reissued_only_when_the_address_or_the_ca_changes(home, tmp_path):
    run = tmp_path / "run"
    first = tls.host_files(home, run, "127.0.0.2").cert.read_text()
    time.sleep(0.01)
    assert tls.host_files(home, run, "127.0.0.2").cert.read_text() == first  # kept: services already use it
    assert tls.host_files(home, run, "127.0.0.5").cert.read_text() != first
    for name in (tls.CA_CERT_NAME, tls.CA_KEY_NAME):
        (home / "secrets" / name).unlink()
    tls.ensure_ca(home)  # a new CA: the host's certificate follows it
    assert tls.host_files(home, run, "127.0.0.5").cert.read_text().endswith(tls.ca_pem(home))


def test_only_the_first_host_makes_the_ca_the_others_say_what_to_copy(home, monkeypatch):
    with pytest.raises(tls.TlsError, match="copy tls-ca.pem and tls-ca.key from the secrets folder"):
        tls.ensure_ca(home, create=False)
    with pytest.raises(tls.TlsError, match=f"set {tls.CA_CERT_ENV}"):
        tls.ca_pem(home)
    cert, key = tls.new_ca()
    monkeypatch.setenv(tls.CA_CERT_ENV, cert)
    with pytest.raises(tls.TlsError, match="half there"):
        tls.ensure_ca(home, create=False)
    monkeypatch.setenv(tls.CA_KEY_ENV, key)
    assert tls.ensure_ca(home, create=False) == (cert.strip() + "\n", key.strip() + "\n")
    assert not (home / "secrets").exists()  # the environment's: nothing written


def test_a_stack_service_on_another_host_without_the_ca_is_refused_clearly(home, tmp_path, monkeypatch):
    from hft.stack import StackConfig, StackError
    from hft.stack.services import Kafka

    monkeypatch.setenv("HFT_HOSTS_FILE", str(hosts_file(tmp_path / "hosts.toml")))
    monkeypatch.setenv("HFT_HOST", "b")
    config = StackConfig.from_env()
    assert config.tls
    with pytest.raises(StackError, match="kafka-2: this host has no copy of the deployment's CA"):
        Kafka(config, 2).tls_files()
    files = Kafka(config, 1).tls_files()  # host a (the file's first) makes it
    assert files is not None and tls.ensure_ca(home, create=False)[0] == files.ca.read_text()
    assert Kafka(config, 2).tls_files().cert.read_text().endswith(files.ca.read_text())


def test_clients_go_over_tls_when_the_hosts_file_says_so(home, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, "kafka-password-123")
    monkeypatch.setenv("HFT_HOSTS_FILE", str(hosts_file(tmp_path / "plain.toml", "allow_plaintext = true")))
    assert not tls.enabled()
    assert client_config("h:1")["security.protocol"] == "SASL_PLAINTEXT" and "ssl.ca.pem" not in client_config("h:1")
    monkeypatch.setenv("HFT_HOSTS_FILE", str(hosts_file(tmp_path / "tls.toml")))
    assert tls.enabled()
    with pytest.raises(tls.TlsError):  # TLS asked for, no CA on this machine: said, not a plaintext fallback
        client_config("h:1")
    ca, _ = tls.ensure_ca(home)
    conf = client_config("h:1")
    assert conf["security.protocol"] == "SASL_SSL" and conf["ssl.ca.pem"] == ca
    assert conf["ssl.endpoint.identification.algorithm"] == "https"
    props = java_properties()
    assert props["security.protocol"] == "SASL_SSL" and props["ssl.truststore.type"] == "PEM"
    assert props["ssl.truststore.certificates"] == ca  # the text itself: an executor on another host needs no file
    assert spark_options()["kafka.ssl.truststore.certificates"] == ca
    text = properties_text({"a": "x\\y", "pem": "line1\nline2\n"})
    assert text == "a=x\\\\y\npem=line1\\nline2\\n\n"


def test_the_stack_names_redis_over_tls_and_its_clients_check_the_ca(home, tmp_path, monkeypatch):
    from hft.redis_conn import cli_login, is_sentinel, tls_kwargs
    from hft.stack import StackConfig

    monkeypatch.setenv("HFT_HOSTS_FILE", str(hosts_file(tmp_path / "hosts.toml")))
    monkeypatch.setenv("HFT_HOST", "a")
    monkeypatch.setenv("HFT_REDIS_REPLICAS", "0")
    config = StackConfig.from_env()
    assert config.redis_url.startswith("rediss://hft@127.0.0.2:")
    ca, _ = tls.ensure_ca(home)
    assert tls_kwargs(config.redis_url) == {"ssl_cert_reqs": "required", "ssl_check_hostname": True,
                                            "ssl_ca_data": ca}
    assert tls_kwargs("redis://h:1/0") == {} and tls_kwargs("rediss://h:1/0?ssl_ca_certs=/x")["ssl_check_hostname"]
    assert is_sentinel("rediss+sentinel://h:1,h:2/hft/0") and not is_sentinel("rediss://h:1/0")
    monkeypatch.setenv("HFT_REDIS_PASSWORD", "redis-password-123")
    args, env = cli_login(config.redis_url)
    assert args[:3] == ["--tls", "--cacert", str(home / "secrets" / tls.CA_CERT_NAME)] and "redis-password-123" not in args
    monkeypatch.setenv(tls.CA_CERT_ENV, ca)  # from the environment: a file made for redis-cli
    assert Path(cli_login(config.redis_url)[0][2]).read_text() == ca


def test_the_hosts_file_takes_tls_and_wants_it_or_plaintext_beyond_loopback(tmp_path):
    from hft.stack.hosts import HostsFileError, read

    far = "[hosts.a]\naddress = '10.1.2.3'\nservices = ['redis']\n"
    for flag in ("tls = true", "allow_plaintext = true"):
        (tmp_path / "ok.toml").write_text(f"{flag}\n{far}")
        read(tmp_path / "ok.toml").place(lambda n: (n,), {"redis"})
    (tmp_path / "no.toml").write_text(far)
    with pytest.raises(HostsFileError, match="say `tls = true`"):
        read(tmp_path / "no.toml").place(lambda n: (n,), {"redis"})
    (tmp_path / "bad.toml").write_text(f"tls = 'yes'\n{far}")
    with pytest.raises(HostsFileError, match="tls must be true or false"):
        read(tmp_path / "bad.toml")


def test_postgres_urls_ask_for_verify_full_against_the_ca(home, tmp_path, monkeypatch):
    from hft.backup import _pg
    from hft.stack import StackConfig
    from hft.stack.postgres import async_url, database_url, metadata_url

    path = hosts_file(tmp_path / "hosts.toml")
    path.write_text(path.read_text() + "metadata_db = 'postgres'\n")  # into [stack], the file's last table
    monkeypatch.setenv("HFT_HOSTS_FILE", str(path))
    monkeypatch.setenv("HFT_HOST", "a")
    monkeypatch.setenv("HFT_POSTGRES_PASSWORD", "pg-password-123")
    tls.ensure_ca(home)
    config = StackConfig.from_env()
    url = metadata_url(config, "mlflow")
    ca = str(home / "secrets" / tls.CA_CERT_NAME)
    assert url == database_url(config, "mlflow")
    assert url.split("?")[0].endswith("@127.0.0.1:5433/mlflow")  # postgres is placed on no host: loopback
    pg = _pg(url)  # what pg_dump and pg_restore get (the backup)
    assert (pg["PGDATABASE"], pg["PGSSLMODE"], pg["PGSSLROOTCERT"]) == ("mlflow", "verify-full", ca)
    assert async_url(url) == url.split("?")[0].replace("+psycopg2", "+asyncpg") + "?ssl=verify-full"
    from hft.stack.airflow import airflow_env

    env = airflow_env(config)  # Airflow's async engine: asyncpg's own spelling, the CA in PGSSLROOTCERT
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"].endswith("/airflow?ssl=verify-full")
    assert env["PGSSLROOTCERT"] == ca
    monkeypatch.delenv("HFT_HOSTS_FILE")
    monkeypatch.setenv("HFT_METADATA_DB", "postgres")
    plain = StackConfig.from_env()
    assert "?" not in database_url(plain, "mlflow") and async_url(database_url(plain, "mlflow")) is None


def test_the_web_config_serves_https_and_keeps_the_password_hash(home, tmp_path):
    from hft.stack import StackConfig
    from hft.stack.monitoring import write_web_config

    config = StackConfig(run_dir=home / "run", home=home)
    web, _ = write_web_config(tmp_path, config)
    first = web.read_text()
    assert "tls_server_config" not in first
    files = tls.host_files(home, tmp_path, "127.0.0.1")
    web, _ = write_web_config(tmp_path, config, files)
    text = web.read_text()
    assert f"cert_file: {files.cert}" in text and f"key_file: {files.key}" in text
    assert first.splitlines()[-1] in text  # the same bcrypt hash: the password did not change


def test_a_ca_from_the_environment_goes_to_a_file_of_this_users_home_for_path_only_clients(home, monkeypatch):
    ca, _ = tls.new_ca()
    monkeypatch.setenv(tls.CA_CERT_ENV, ca)
    path = tls.ca_file(home)
    assert path == home / "run" / "tls" / "client-ca.pem" and path.read_text() == ca
    assert path.stat().st_mode & 0o777 == 0o600
    path.write_text("planted")  # changed behind our back: written again, never trusted as found
    assert tls.ca_file(home).read_text() == ca


def test_services_never_inherit_the_ca_key(home, monkeypatch):
    from hft.stack.base import child_env

    cert, key = tls.new_ca()
    monkeypatch.setenv(tls.CA_CERT_ENV, cert)
    monkeypatch.setenv(tls.CA_KEY_ENV, key)
    env = child_env()
    assert tls.CA_KEY_ENV not in env and env[tls.CA_CERT_ENV] == cert


def test_sentinels_follow_the_hosts_files_tls_on_every_start(home, tmp_path, monkeypatch):
    from hft.stack import StackConfig
    from hft.stack.services import Sentinel
    from hft.stack.spark_cluster import auth_properties

    path = hosts_file(tmp_path / "hosts.toml")
    path.write_text(path.read_text() + "redis_replicas = 2\nspark_workers = 1\n")
    monkeypatch.setenv("HFT_HOSTS_FILE", str(path))
    monkeypatch.setenv("HFT_HOST", "a")
    config = StackConfig.from_env()
    argv, _ = Sentinel(config, 1).prepare()
    port = str(config.redis_sentinels[0])
    assert argv[argv.index("--port") + 1] == "0" and argv[argv.index("--tls-port") + 1] == port
    assert argv[argv.index("--tls-replication") + 1] == "yes"
    conf = auth_properties(config).read_text().splitlines()
    assert "spark.network.crypto.enabled true" in conf and "spark.network.crypto.saslFallback false" in conf
    path.write_text(path.read_text().replace("tls = true", "allow_plaintext = true"))  # TLS switched off later:
    config = StackConfig.from_env()  # the file Sentinel kept says tls-port; the command line undoes it
    argv, _ = Sentinel(config, 1).prepare()
    assert argv[argv.index("--port") + 1] == port and argv[argv.index("--tls-port") + 1] == "0"
    assert argv[argv.index("--tls-replication") + 1] == "no"
    assert "spark.network.crypto" not in auth_properties(config).read_text()


def test_a_redis_url_may_name_its_own_ca_file_for_nodes_and_sentinels(home, monkeypatch):
    from hft.redis_conn import _server_url, cli_login, tls_kwargs

    url = "rediss+sentinel://h:1,h:2/hft/0?ssl_ca_certs=/etc/my-ca.pem"
    assert tls_kwargs(url)["ssl_ca_certs"] == "/etc/my-ca.pem"
    assert "ssl_ca_certs" not in _server_url("rediss://h:1/0?ssl_ca_certs=/etc/my-ca.pem&db=0")
    assert cli_login("rediss://h:1/0?ssl_ca_certs=/etc/my-ca.pem")[0] == ["--tls", "--cacert", "/etc/my-ca.pem"]
