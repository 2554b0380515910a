"""Find, build and cache the dev cluster's binaries.

Lookup order for each binary: ``$KUBEBUILDER_ASSETS`` (envtest's directory), ``$PATH``, then the
cache ``~/.cache/gpumix/bin/<component>-<version>/``. Missing binaries are compiled from Go
modules fetched through the Go module proxy — no release tarballs are downloaded. kubernetes and
etcd are built from the wrapper modules under ``gomod/`` (see :mod:`gpumix.devcluster.gomod`);
kwok and helm have no replace directives and build with ``go install pkg@version``.

A build writes to a temporary directory that is renamed into place only on success, so an
interrupted build never leaves a half-filled cache directory that later runs would trust.
"""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from gpumix.devcluster import DevClusterError
from gpumix.errors import InputError

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
# Prometheus 3's Go module versions are v0.3xx.y (3.16 is v0.316.0). Debian ships 2.42, which
# has no Kubernetes service discovery, so it is built too.
PROMETHEUS_VERSION = "v0.316.0"

PROGRESS_INTERVAL_SECONDS = 20.0


@dataclass(frozen=True)
class Component:
    """Binaries built together from one Go module at one version."""

    name: str
    version: str
    binaries: tuple[str, ...]
    packages: tuple[str, ...]
    gomod: str | None = None  # wrapper module directory under gomod/, else `go install @version`
    tags: tuple[str, ...] = ()  # Go build tags

    @property
    def cache_name(self) -> str:
        return f"{self.name}-{self.version}"


KUBERNETES = Component(
    name="kubernetes",
    version=KUBERNETES_VERSION,
    binaries=("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
    packages=(
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-scheduler",
    ),
    gomod="kubernetes",
)
# kubectl for the tests and the demo, built only on machines that have none installed.
KUBECTL = Component(
    name="kubectl",
    version=KUBERNETES_VERSION,
    binaries=("kubectl",),
    packages=("k8s.io/kubernetes/cmd/kubectl",),
    gomod="kubernetes",
)
ETCD = Component(
    name="etcd",
    version=ETCD_VERSION,
    binaries=("etcd",),
    packages=("go.etcd.io/etcd/server/v3",),
    gomod="etcd",
)
KWOK = Component(
    name="kwok",
    version=KWOK_VERSION,
    binaries=("kwok",),
    packages=(f"sigs.k8s.io/kwok/cmd/kwok@{KWOK_VERSION}",),
)
HELM = Component(
    name="helm",
    version=HELM_VERSION,
    binaries=("helm",),
    packages=(f"helm.sh/helm/v3/cmd/helm@{HELM_VERSION}",),
)
# Only Kubernetes discovery is compiled in: the other service discoveries pull in every cloud's
# SDK and double a build that already takes minutes.
PROMETHEUS = Component(
    name="prometheus",
    version=PROMETHEUS_VERSION,
    binaries=("prometheus",),
    packages=(f"github.com/prometheus/prometheus/cmd/prometheus@{PROMETHEUS_VERSION}",),
    tags=("remove_all_sd", "enable_kubernetes_sd"),
)
COMPONENTS: dict[str, Component] = {
    c.name: c for c in (KUBERNETES, ETCD, KWOK, PROMETHEUS, HELM, KUBECTL)
}
# What `dev-cluster up` runs; helm is cached here for the chart tests, not started.
CLUSTER_COMPONENTS = (ETCD, KUBERNETES, KWOK, PROMETHEUS)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpumix" / "bin"


def kubernetes_version_ldflags(version: str, build_date: str) -> list[str]:
    """``-X`` flags that make the binaries report ``version`` (as hack/lib/version.sh does)."""
    major, minor = version.lstrip("v").split(".")[:2]
    flags = []
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        for key, value in (
            ("gitVersion", version),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
            ("buildDate", build_date),
        ):
            flags.append(f"-X {package}.{key}={value}")
    return flags


def go_binary() -> str:
    found = shutil.which("go")
    if found:
        return found
    for candidate in ("/usr/local/go/bin/go", str(Path.home() / "go" / "bin" / "go")):
        if os.access(candidate, os.X_OK):
            return candidate
    raise InputError(
        "the dev cluster's binaries are missing and Go is not installed to build them "
        "(need go >= 1.24 on PATH, or the binaries on PATH or in KUBEBUILDER_ASSETS)"
    )


class Binaries:
    """Paths of the dev cluster's binaries, building what is missing."""

    def __init__(
        self,
        cache_dir: Path | None = None,
        *,
        log: Callable[[str], None] | None = None,
    ):
        self.cache_dir = cache_dir or default_cache_dir()
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    def find(self, binary: str) -> Path | None:
        assets = os.environ.get("KUBEBUILDER_ASSETS")
        if assets and os.access(Path(assets) / binary, os.X_OK):
            return Path(assets) / binary
        on_path = shutil.which(binary)
        if on_path:
            return Path(on_path)
        component = self._component_of(binary)
        cached = self.cache_dir / component.cache_name / binary
        return cached if os.access(cached, os.X_OK) else None

    def path(self, binary: str) -> Path:
        """The binary's path, building its component first if no copy is found."""
        found = self.find(binary)
        if found is None:
            self.build(self._component_of(binary))
            found = self.find(binary)
        if found is None:
            raise DevClusterError(f"built {binary} but cannot find it in {self.cache_dir}")
        return found

    def ensure(self, components: tuple[Component, ...]) -> dict[str, Path]:
        return {
            binary: self.path(binary) for component in components for binary in component.binaries
        }

    @staticmethod
    def _component_of(binary: str) -> Component:
        for component in COMPONENTS.values():
            if binary in component.binaries:
                return component
        raise KeyError(binary)

    def build(self, component: Component) -> Path:
        """Compile a component into the cache (always; callers check ``find`` first)."""
        go = go_binary()
        target = self.cache_dir / component.cache_name
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{component.cache_name}.", dir=self.cache_dir))
        workdir = Path(tempfile.mkdtemp(prefix="gpumix-gobuild-"))
        try:
            # Static binaries: they run on any Linux without a matching libc.
            env = {**os.environ, "CGO_ENABLED": "0"}
            ldflags = ["-s", "-w"]
            if component.gomod == "kubernetes":
                build_date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                ldflags += kubernetes_version_ldflags(component.version, build_date)
            common = ["-trimpath", "-v", "-ldflags", " ".join(ldflags)]
            if component.tags:
                common += ["-tags", ",".join(component.tags)]
            if component.gomod is not None:
                module = resources.files("gpumix.devcluster") / "gomod" / component.gomod
                for name in ("go.mod", "go.sum"):
                    (workdir / name).write_text((module / name).read_text())
                # One package: name the output file (go would call etcd's main package
                # "server" or "v3"); several: go names each binary after its package.
                output = (
                    staging / component.binaries[0]
                    if len(component.packages) == 1
                    else f"{staging}/"
                )
                argv = [go, "build", *common, "-o", str(output), *component.packages]
            else:
                env["GOBIN"] = str(staging)
                argv = [go, "install", *common, *component.packages]
            self.log(
                f"building {', '.join(component.binaries)} {component.version} with "
                f"{Path(go).name} (a cold build takes minutes; cached in {target})"
            )
            elapsed = self._run_with_progress(argv, workdir, env, component)
            for binary in component.binaries:
                if not (staging / binary).exists():
                    raise DevClusterError(f"go build produced no {binary} in {staging}")
            staging.chmod(0o755)  # mkdtemp makes it owner-only; it is a shared tool cache
            try:
                staging.rename(target)
            except OSError:
                if not target.is_dir():
                    raise
                # Another build of the same version finished first (two test sessions, or
                # another user of the cache); its binaries are equivalent, keep them.
                self.log(f"{target} appeared during the build; keeping it")
            self.log(f"built {component.cache_name} in {elapsed:.0f}s")
            return target
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(staging, ignore_errors=True)

    def _run_with_progress(
        self, argv: list[str], cwd: Path, env: dict[str, str], component: Component
    ) -> float:
        started = time.monotonic()
        last_report = started
        packages = 0
        tail: list[str] = []
        # Lower priority: the build shares the machine with tests and other builds.
        process = subprocess.Popen(
            ["nice", "-n", "10", *argv],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert process.stdout is not None  # guaranteed by stdout=PIPE
        for line in process.stdout:
            # `go build -v` prints one import path per compiled package; anything else is an
            # error or a download message worth keeping for the failure report.
            line = line.rstrip()
            if " " in line or line.startswith(("go:", "#")):
                tail = [*tail[-19:], line]
            else:
                packages += 1
            now = time.monotonic()
            if now - last_report >= PROGRESS_INTERVAL_SECONDS:
                self.log(f"  {component.name}: {packages} packages compiled, {now - started:.0f}s")
                last_report = now
        if process.wait() != 0:
            detail = "\n".join(tail[-10:])
            raise DevClusterError(f"building {component.cache_name} failed:\n{detail}")
        return time.monotonic() - started
