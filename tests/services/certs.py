"""Throwaway certificate authorities and certificates for TLS tests, made with the `openssl` CLI.

Nothing here is fit for production: keys are unencrypted, the CA lives a day. Each test makes
its own in its temporary directory, so no certificate outlives the test that trusted it.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.processes import ServiceBinaryNotFound, find_binary


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that signs server and client certificates in ``directory``."""

    name: str
    directory: Path
    cert: Path
    key: Path

    def issue(self, name: str, *, hosts: tuple[str, ...] = (), client: bool = False) -> KeyPair:
        """A certificate for ``name`` signed by this CA: a server certificate valid for
        ``hosts`` (IP addresses or DNS names), or with ``client`` a client certificate."""
        key = self.directory / f"{name}.key"
        csr = self.directory / f"{name}.csr"
        cert = self.directory / f"{name}.crt"
        extensions = self.directory / f"{name}.ext"
        usage = "clientAuth" if client else "serverAuth"
        lines = ["basicConstraints=CA:FALSE", f"extendedKeyUsage={usage}"]
        if hosts:
            names = ",".join(
                f"IP:{host}" if host.replace(".", "").isdigit() or ":" in host else f"DNS:{host}"
                for host in hosts
            )
            lines.append(f"subjectAltName={names}")
        extensions.write_text("\n".join(lines) + "\n")
        _openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
            "-CAcreateserial", "-days", "1", "-extfile", extensions, "-out", cert,
        )  # fmt: skip
        return KeyPair(cert=cert, key=key)


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


def make_ca(directory: Path, name: str = "test-ca") -> CertificateAuthority:
    """A new CA in ``directory`` (created if missing). Raises ``ServiceBinaryNotFound``
    when there is no ``openssl`` to make it with."""
    _openssl_binary()
    directory.mkdir(parents=True, exist_ok=True)
    cert = directory / f"{name}.crt"
    key = directory / f"{name}.key"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return CertificateAuthority(name=name, directory=directory, cert=cert, key=key)


def _openssl_binary() -> str:
    found = find_binary("openssl", "OPENSSL_BIN")
    if found is None:
        raise ServiceBinaryNotFound("openssl", "openssl", "OPENSSL_BIN")
    return found


def _openssl(*args: object) -> None:
    result = subprocess.run(
        [_openssl_binary(), *map(str, args)], capture_output=True, text=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


@dataclass(frozen=True)
class Pki:
    """A CA, a server certificate it signed for 127.0.0.1 and localhost, a client certificate
    it signed, and a second CA that signed neither."""

    ca: CertificateAuthority
    server: KeyPair
    client: KeyPair
    other_ca: CertificateAuthority


def make_pki(directory: Path) -> Pki:
    ca = make_ca(directory / "ca")
    return Pki(
        ca=ca,
        server=ca.issue("server", hosts=("127.0.0.1", "localhost")),
        client=ca.issue("client", client=True),
        other_ca=make_ca(directory / "other-ca", "other-ca"),
    )
