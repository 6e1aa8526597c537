from __future__ import annotations

import pytest

from airdock.errors import ConfigError, ImageReferenceError
from airdock.images import (
    EcrRegistry,
    ImageRef,
    ecr_registry_for,
    parse_ecr_host,
    parse_image_ref,
    parse_registry_list,
)

SHA = "sha256:" + "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
ACCOUNT = "123456789012"
ECR = f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com"


# ---------------------------------------------------------------- reference parsing


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        # Docker Hub familiar names are normalised like `docker pull` does.
        ("busybox", "docker.io", "library/busybox", None, None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("library/busybox", "docker.io", "library/busybox", None, None),
        ("user/app:tag", "docker.io", "user/app", "tag", None),
        ("docker.io/busybox", "docker.io", "library/busybox", None, None),
        ("docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/user/app", "docker.io", "user/app", None, None),
        ("registry-1.docker.io/library/busybox", "registry-1.docker.io", "library/busybox", None, None),
        # Nested paths stay under the user's namespace on Docker Hub, no library/ prefix.
        ("user/team/app", "docker.io", "user/team/app", None, None),
        # A first component without '.' or ':' is a path component, not a host.
        ("team/app", "docker.io", "team/app", None, None),
        # Registries: localhost, ports, IPs, IPv6, nested paths.
        ("localhost/app", "localhost", "app", None, None),
        ("localhost:5000/app", "localhost:5000", "app", None, None),
        ("localhost:5000/app:1.0", "localhost:5000", "app", "1.0", None),
        ("127.0.0.1:5780/team/app", "127.0.0.1:5780", "team/app", None, None),
        ("[::1]:5000/team/app:v2", "[::1]:5000", "team/app", "v2", None),
        ("ghcr.io/org/sub/group/app:main", "ghcr.io", "org/sub/group/app", "main", None),
        ("public.ecr.aws/docker/library/busybox:1", "public.ecr.aws", "docker/library/busybox", "1", None),
        (f"{ECR}/team/app:1.0", ECR, "team/app", "1.0", None),
        (f"{ECR}:443/team/app", f"{ECR}:443", "team/app", None, None),
        # The host is lowercased (DNS is case-insensitive); the path must already be lowercase.
        ("Registry.Example.COM:5000/app", "registry.example.com:5000", "app", None, None),
        # Separators inside path components: '.', '_', '__', runs of '-'.
        ("ghcr.io/a.b/c_d/e__f/g--h-i", "ghcr.io", "a.b/c_d/e__f/g--h-i", None, None),
        # Tags: letters, digits, '_', '.', '-', up to 128 characters, uppercase allowed.
        ("app:V1.2_rc-3", "docker.io", "library/app", "V1.2_rc-3", None),
        ("app:_x", "docker.io", "library/app", "_x", None),
        ("app:" + "t" * 128, "docker.io", "library/app", "t" * 128, None),
        # Digests, alone or with a tag.
        (f"busybox@{SHA}", "docker.io", "library/busybox", None, SHA),
        (f"busybox:1.36@{SHA}", "docker.io", "library/busybox", "1.36", SHA),
        (f"localhost:5000/app@{SHA}", "localhost:5000", "app", None, SHA),
        (f"{ECR}/team/app:1.0@{SHA}", ECR, "team/app", "1.0", SHA),
        ("app@sha512:" + "a" * 128, "docker.io", "library/app", None, "sha512:" + "a" * 128),
        ("app@sha384:" + "0" * 96, "docker.io", "library/app", None, "sha384:" + "0" * 96),
    ],
)
def test_parses_references(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    assert parse_image_ref(text) == ImageRef(registry, repository, tag, digest)


@pytest.mark.parametrize(
    ("text", "name", "pull", "full"),
    [
        (
            "busybox",
            "docker.io/library/busybox",
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox",
        ),
        ("user/app:tag", "docker.io/user/app", "docker.io/user/app:tag", "docker.io/user/app:tag"),
        (
            f"busybox:1.36@{SHA}",
            "docker.io/library/busybox",
            f"docker.io/library/busybox@{SHA}",
            f"docker.io/library/busybox:1.36@{SHA}",
        ),
        (
            "localhost:5000/app@" + SHA,
            "localhost:5000/app",
            f"localhost:5000/app@{SHA}",
            f"localhost:5000/app@{SHA}",
        ),
        (f"{ECR}/team/app:1.0", f"{ECR}/team/app", f"{ECR}/team/app:1.0", f"{ECR}/team/app:1.0"),
    ],
)
def test_name_pull_reference_and_str(text: str, name: str, pull: str, full: str) -> None:
    ref = parse_image_ref(text)
    assert ref.name == name
    assert ref.pull_reference == pull
    assert str(ref) == full


@pytest.mark.parametrize(
    "text", ["busybox", "user/app:tag", f"busybox:1@{SHA}", "[::1]:5000/a/b:c", f"{ECR}:443/team/app"]
)
def test_str_round_trips(text: str) -> None:
    ref = parse_image_ref(text)
    assert parse_image_ref(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "it is empty"),
        (" busybox", "it contains whitespace"),
        ("busybox ", "it contains whitespace"),
        ("busy box", "it contains whitespace"),
        ("busybox\n", "it contains whitespace"),
        ("bus\tybox", "it contains whitespace"),
        ("büsybox", "it contains non-ASCII characters"),
        # KELVIN SIGN lowercases to an ASCII 'k': refused before any case folding.
        (f"{ACCOUNT}.d\u212ar.ecr.us-east-1.amazonaws.com/app", "it contains non-ASCII characters"),
        ("a" * 64, "image ID, not a reference"),
        # Case.
        ("Foo/Bar", "repository names must be lowercase"),
        ("Foo/bar", "repository names must be lowercase"),
        ("BusyBox", "repository names must be lowercase"),
        ("ghcr.io/Org/app", "repository names must be lowercase"),
        # Tags.
        ("busybox:", "the tag after ':' is empty"),
        ("busybox:.hidden", "tag '.hidden' may hold only letters"),
        ("busybox:-x", "tag '-x' may hold only letters"),
        ("busybox:a+b", "tag 'a+b' may hold only letters"),
        ("busybox:" + "t" * 129, "the tag is 129 characters; the limit is 128"),
        # Digests.
        ("busybox@", "digest '' is not algorithm:hex"),
        ("busybox@sha256", "digest 'sha256' is not algorithm:hex"),
        ("busybox@sha256:xyz", "digest 'sha256:xyz' is not algorithm:hex"),
        ("busybox@sha256:" + "a" * 63, "a sha256 digest has 64 lowercase hex digits"),
        ("busybox@sha256:" + "a" * 65, "a sha256 digest has 64 lowercase hex digits"),
        ("busybox@sha256:" + "A" * 64, "a sha256 digest has 64 lowercase hex digits"),
        ("busybox@md5:" + "a" * 32, "digest algorithm 'md5' is not supported"),
        (f"busybox@{SHA}@{SHA}", "is not algorithm:hex"),
        # Names.
        (":1.0", "the repository name is missing"),
        (f"@{SHA}", "the repository name is missing"),
        ("/app", "repository '/app' is not valid"),
        ("team//app", "repository 'team//app' is not valid"),
        ("team/app/", "repository 'team/app/' is not valid"),
        ("team/-app", "repository 'team/-app' is not valid"),
        ("team/app.", "repository 'team/app.' is not valid"),
        ("team/a___b", "repository 'team/a___b' is not valid"),
        ("team/a..b", "repository 'team/a..b' is not valid"),
        ("https://ghcr.io/app", "registry 'https:' is not a valid host or host:port"),
        ("localhost:port/app", "registry 'localhost:port' is not a valid host or host:port"),
        ("-bad.example.com/app", "registry '-bad.example.com' is not a valid host or host:port"),
        ("bad_host.example.com/app", "registry 'bad_host.example.com' is not a valid host or host:port"),
        ("ghcr.io/" + "a" * 248, "is 256 characters; the limit is 255"),
        ("a" * 238, "is 256 characters; the limit is 255"),
    ],
)
def test_rejects_references_with_one_line_naming_input_and_problem(text: str, problem: str) -> None:
    with pytest.raises(ImageReferenceError) as caught:
        parse_image_ref(text)
    message = str(caught.value)
    assert message.startswith(f"invalid image reference {text!r}: ")
    assert problem in message
    assert "\n" not in message
    assert isinstance(caught.value, ConfigError)


def test_longest_allowed_name_parses() -> None:
    assert len(parse_image_ref("ghcr.io/" + "a" * 247).name) == 255


# ---------------------------------------------------------------- ECR hosts


@pytest.mark.parametrize(
    ("host", "account", "region", "fips", "partition"),
    [
        (ECR, ACCOUNT, "us-east-1", False, "aws"),
        ("123456789012.dkr.ecr.eu-west-1.amazonaws.com", ACCOUNT, "eu-west-1", False, "aws"),
        (f"{ECR}:443", ACCOUNT, "us-east-1", False, "aws"),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            ACCOUNT,
            "us-gov-west-1",
            True,
            "aws-us-gov",
        ),
        ("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com", ACCOUNT, "us-east-1", True, "aws"),
        ("123456789012.dkr.ecr.us-gov-east-1.amazonaws.com", ACCOUNT, "us-gov-east-1", False, "aws-us-gov"),
        ("210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn", "210987654321", "cn-north-1", False, "aws-cn"),
        # Cross-account: the host's account, whoever the caller is.
        ("999988887777.dkr.ecr.us-east-1.amazonaws.com", "999988887777", "us-east-1", False, "aws"),
        # Dual-stack (IPv6) endpoints.
        ("123456789012.dkr-ecr.us-east-1.on.aws", ACCOUNT, "us-east-1", False, "aws"),
        ("123456789012.dkr-ecr-fips.us-gov-west-1.on.aws", ACCOUNT, "us-gov-west-1", True, "aws-us-gov"),
        (
            "123456789012.dkr-ecr.cn-northwest-1.on.amazonwebservices.com.cn",
            ACCOUNT,
            "cn-northwest-1",
            False,
            "aws-cn",
        ),
        # Sovereign and isolated partitions.
        ("123456789012.dkr.ecr.eusc-de-east-1.amazonaws.eu", ACCOUNT, "eusc-de-east-1", False, "aws-eusc"),
        ("123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", ACCOUNT, "us-iso-east-1", False, "aws-iso"),
        ("123456789012.dkr.ecr.us-isob-east-1.sc2s.sgov.gov", ACCOUNT, "us-isob-east-1", False, "aws-iso-b"),
        ("123456789012.dkr.ecr.eu-isoe-west-1.cloud.adc-e.uk", ACCOUNT, "eu-isoe-west-1", False, "aws-iso-e"),
        (
            "123456789012.dkr.ecr.us-isof-south-1.csp.hci.ic.gov",
            ACCOUNT,
            "us-isof-south-1",
            False,
            "aws-iso-f",
        ),
    ],
)
def test_parses_standard_ecr_hosts(host: str, account: str, region: str, fips: bool, partition: str) -> None:
    assert parse_ecr_host(host) == EcrRegistry(
        host=host, account_id=account, region=region, fips=fips, partition=partition, custom=False
    )


@pytest.mark.parametrize(
    "host",
    [
        "public.ecr.aws",  # ECR Public: no GetAuthorizationToken login
        "ecr-public.aws.com",
        "docker.io",
        "ghcr.io",
        "localhost:5000",
        "127.0.0.1:5780",
        "",
        # Look-alikes and suffix tricks.
        f"{ECR}.evil.com",
        f"{ECR}.",
        f"evil.com.{ECR}",
        f"{ECR}\n",
        f"{ECR}:",
        f"{ECR}:https",
        "123456789012.dkr.ecr.us-east-1.amazonaws.co",
        "123456789012.dkr.ecr.us-east-1.example.com",
        "123456789012.dkr.ecr.us-east-1.evil.on.aws",
        "123456789012.dkr-ecr.us-east-1.on.aws.evil.com",
        "123456789012xdkr.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr..amazonaws.com",
        "123456789012.dkr.ecr.-.amazonaws.com",
        "123456789012.dkr.ecr.us-east-.amazonaws.com",
        "123456789012.dkr.ecr.us_east_1.amazonaws.com",
        "123456789012.ecr.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr-fipsx.us-east-1.amazonaws.com",
        "user@123456789012.dkr.ecr.us-east-1.amazonaws.com",
        # Account must be exactly 12 ASCII digits.
        "12345678901.dkr.ecr.us-east-1.amazonaws.com",
        "1234567890123.dkr.ecr.us-east-1.amazonaws.com",
        "12345678901x.dkr.ecr.us-east-1.amazonaws.com",
        ".dkr.ecr.us-east-1.amazonaws.com",
        "\u0661\u0662\u0663\u0664\u0665\u0666\u0667\u0668\u0669\u0660\u0661\u0662.dkr.ecr.us-east-1.amazonaws.com",
        # Uppercase tricks: parse_ecr_host takes the lowercased host an ImageRef holds.
        "123456789012.DKR.ECR.us-east-1.amazonaws.com",
        "123456789012.dkr.ecr.US-EAST-1.amazonaws.com",
        "123456789012.dkr.ecr.us-east-1.AMAZONAWS.COM",
        f"{ACCOUNT}.d\u212ar.ecr.us-east-1.amazonaws.com",
    ],
)
def test_other_hosts_are_not_standard_ecr(host: str) -> None:
    assert parse_ecr_host(host) is None


@pytest.mark.parametrize(
    ("text", "extra", "expected"),
    [
        (
            f"{ECR}/team/app:1.0",
            (),
            EcrRegistry(ECR, ACCOUNT, "us-east-1", False, "aws", custom=False),
        ),
        (
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com/team/app",
            (),
            EcrRegistry(
                "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
                ACCOUNT,
                "us-gov-west-1",
                True,
                "aws-us-gov",
                custom=False,
            ),
        ),
        (
            "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn/app@" + SHA,
            (),
            EcrRegistry(
                "210987654321.dkr.ecr.cn-north-1.amazonaws.com.cn",
                "210987654321",
                "cn-north-1",
                False,
                "aws-cn",
                custom=False,
            ),
        ),
        (
            "123456789012.dkr-ecr.us-east-1.on.aws/team/app",
            (),
            EcrRegistry(
                "123456789012.dkr-ecr.us-east-1.on.aws", ACCOUNT, "us-east-1", False, "aws", custom=False
            ),
        ),
        # An uppercase ASCII host in a reference is lowercased before the match: same DNS name.
        (
            "123456789012.DKR.ECR.US-EAST-1.AMAZONAWS.COM/app",
            (),
            EcrRegistry(ECR, ACCOUNT, "us-east-1", False, "aws", custom=False),
        ),
        # A standard host stays standard even when also listed.
        (f"{ECR}/app", (ECR,), EcrRegistry(ECR, ACCOUNT, "us-east-1", False, "aws", custom=False)),
        # Configured hosts: exact host or host:port, case-insensitive.
        (
            "127.0.0.1:5780/team/app",
            ("127.0.0.1:5780",),
            EcrRegistry("127.0.0.1:5780", None, None, False, None, custom=True),
        ),
        (
            "ecr.internal.example:5000/app",
            ["other.example", " ECR.Internal.Example:5000 "],
            EcrRegistry("ecr.internal.example:5000", None, None, False, None, custom=True),
        ),
        (
            "vpce-0abc.dkr.ecr.us-east-1.vpce.amazonaws.com/app",
            ("vpce-0abc.dkr.ecr.us-east-1.vpce.amazonaws.com",),
            EcrRegistry(
                "vpce-0abc.dkr.ecr.us-east-1.vpce.amazonaws.com", None, None, False, None, custom=True
            ),
        ),
        # Not ECR.
        ("127.0.0.1:5780/team/app", (), None),
        ("127.0.0.1:5780/team/app", ("127.0.0.1",), None),
        ("127.0.0.1:5780/team/app", ("127.0.0.1:5781",), None),
        ("127.0.0.1/team/app", ("127.0.0.1:5780",), None),
        ("public.ecr.aws/docker/library/busybox", (), None),
        ("busybox", (), None),
        ("library/busybox", (), None),
        ("user/app:tag", (), None),
        ("localhost:5000/app", (), None),
        ("ghcr.io/org/app", (), None),
        (f"{ECR}.evil.com/app", (), None),
        ("12345678901.dkr.ecr.us-east-1.amazonaws.com/app", (), None),
        # A Docker Hub name is not turned into ECR by listing the bare repository name.
        ("busybox", ("busybox",), None),
    ],
)
def test_ecr_registry_for(
    text: str, extra: tuple[str, ...] | list[str], expected: EcrRegistry | None
) -> None:
    assert ecr_registry_for(parse_image_ref(text), extra) == expected


def test_ecr_registry_for_accepts_parsed_option() -> None:
    hosts = parse_registry_list("127.0.0.1:5780, ecr.internal.example")
    found = ecr_registry_for(parse_image_ref("127.0.0.1:5780/team/app:1"), hosts)
    assert found is not None
    assert found.custom
    assert found.host == "127.0.0.1:5780"


# ---------------------------------------------------------------- [airdock] ecr_registries


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        (None, ()),
        ("", ()),
        ("   ", ()),
        (",, ,", ()),
        ("127.0.0.1:5780", ("127.0.0.1:5780",)),
        ("a.example, b.example:5000", ("a.example", "b.example:5000")),
        ("a.example,b.example", ("a.example", "b.example")),
        ("a.example b.example", ("a.example", "b.example")),
        ("\n  a.example,\n  b.example\n", ("a.example", "b.example")),
        ("A.Example:5000, a.example:5000", ("a.example:5000",)),
        ("localhost:5780", ("localhost:5780",)),
        ("registry", ("registry",)),
        ("[::1]:5780", ("[::1]:5780",)),
        (
            "vpce-0abc.dkr.ecr.us-east-1.vpce.amazonaws.com",
            ("vpce-0abc.dkr.ecr.us-east-1.vpce.amazonaws.com",),
        ),
    ],
)
def test_parses_registry_list(value: str | None, hosts: tuple[str, ...]) -> None:
    assert parse_registry_list(value) == hosts


@pytest.mark.parametrize(
    ("value", "entry", "problem"),
    [
        ("https://ecr.example", "https://ecr.example", "has a scheme"),
        ("a.example, http://b.example:5000", "http://b.example:5000", "has a scheme"),
        ("ecr.example/team", "ecr.example/team", "has a path"),
        ("ecr.example/", "ecr.example/", "has a path"),
        ("ecr.example:port", "ecr.example:port", "is not a valid host or host:port"),
        ("ecr.example:", "ecr.example:", "is not a valid host or host:port"),
        ("-ecr.example", "-ecr.example", "is not a valid host or host:port"),
        ("ecr_example.com", "ecr_example.com", "is not a valid host or host:port"),
        ("ecr.example;other", "ecr.example;other", "is not a valid host or host:port"),
        ("écr.example", "écr.example", "is not a valid host or host:port"),
        # Whitespace separates entries, so a host written with a space inside is two entries,
        # and the stray half is named.
        ("ecr.example :5000", ":5000", "is not a valid host or host:port"),
    ],
)
def test_rejects_bad_registry_entries(value: str, entry: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_registry_list(value)
    message = str(caught.value)
    assert message.startswith(f"registry {entry!r} in [airdock] ecr_registries {problem}")
    assert "\n" not in message
