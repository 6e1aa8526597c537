"""Image references and the registries they name: parse, normalise, and recognise Amazon ECR.

Pure code: no I/O, no Docker, no Airflow.

Reference parsing follows Docker's own rules (``distribution/reference``: ``regexp.go`` for the
grammar, ``normalize.go`` for the familiar-name normalisation, go-digest for digests), so a
reference airdock accepts is one the engine accepts, normalised the same way:
``busybox`` → ``docker.io/library/busybox``. One deliberate difference: a first path component
is a registry host only if it contains ``.`` or ``:`` or is ``localhost`` (newer
``distribution/reference`` also takes an upper-case first component for a host); ``Foo/bar`` is
refused as not lowercase instead of being sent to a registry called "Foo".

ECR hosts are recognised in one place, :data:`ECR_HOST_PATTERN`, modelled on ``ecrPattern`` of
awslabs/amazon-ecr-credential-helper (``ecr-login/api/client.go``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from airdock.errors import ConfigError, ImageReferenceError

__all__ = [
    "DEFAULT_REGISTRY",
    "ECR_HOST_PATTERN",
    "EcrRegistry",
    "ImageRef",
    "ecr_registry_for",
    "parse_ecr_host",
    "parse_image_ref",
    "parse_registry_list",
]

DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
NAME_MAX_LENGTH = 255

_LEGACY_DEFAULT_REGISTRY = "index.docker.io"
_OFFICIAL_PREFIX = "library/"
_LOCALHOST = "localhost"

# Grammar from distribution/reference regexp.go, written with explicit ASCII classes: Python's
# \w and \d match any Unicode letter or digit, Docker's do not.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_IPV6_ADDRESS = r"\[[a-fA-F0-9:]+\]"
_HOST_AND_PORT = re.compile(rf"(?:{_DOMAIN_NAME}|{_IPV6_ADDRESS})(?::[0-9]+)?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REMOTE_NAME = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(
    r"(?P<algorithm>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):(?P<hex>[0-9a-fA-F]{32,})"
)
_IDENTIFIER = re.compile(r"[a-f0-9]{64}")
# The algorithms go-digest registers, with the length of their lowercase hex encoding.
_DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}

# ECR private registry hosts: <account>.dkr.ecr[-fips].<region>.<partition suffix>, and the
# dual-stack <account>.dkr-ecr[-fips].<region>.on.aws form. Source: ecrPattern in
# awslabs/amazon-ecr-credential-helper ecr-login/api/client.go:
#   ^(\d{12})\.dkr[\.\-]ecr(\-fips)?\.([a-zA-Z0-9][a-zA-Z0-9-_]*)\.(amazonaws\.(?:com(?:\.cn)?|eu)|
#   on\.(?:aws|amazonwebservices\.com\.cn)|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)$
# Same hosts, with three tightenings: lowercase only (a parsed ImageRef's host is already
# lowercased), a region is a DNS label (no "_", no trailing "-"), and an optional ":port" because
# the helper matches url.Hostname(), i.e. the host without its port. Use it with fullmatch: in
# Python "$" also matches before a trailing newline.
ECR_HOST_PATTERN = re.compile(
    r"(?P<account>[0-9]{12})\.dkr[.-]ecr(?P<fips>-fips)?\.(?P<region>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)\."
    r"(?P<suffix>amazonaws\.(?:com(?:\.cn)?|eu)|on\.(?:aws|amazonwebservices\.com\.cn)"
    r"|sc2s\.sgov\.gov|c2s\.ic\.gov|cloud\.adc-e\.uk|csp\.hci\.ic\.gov)"
    r"(?::[0-9]+)?"
)

# DNS suffix → AWS partition; regions named us-gov-* on the commercial suffixes are GovCloud.
_PARTITIONS = {
    "amazonaws.com": "aws",
    "on.aws": "aws",
    "amazonaws.com.cn": "aws-cn",
    "on.amazonwebservices.com.cn": "aws-cn",
    "amazonaws.eu": "aws-eusc",
    "c2s.ic.gov": "aws-iso",
    "sc2s.sgov.gov": "aws-iso-b",
    "cloud.adc-e.uk": "aws-iso-e",
    "csp.hci.ic.gov": "aws-iso-f",
}


@dataclass(frozen=True)
class ImageRef:
    """A parsed, normalised image reference: ``registry/repository[:tag][@digest]``."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """``registry/repository``, e.g. ``docker.io/library/busybox``."""
        return f"{self.registry}/{self.repository}"

    @property
    def pull_reference(self) -> str:
        """What to hand to the engine: ``name@digest`` when pinned, else ``name:tag`` (default latest)."""
        if self.digest:
            return f"{self.name}@{self.digest}"
        return f"{self.name}:{self.tag or DEFAULT_TAG}"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class EcrRegistry:
    """An Amazon ECR private registry an image lives in, as far as its host tells."""

    host: str
    account_id: str | None
    region: str | None
    fips: bool
    partition: str | None
    custom: bool


def _bad_ref(text: str, problem: str) -> ImageReferenceError:
    # !r keeps the message on one line whatever the input holds.
    return ImageReferenceError(f"invalid image reference {text!r}: {problem}")


def _check_digest(text: str, digest: str) -> None:
    match = _DIGEST.fullmatch(digest)
    if match is None:
        raise _bad_ref(text, f"digest {digest!r} is not algorithm:hex, e.g. sha256:<64 hex digits>")
    algorithm, hex_part = match["algorithm"], match["hex"]
    length = _DIGEST_HEX_LENGTHS.get(algorithm)
    if length is None:
        raise _bad_ref(text, f"digest algorithm {algorithm!r} is not supported; use sha256, sha384 or sha512")
    if len(hex_part) != length or hex_part != hex_part.lower():
        raise _bad_ref(text, f"a {algorithm} digest has {length} lowercase hex digits, got {hex_part!r}")


def _check_tag(text: str, tag: str) -> None:
    if not tag:
        raise _bad_ref(text, "the tag after ':' is empty")
    if len(tag) > 128:
        raise _bad_ref(text, f"the tag is {len(tag)} characters; the limit is 128")
    if _TAG.fullmatch(tag) is None:
        raise _bad_ref(
            text,
            f"tag {tag!r} may hold only letters, digits, '_', '.' and '-', and may not start with '.' or '-'",
        )


def _split_registry(name: str) -> tuple[str, str]:
    """Split a name into registry and path by Docker's normalisation (``splitDockerDomain``)."""
    first, slash, rest = name.partition("/")
    if slash and (first == _LOCALHOST or "." in first or ":" in first):
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, name
    if registry == _LEGACY_DEFAULT_REGISTRY:
        registry = DEFAULT_REGISTRY
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = _OFFICIAL_PREFIX + path
    return registry, path


def parse_image_ref(text: str) -> ImageRef:
    """Parse an image reference as Docker does; raise ImageReferenceError (a ConfigError) if invalid."""
    if not text:
        raise _bad_ref(text, "it is empty; name an image such as 'busybox:1.36'")
    if any(char.isspace() for char in text):
        raise _bad_ref(text, "it contains whitespace")
    if not text.isascii():
        raise _bad_ref(text, "it contains non-ASCII characters")
    if _IDENTIFIER.fullmatch(text):
        raise _bad_ref(
            text, "a bare 64-digit hex string is an image ID, not a reference; name the repository"
        )

    rest, at, digest = text.partition("@")
    if at:
        _check_digest(text, digest)
    tag: str | None = None
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        _check_tag(text, tag)
    if not rest:
        raise _bad_ref(text, "the repository name is missing")

    registry, path = _split_registry(rest)
    if _HOST_AND_PORT.fullmatch(registry) is None:
        raise _bad_ref(text, f"registry {registry!r} is not a valid host or host:port")
    if path.lower() != path:
        raise _bad_ref(text, "repository names must be lowercase")
    if _REMOTE_NAME.fullmatch(path) is None:
        raise _bad_ref(
            text,
            f"repository {path!r} is not valid: use '/'-separated components of lowercase letters "
            "and digits, joined inside by '.', '_', '__' or '-'",
        )
    registry = registry.lower()
    name = f"{registry}/{path}"
    if len(name) > NAME_MAX_LENGTH:
        raise _bad_ref(text, f"the name {name!r} is {len(name)} characters; the limit is {NAME_MAX_LENGTH}")
    return ImageRef(registry=registry, repository=path, tag=tag, digest=digest or None)


def parse_ecr_host(host: str) -> EcrRegistry | None:
    """The ECR registry a standard ECR host (``host`` or ``host:port``, lowercase) names, else None."""
    match = ECR_HOST_PATTERN.fullmatch(host)
    if match is None:
        return None
    region = match["region"]
    partition = _PARTITIONS[match["suffix"]]
    if partition == "aws" and region.startswith("us-gov-"):
        partition = "aws-us-gov"
    return EcrRegistry(
        host=host,
        account_id=match["account"],
        region=region,
        fips=match["fips"] is not None,
        partition=partition,
        custom=False,
    )


def ecr_registry_for(ref: ImageRef, extra_hosts: Iterable[str] = ()) -> EcrRegistry | None:
    """The ECR registry ``ref`` lives in: a standard ECR host, or one listed in ``extra_hosts``.

    ``extra_hosts`` holds configured hosts (``host`` or ``host:port``, e.g. VPC endpoints or the
    local stack's gateway) compared with the reference's registry exactly, ignoring case.
    Anything else, ECR Public (``public.ecr.aws``) included, is not an ECR private registry.
    """
    standard = parse_ecr_host(ref.registry)
    if standard is not None:
        return standard
    listed = {host.strip().lower() for host in extra_hosts}
    if ref.registry.lower() in listed:
        return ecr_registry_at(ref.registry)
    return None


def ecr_registry_at(host: str) -> EcrRegistry:
    """The ECR registry at ``host`` (``host`` or ``host:port``): parsed when it is a standard ECR host,
    else a *custom* one (a VPC endpoint, a custom DNS name, the local stack) whose account and region
    are unknown — the caller's AWS identity and configured region decide them."""
    return parse_ecr_host(host) or EcrRegistry(
        host=host, account_id=None, region=None, fips=False, partition=None, custom=True
    )


def parse_registry_list(value: str | None) -> tuple[str, ...]:
    """Parse the ``[airdock] ecr_registries`` option: hosts separated by commas or whitespace.

    Blank entries are ignored, hosts are lowercased and duplicates dropped (first kept). An entry
    that is not a bare ``host`` or ``host:port`` raises a one-line ConfigError naming it.
    """
    hosts: list[str] = []
    for entry in re.split(r"[,\s]+", value or ""):
        if not entry:
            continue
        where = f"registry {entry!r} in [airdock] ecr_registries"
        if "://" in entry:
            raise ConfigError(f"{where} has a scheme: write only host or host:port, e.g. 127.0.0.1:5780")
        if "/" in entry:
            raise ConfigError(f"{where} has a path: write only host or host:port, e.g. 127.0.0.1:5780")
        if _HOST_AND_PORT.fullmatch(entry) is None:
            raise ConfigError(f"{where} is not a valid host or host:port, e.g. 127.0.0.1:5780")
        host = entry.lower()
        if host not in hosts:
            hosts.append(host)
    return tuple(hosts)
