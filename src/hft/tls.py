"""TLS between the machines of a deployment: the stack's own certificate authority and each host's certificate.

A hosts file (:mod:`hft.stack.hosts`) that says ``tls = true`` encrypts every connection of the stack's
Kafka, Redis and Spark: Kafka's client and broker listener is SASL_SSL (SCRAM over TLS) and its KRaft
controller listener SSL with client certificates (only the nodes, which hold a certificate of the stack's CA,
talk to it); Redis's nodes and Sentinels take TLS connections only (and replicate over TLS); Spark encrypts
its RPC (``spark.network.crypto.enabled``, keyed by the cluster's shared secret).

The same switch serves the stack's web UIs and APIs over HTTPS with the host's certificate: MLflow, Airflow's API
server, Prometheus, Alertmanager and the alert webhook (their clients in this package: :func:`urlopen`); and
PostgreSQL takes TLS connections only (``sslmode=verify-full`` against the CA).

The certificate authority is the deployment's, one for all its hosts: ``HFT_TLS_CA_CERT`` and
``HFT_TLS_CA_KEY`` (PEM text) when set, else the files ``$HFT_HOME/secrets/tls-ca.pem`` and ``tls-ca.key``
(0600), which the hosts file's first host generates at its first ``hft stack up`` (:func:`ensure_ca`); every other host
gets the same two, as it gets the other secrets. Each host's ``hft stack up`` issues its services a
certificate for its own address (:func:`host_files`, under ``<run dir>/tls``, reissued when the address or the
CA changes or it nears its end), valid for server and client authentication. The CA's key stays with
``hft stack up``: the services it starts do not inherit ``HFT_TLS_CA_KEY`` (:func:`hft.stack.base.child_env`).
Clients (:func:`ca_pem`: the CA certificate alone, no key needed) check the server's certificate against the CA
and its address against the certificate's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from hft.errors import HftError

CA_CERT_ENV = "HFT_TLS_CA_CERT"
CA_KEY_ENV = "HFT_TLS_CA_KEY"
#: The CA's files under ``$HFT_HOME/secrets``.
CA_CERT_NAME = "tls-ca.pem"
CA_KEY_NAME = "tls-ca.key"
CA_DAYS = 3650
HOST_DAYS = 397


class TlsError(HftError):
    """TLS is asked for and cannot be set up; the message says what to provide."""


def enabled() -> bool:
    """This process's deployment encrypts its connections: ``HFT_HOSTS_FILE`` names a hosts file that says
    ``tls = true`` (a client of a stack without a hosts file, or of a Kafka or Redis of your own: no)."""
    path = os.environ.get("HFT_HOSTS_FILE")
    if not path:
        return False
    from hft.stack.hosts import read

    return read(path).tls


def https_context(home: Path | None = None):
    """An ``ssl.SSLContext`` that trusts the deployment's CA (the stack's HTTPS UIs and APIs), or None when TLS
    is off."""
    import ssl

    return ssl.create_default_context(cadata=ca_pem(home)) if enabled() else None


def urlopen(request, timeout: float):
    """``urllib.request.urlopen`` that checks an ``https://`` server of the stack against the deployment's CA."""
    import urllib.request

    url = request if isinstance(request, str) else request.full_url
    context = https_context() if url.startswith("https://") else None
    return urllib.request.urlopen(request, timeout=timeout, context=context)


def _secrets(home: Path | None) -> Path:
    from hft.config import Settings

    return Path(home if home is not None else Settings.from_env().home) / "secrets"


def _pem(name: str, env: str, home: Path | None) -> str | None:
    """A PEM text of the CA (:func:`hft.config.stack_secret`: the environment, else the secrets file)."""
    from hft.config import stack_secret

    text = stack_secret(name, env, home)
    return text.strip() + "\n" if text and text.strip() else None


def ca_pem(home: Path | None = None) -> str:
    """The deployment's CA certificate (PEM): ``HFT_TLS_CA_CERT``, else ``<home>/secrets/tls-ca.pem`` (home:
    ``HFT_HOME``); raises :class:`TlsError` when there is neither."""
    pem = _pem(CA_CERT_NAME, CA_CERT_ENV, home)
    if not pem:
        raise TlsError(f"TLS is on (the hosts file says tls = true) but this machine has no CA certificate: set "
                       f"{CA_CERT_ENV}, or copy tls-ca.pem from the first host's $HFT_HOME/secrets into "
                       f"{_secrets(home)}")
    return pem


def ca_file(home: Path | None = None) -> Path:
    """The CA certificate as a file, for clients that take only a path (libpq's ``sslrootcert``, ``redis-cli``,
    MLflow's client): ``<home>/secrets/tls-ca.pem`` when the environment does not give the CA, else the
    environment's written (0600, atomically, when missing or different) to ``<home>/run/tls/client-ca.pem``:
    a folder of this user's, never a shared one another user could plant a CA of theirs in first."""
    from hft.stack.base import write_private

    if not os.environ.get(CA_CERT_ENV):
        path = _secrets(home) / CA_CERT_NAME
        if path.exists():
            return path
    pem = ca_pem(home)
    path = _secrets(home).parent / "run" / "tls" / "client-ca.pem"
    if not path.exists() or path.read_text() != pem:
        write_private(path, pem)
    return path


def ensure_ca(home: Path, create: bool = True) -> tuple[str, str]:
    """(certificate, key) of the deployment's CA, PEM: the environment's, else the files under ``home``, else
    (``create``: the hosts file's first host) a new CA generated into them (0600); the other hosts need a copy:
    without one they raise :class:`TlsError` saying so (a CA of their own would be trusted by nobody else)."""
    cert, key = _pem(CA_CERT_NAME, CA_CERT_ENV, home), _pem(CA_KEY_NAME, CA_KEY_ENV, home)
    if cert and key:
        return cert, key
    if cert or key:
        have, missing = (CA_CERT_NAME, CA_KEY_NAME) if cert else (CA_KEY_NAME, CA_CERT_NAME)
        raise TlsError(f"the stack's CA is half there: {have} without {missing} (set {CA_CERT_ENV} and {CA_KEY_ENV}, "
                       f"or put both files in {_secrets(home)})")
    if not create:
        raise TlsError(f"this host has no copy of the deployment's CA: set {CA_CERT_ENV} and {CA_KEY_ENV}, or copy "
                       f"{CA_CERT_NAME} and {CA_KEY_NAME} from the secrets folder of the hosts file's first host "
                       f"(where the first `hft stack up` made them) into {_secrets(home)}")
    from hft.stack.base import write_private

    cert, key = new_ca()
    write_private(_secrets(home) / CA_KEY_NAME, key)
    write_private(_secrets(home) / CA_CERT_NAME, cert)
    return cert, key


def new_ca(name: str | None = None) -> tuple[str, str]:
    """A new self-signed CA: (certificate, key), PEM (EC P-256, valid :data:`CA_DAYS` days), named ``name``,
    else ``hft stack CA <8 random hex digits>`` (two deployments' CAs are told apart)."""
    import secrets

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    name = name or f"hft stack CA {secrets.token_hex(4)}"
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (_builder(subject, subject, key.public_key(), CA_DAYS)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False, encipher_only=False,
                                            decipher_only=False), critical=True))
    return _signed(builder, key, key)


def issue(ca_cert: str, ca_key: str, address: str) -> tuple[str, str]:
    """A certificate for a host at ``address`` (an IP address or a DNS name) signed by the CA: (certificate
    chain, key), PEM; usable by its servers and as their client certificate (Kafka's controller listener)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca = x509.load_pem_x509_certificate(ca_cert.encode())
    signer = serialization.load_pem_private_key(ca_key.encode(), password=None)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(address))
    except ValueError:
        san = x509.DNSName(address)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (_builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]), ca.subject, key.public_key(),
                        HOST_DAYS)
               .add_extension(x509.SubjectAlternativeName([san]), critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    cert, key_pem = _signed(builder, signer, key)
    return cert + ca_cert, key_pem


def _builder(subject, issuer, public_key, days: int):
    from cryptography import x509

    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days)))


def _signed(builder, signer, key) -> tuple[str, str]:
    from cryptography.hazmat.primitives import hashes, serialization

    cert = builder.sign(signer, hashes.SHA256())
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


@dataclass(frozen=True)
class HostFiles:
    """A host's TLS files (0600): its certificate chain, its key, both in one file (Kafka's PEM key store),
    and the CA's certificate (what its servers check clients' certificates and peers against)."""

    cert: Path
    key: Path
    keystore: Path
    ca: Path


def host_files(home: Path, run_dir: Path, address: str, create_ca: bool = True) -> HostFiles:
    """This host's certificate for ``address`` from the deployment's CA (:func:`ensure_ca`, which makes one when
    missing only with ``create_ca``), in ``<run_dir>/tls``:
    issued when missing, and anew when the address or the CA changed or it expires within 30 days (the
    services that start next take it)."""
    import hashlib

    from hft.stack.base import write_private

    ca_cert, ca_key = ensure_ca(home, create_ca)
    folder = run_dir / "tls"
    files = HostFiles(folder / "host.pem", folder / "host.key", folder / "keystore.pem", folder / "ca.pem")
    stamp = folder / "issued-for"
    want = hashlib.sha256(f"{address}\n{ca_cert}".encode()).hexdigest()
    if (all(p.exists() for p in (files.cert, files.key, files.keystore, files.ca)) and stamp.exists()
            and stamp.read_text().strip() == want and _days_left(files.cert) > 30):
        return files
    cert, key = issue(ca_cert, ca_key, address)
    write_private(files.key, key)
    write_private(files.cert, cert)
    write_private(files.keystore, key + cert)
    write_private(files.ca, ca_cert)
    write_private(stamp, want + "\n")
    return files


def _days_left(cert: Path) -> float:
    from cryptography import x509

    until = x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc
    return (until - dt.datetime.now(dt.UTC)).total_seconds() / 86400
