"""Certificates and keys for the dev cluster, made with the openssl command line.

The ``cryptography`` package is not a gpumix dependency (the kubernetes client does not pull it
in), and openssl is present wherever kube-apiserver is run by hand, so the CLI is used.

Identities: the admin client is in ``system:masters``; the controller manager and scheduler use
the identities the RBAC bootstrap policy grants (``system:kube-controller-manager``,
``system:kube-scheduler``), so RBAC is exercised as in a real cluster.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gpumix.devcluster import DevClusterError
from gpumix.errors import InputError

VALID_DAYS = 3650
# kube-apiserver serves the in-cluster `kubernetes` Service on the first IP of the service range.
# A /16: every LLMService takes two or more Services, and the scale benchmark runs 1000.
SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/16"
KUBERNETES_SERVICE_IP = "10.0.0.1"


@dataclass(frozen=True)
class ClientIdentity:
    file_stem: str
    common_name: str
    organization: str | None = None


ADMIN = ClientIdentity("admin", "gpumix-admin", "system:masters")
CONTROLLER_MANAGER = ClientIdentity("kube-controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("kube-scheduler", "system:kube-scheduler")
# The API server's client identity for the aggregation layer. Configuring it also publishes the
# request-header CA that the controller manager and scheduler read for delegated
# authentication (without it they log an error every minute).
FRONT_PROXY = ClientIdentity("front-proxy-client", "front-proxy-client")
CLIENT_IDENTITIES = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, FRONT_PROXY)


@dataclass(frozen=True)
class CertPaths:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_public_key(self) -> Path:
        return self.directory / "sa.pub"

    def client_cert(self, identity: ClientIdentity) -> Path:
        return self.directory / f"{identity.file_stem}.crt"

    def client_key(self, identity: ClientIdentity) -> Path:
        return self.directory / f"{identity.file_stem}.key"


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        raise InputError(
            "openssl is not on PATH; it is needed to make the dev cluster's certificates"
        )
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DevClusterError(f"openssl {args[0]} failed: {detail}")


def _new_key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
             "-out", str(path), cwd=path.parent)  # fmt: skip
    path.chmod(0o600)


def _sign(paths: CertPaths, key: Path, cert: Path, subject: str, extensions: str) -> None:
    csr = cert.with_suffix(".csr")
    ext_file = cert.with_suffix(".ext")
    ext_file.write_text(extensions)
    _openssl(
        "req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr), cwd=paths.directory
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(paths.ca_cert), "-CAkey", str(paths.ca_key),
        "-CAcreateserial", "-days", str(VALID_DAYS), "-sha256", "-extfile", str(ext_file),
        "-out", str(cert), cwd=paths.directory,
    )  # fmt: skip
    csr.unlink()
    ext_file.unlink()


def ensure_certs(directory: Path) -> CertPaths:
    """Create the CA, serving, client and service-account keys once; later calls reuse them."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(directory)
    if not paths.ca_cert.exists():
        _new_key(paths.ca_key)
        _openssl(
            "req", "-x509", "-new", "-key", str(paths.ca_key), "-subj", "/CN=gpumix-dev-ca",
            "-days", str(VALID_DAYS), "-sha256", "-out", str(paths.ca_cert),
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            cwd=directory,
        )  # fmt: skip
    if not paths.serving_cert.exists():
        _new_key(paths.serving_key)
        names = [
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
            "IP:127.0.0.1",
            f"IP:{KUBERNETES_SERVICE_IP}",
        ]
        _sign(
            paths,
            paths.serving_key,
            paths.serving_cert,
            "/CN=kube-apiserver",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(names)}\n",
        )
    for identity in CLIENT_IDENTITIES:
        if paths.client_cert(identity).exists():
            continue
        _new_key(paths.client_key(identity))
        subject = f"/CN={identity.common_name}"
        if identity.organization:
            subject = f"/O={identity.organization}{subject}"
        _sign(
            paths,
            paths.client_key(identity),
            paths.client_cert(identity),
            subject,
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n",
        )
    if not paths.service_account_public_key.exists():
        _new_key(paths.service_account_key)
        _openssl("pkey", "-in", str(paths.service_account_key), "-pubout",
                 "-out", str(paths.service_account_public_key), cwd=directory)  # fmt: skip
    return paths
