"""Yahoo for a *separate process* (the real ``hft`` executable), offline: an HTTPS proxy on 127.0.0.1.

yfinance (with ``YF_DISABLE_CURL_CFFI=1``, its documented switch to ``requests``) honours ``HTTPS_PROXY``
and ``REQUESTS_CA_BUNDLE``: the proxy accepts ``CONNECT``, terminates TLS with a certificate for Yahoo's
hosts signed by a throw-away test CA, and answers each request as :class:`fake_yahoo.FakeYahoo` would. No
byte leaves the machine.
"""

from __future__ import annotations

import datetime as dt
import socketserver
import ssl
import threading
from pathlib import Path
from urllib.parse import urlsplit

from fake_yahoo import FakeYahoo

HOSTS = ["*.yahoo.com", "*.finance.yahoo.com", "yahoo.com"]


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for Yahoo's hosts: (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hft test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "yahoo.com")])).issuer_name(ca_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in HOSTS]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(cert.public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return paths


class FakeYahooProxy:
    """``with FakeYahooProxy(yahoo, tmp) as proxy: subprocess.run(..., env={**os.environ, **proxy.env})``."""

    def __init__(self, yahoo: FakeYahoo, directory: Path):
        self.yahoo = yahoo
        self.ca, cert, key = _certificates(directory)
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.tls.load_cert_chain(cert, key)
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                target = self.rfile.readline().decode("latin-1").split()
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                if len(target) < 2 or target[0] != "CONNECT":
                    self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
                    return
                host = target[1].rsplit(":", 1)[0]
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
                try:
                    with proxy.tls.wrap_socket(self.connection, server_side=True) as tls:
                        proxy._serve(tls, host)
                except (ssl.SSLError, OSError):
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _serve(self, tls, host: str) -> None:
        f = tls.makefile("rwb")
        while True:
            line = f.readline().decode("latin-1").split()
            if len(line) < 2:
                return
            length = 0
            while (header := f.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            f.read(length)
            url = f"https://{host}{line[1]}"
            self.yahoo.seen.append(url)
            status, body = self.yahoo._answer(urlsplit(url))
            import json

            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            kind = "text/html" if isinstance(body, str) else "application/json"
            f.write(f"HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
            f.flush()

    @property
    def env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return {"HTTPS_PROXY": url, "https_proxy": url, "REQUESTS_CA_BUNDLE": str(self.ca),
                "YF_DISABLE_CURL_CFFI": "1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}

    def __enter__(self) -> "FakeYahooProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
