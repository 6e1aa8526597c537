"""`airdock gc` on the real engine, with ~30 small distinct images of its own.

One module fixture builds the scene and runs the real command line four times (three dry runs,
side by side, then the real run); the tests assert facets of what happened. The scene's images
come from one ``docker load`` of one-layer images (no layer shared, busybox only in the two that
run a container), dated months back by their config: no wait for them to age past ``--min-age``,
and the one young image stays young however slow the runs are. Images and containers the scene
did not create are protected twice, so the suite can share an engine with other tests: every one
of them present just before a run is leased in the run's usage record (a lease protects an image
by id, dangling ones included), and ``--keep`` covers the other tests' repositories.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import sqlite3
import tarfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from airdock.hygiene.gc_plan import OUT_OF_SCOPE
from airdock.hygiene.inventory import read_inventory
from airdock.hygiene.model import (
    LABEL_DAG_ID,
    LABEL_RUN_ID,
    LABEL_STARTED_AT,
    LABEL_TASK_ID,
    MANAGED_LABEL,
    ImageInfo,
)
from airdock.hygiene.usage import UsageStore
from airdock.local.offline_images import import_image, static_busybox
from tests.conftest import airdock, make_env

pytestmark = pytest.mark.integration

N_IMAGES = 30
MIN_AGE_S = 600  # the young image is made seconds before the runs, every other one long before
DAY = 86400.0
FOREIGN_KEEP = ("--keep", "airdock-test/*", "--keep", "127.0.0.1*", "--keep", "airdock-demo/*")


@dataclass
class Scene:
    prefix: str
    db: Path
    ids: dict[str, str] = field(default_factory=dict)  # role/name → image id
    sizes: dict[str, int] = field(default_factory=dict)  # image id → bytes
    last_used: dict[str, float] = field(default_factory=dict)  # image id → recorded last use
    lru: list[str] = field(default_factory=list)  # regular image ids, least recently used first
    dangling: list[str] = field(default_factory=list)
    containers: dict[str, str] = field(default_factory=dict)  # role → container id
    kept_index: int = 0
    image_bytes: int = 0
    target: int = 0
    expected_removals: list[str] = field(default_factory=list)
    runs: dict[str, Any] = field(default_factory=dict)
    snapshots: dict[str, Any] = field(default_factory=dict)


def snapshot(client: Any, db: Path) -> dict[str, Any]:
    """Everything a GC could change: images with their tags, containers with state, usage rows."""
    images = {i["Id"]: sorted(i.get("RepoTags") or []) for i in client.api.images()}
    containers = {c["Id"]: (c["State"], c.get("Labels") or {}) for c in client.api.containers(all=True)}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        uses = sorted(conn.execute("SELECT image_id, last_used FROM uses").fetchall())
    return {"images": images, "containers": containers, "uses": uses}


def side_by_side(*calls: Callable[[], Any]) -> list[Any]:
    """Independent calls (each mostly a command line's start-up) at once; their results in order."""
    with ThreadPoolExecutor(len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


def run_gc(scene: Scene, client: Any, *args: str, as_json: bool = True) -> Any:
    """The real command line, with every image it did not create leased for the run."""
    return run_gcs(scene, client, (args, as_json))[0]


def run_gcs(scene: Scene, client: Any, *runs: tuple[Sequence[str], bool]) -> list[Any]:
    """Real command lines (args, as_json) side by side, with every image they did not create leased."""
    mine = set(scene.ids.values())
    foreign = [i["Id"] for i in client.api.images() if i["Id"] not in mine]
    env = make_env(COLUMNS="250", AIRDOCK_STATE_DIR=str(scene.db.parent))

    def gc(args: Sequence[str], as_json: bool) -> Any:
        result = airdock(
            "gc", "--high", "off", *FOREIGN_KEEP,
            *(("--json",) if as_json else ()), *args, env=env, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout) if as_json else result.stdout

    with UsageStore(scene.db).lease(foreign, seconds=300):
        return side_by_side(*(lambda run=run: gc(*run) for run in runs))


def gc_args(scene: Scene, budget: int) -> list[str]:
    return [
        "--max-image-bytes", str(budget),
        "--min-age", f"{MIN_AGE_S}s",
        "--max-container-age", "30d",
        "--keep", f"{scene.prefix}/img-{scene.kept_index:02d}:*",
    ]  # fmt: skip


def labelled(started: datetime, task: str) -> dict[str, str]:
    return {
        MANAGED_LABEL: "true",
        LABEL_DAG_ID: "gc_test",
        LABEL_TASK_ID: task,
        LABEL_RUN_ID: "manual__1",
        LABEL_STARTED_AT: started.isoformat(),
    }


@pytest.fixture(scope="module")
def scene(docker_client: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    client = docker_client
    prefix = f"airdock-gc-{uuid.uuid4().hex[:8]}"
    scene = Scene(prefix=prefix, db=tmp_path_factory.mktemp("gc") / "usage.sqlite")
    store = UsageStore(scene.db)
    rng = random.Random(20261127)
    try:
        yield from _build_and_run(scene, client, store, rng)
    finally:
        for container_id in scene.containers.values():
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_container(container_id, force=True)  # the test's own containers
        for image_id in set(scene.ids.values()):
            with contextlib.suppress(docker.errors.NotFound):
                client.api.remove_image(image_id, force=True)  # the test's own images only


@dataclass
class Made:
    """One image of the scene's archive: a single layer of its own, with a creation date."""

    tags: list[str]
    payload: bytes
    created: float
    runnable: bool = False  # busybox in the layer: a container runs from it


def _layer(image: Made, busybox: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        files = [("payload.bin", image.payload)]
        if image.runnable:
            files.append(("bin/busybox", busybox))
        for name, content in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o755
            tar.addfile(info, io.BytesIO(content))
        for applet in ("sh", "cat", "echo", "sleep", "ls", "true") if image.runnable else ():
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return out.getvalue()


def image_archive(client: Any, images: Sequence[Made]) -> tuple[bytes, list[str]]:
    """A ``docker load`` archive of ``images``, and their ids.

    Loaded, an image keeps its config's creation date and gets no LastTagTime; a tag named twice
    ends on the later image.
    """
    busybox = static_busybox().read_bytes()
    arch = client.version()["Arch"]
    archive, manifest, ids = io.BytesIO(), [], []
    with tarfile.open(fileobj=archive, mode="w") as tar:

        def add(name: str, content: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))

        for n, image in enumerate(images):
            layer = _layer(image, busybox)
            created = datetime.fromtimestamp(image.created, UTC).isoformat().replace("+00:00", "Z")
            config = json.dumps({
                "architecture": arch, "os": "linux", "created": created, "config": {},
                "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
                "history": [{"created": created, "created_by": "airdock gc test"}],
            }).encode()  # fmt: skip
            digest = hashlib.sha256(config).hexdigest()
            add(f"layer-{n}.tar", layer)
            add(f"{digest}.json", config)
            manifest.append(
                {"Config": f"{digest}.json", "RepoTags": image.tags, "Layers": [f"layer-{n}.tar"]}
            )
            ids.append(f"sha256:{digest}")
        add("manifest.json", json.dumps(manifest).encode())
    return archive.getvalue(), ids


def _build_and_run(scene: Scene, client: Any, store: UsageStore, rng: random.Random) -> Iterator[Scene]:
    prefix = scene.prefix
    now = time.time()
    names = [f"img-{n:02d}" for n in range(N_IMAGES)]
    payload_sizes = [rng.randrange(1_000, 400_000) for _ in names]
    # Last uses: a shuffled history over a month (not creation order); two images without a record.
    days_ago = rng.sample(range(2, 2 + N_IMAGES), N_IMAGES)
    used = {name: now - days * DAY for name, days in zip(names[:-2], days_ago, strict=False)}
    by_lru = sorted(used, key=used.__getitem__)
    # Roles, by position in LRU order, so each protection is tested where it matters most.
    role_names = dict(zip(("in_use", "kept", "old_labelled", "recent_labelled"), by_lru[:4], strict=True))
    tags = {name: [f"{prefix}/{name}:v1"] for name in names}
    # Three images lose their only tag to another image: dangling. d0..d2's tags move onto LRU
    # victims (two tags each): the archive names each tag first on d<j>, then on its victim.
    for j, victim in enumerate(by_lru[4:7]):
        tags[victim].append(f"{prefix}/d{j}:v1")
    long_ago = now - 365 * DAY  # before every recorded use
    made = [Made([f"{prefix}/d{j}:v1"], os.urandom(5_000 * (j + 1)), long_ago) for j in range(3)]
    made += [
        Made(
            tags[name],
            os.urandom(size),
            # Made in name order, a minute apart; the two unrecorded ones yesterday: newer than any use.
            long_ago + n * 60 if name in used else now - DAY,
            runnable=name in (role_names["in_use"], role_names["old_labelled"]),
        )
        for n, (name, size) in enumerate(zip(names, payload_sizes, strict=True))
    ]
    archive, ids = image_archive(client, made)
    for image_id, image in zip(ids, made, strict=True):
        scene.ids[image.tags[0].removeprefix(f"{prefix}/").removesuffix(":v1")] = image_id
    for message in client.api.load_image(archive):  # all in one go
        assert "error" not in message, message
    for image_id in ids:
        scene.sizes[image_id] = int(client.api.inspect_image(image_id)["Size"])
    scene.dangling = [scene.ids[f"d{j}"] for j in range(3)]
    for j in range(3):
        assert client.api.inspect_image(scene.dangling[j])["RepoTags"] == [], f"d{j} is not dangling"

    for name, when in used.items():
        store.record_use(scene.ids[name], when)
        scene.last_used[scene.ids[name]] = when
    store.record_use(scene.dangling[0], now - 3 * MIN_AGE_S)  # dangling goes first even when used recently
    store.record_use(scene.dangling[2], now - 90 * DAY)
    scene.lru = [scene.ids[name] for name in by_lru]
    scene.kept_index = int(role_names["kept"].split("-")[1])
    in_use, kept, old_labelled, recent_labelled = scene.lru[:4]
    assert [i["Id"] for i in client.api.images(name=f"{prefix}/d0")] == [scene.lru[4]]

    unlabelled = client.api.create_container(in_use, command=["true"])["Id"]
    client.api.start(unlabelled)
    client.api.wait(unlabelled, timeout=60)
    scene.containers["unlabelled"] = unlabelled
    labelled_long_ago = datetime.now(UTC) - timedelta(days=60)
    old = client.api.create_container(
        old_labelled, command=["true"], labels=labelled(labelled_long_ago, "old")
    )["Id"]
    client.api.start(old)
    client.api.wait(old, timeout=60)  # exited: the age rule applies
    scene.containers["old_labelled"] = old
    # A job labelled 60 days ago that still runs (a long training job): the CLI must never stop it.
    long_job = client.api.create_container(
        in_use,
        command=["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"],
        labels=labelled(labelled_long_ago, "long_job"),
    )["Id"]
    client.api.start(long_job)
    scene.containers["long_job"] = long_job
    recent = client.api.create_container(
        recent_labelled, command=["true"], labels=labelled(datetime.now(UTC), "recent")
    )["Id"]
    scene.containers["recent_labelled"] = recent
    scene.ids["in_use"], scene.ids["kept"] = in_use, kept
    scene.ids["old_labelled"], scene.ids["recent_labelled"] = old_labelled, recent_labelled

    # One young image (made and tagged now) that is the "oldest" by record.
    young = import_image(client, f"{prefix}/young:v1", {"payload.bin": os.urandom(300_000)})
    scene.ids["young"] = young.id
    scene.sizes[young.id] = int(young.attrs["Size"])
    store.record_use(young.id, now - 1000 * DAY)

    # 1. The image bytes as the GC counts them (the dry run's "image_bytes" is checked against it).
    scene.image_bytes = image_bytes = unique_bytes(read_inventory(client).images)
    removable = [i for i in scene.lru if i not in (in_use, kept, recent_labelled)]
    # The budget: drop the dangling images and 20 LRU victims, and half of the 21st.
    must_free = sum(scene.sizes[i] for i in scene.dangling) + sum(scene.sizes[i] for i in removable[:20])
    scene.target = image_bytes - must_free - scene.sizes[removable[20]] // 2
    # Dangling ones go oldest first: d1, unrecorded, by its creation date.
    dangling_used = dict(zip(scene.dangling, (now - 3 * MIN_AGE_S, long_ago, now - 90 * DAY), strict=True))
    dangling_order = sorted(scene.dangling, key=lambda i: (dangling_used[i], i))
    scene.expected_removals = dangling_order + removable[:21]

    args = gc_args(scene, scene.target)
    scene.snapshots["before"] = snapshot(client, scene.db)
    scene.runs["dry"], scene.runs["dry_table"], scene.runs["all_images"] = run_gcs(
        scene,
        client,
        ([*args, "--dry-run"], True),
        ([*args, "--dry-run"], False),
        ([*args, "--dry-run", "--all-images"], True),
    )
    scene.snapshots["after_dry"] = snapshot(client, scene.db)
    began = time.monotonic()
    scene.runs["real"] = run_gc(scene, client, *args)
    scene.runs["real_seconds"] = time.monotonic() - began
    scene.snapshots["after"] = snapshot(client, scene.db)
    yield scene


def unique_bytes(images: Iterable[ImageInfo]) -> int:
    """Image bytes as the GC counts them: each layer once, an image without layers as one unit."""
    unique: dict[str, int] = {}
    for image in images:
        for layer in image.layers or ():
            unique[layer.id] = layer.size
        if not image.layers:
            unique[image.id] = image.size
    return sum(unique.values())


def by_id(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in run["images"]}


def test_dry_run_changes_nothing(scene: Scene) -> None:
    before, after = scene.snapshots["before"], scene.snapshots["after_dry"]
    assert after["images"] == before["images"]
    assert after["containers"] == before["containers"]
    assert after["uses"] == before["uses"]
    dry = scene.runs["dry"]
    assert dry["dry_run"] is True
    assert dry["image_bytes"] == scene.image_bytes
    assert dry["reclaimed_bytes"] is None
    planned = [i["id"] for i in dry["images"] if i["verdict"] == "would remove"]
    assert planned == scene.expected_removals
    assert {c["id"]: c["verdict"] for c in dry["containers"]}[
        scene.containers["old_labelled"]
    ] == "would remove"


def test_dry_run_prints_a_table(scene: Scene) -> None:
    text = scene.runs["dry_table"]
    assert "would reclaim" in text
    for column in ("image", "size", "last used", "verdict", "reason"):
        assert column in text
    kept_name = f"{scene.prefix}/img-{scene.kept_index:02d}:v1"
    kept_row = next(line for line in text.splitlines() if kept_name in line)
    assert "kept" in kept_row
    assert "keep pattern" in kept_row
    young_row = next(line for line in text.splitlines() if f"{scene.prefix}/young:v1" in line)
    assert "too young" in young_row


def test_removals_follow_lru_after_dangling_and_meet_the_budget(scene: Scene, docker_client: Any) -> None:
    real = scene.runs["real"]
    removed = [i["id"] for i in real["images"] if i["verdict"] == "removed"]
    assert removed[:3] == scene.expected_removals[:3]
    assert set(removed[:3]) == set(scene.dangling)
    assert removed == scene.expected_removals
    reasons = by_id(real)
    assert all(reasons[i]["reason"] == "dangling" for i in scene.dangling)
    assert all(reasons[i]["reason"] == "least recently used" for i in removed[3:])
    # last-used order, as recorded (not creation order)
    assert [scene.last_used[i] for i in removed[3:]] == sorted(scene.last_used[i] for i in removed[3:])

    present = {i["Id"] for i in docker_client.api.images()}
    assert not present & set(removed)
    assert set(scene.ids.values()) - set(removed) <= present

    # The budget is met, and not overshot: without the last removal it would not have been.
    planned = set(by_id(real))  # images another test adds meanwhile are not the GC's to count
    assert real["target_bytes"] == scene.target
    assert unique_bytes(i for i in read_inventory(docker_client).images if i.id in planned) <= scene.target
    assert real["image_bytes"] - real["reclaimed_bytes"] + reasons[removed[-1]]["frees_bytes"] > scene.target
    assert real["reclaimed_bytes"] == sum(scene.sizes[i] for i in removed)


def test_protected_images_survive(scene: Scene, docker_client: Any) -> None:
    present = {i["Id"] for i in docker_client.api.images()}
    reasons = by_id(scene.runs["real"])
    for role, reason in [
        ("in_use", "in use by 2 containers"),  # an exited unlabelled one and the long job
        ("recent_labelled", "in use by 1 container"),
        ("kept", "keep pattern"),
        ("young", "too young"),
    ]:
        image_id = scene.ids[role]
        assert image_id in present, role
        assert reasons[image_id]["verdict"] == "kept", role
        assert reasons[image_id]["reason"].startswith(reason), (role, reasons[image_id]["reason"])
    # The two images without a usage record were neither pulled nor started by airdock: out of scope.
    for name in (f"img-{N_IMAGES - 2:02d}", f"img-{N_IMAGES - 1:02d}"):
        assert reasons[scene.ids[name]]["reason"] == OUT_OF_SCOPE


def test_the_scope_is_shown_and_all_images_widens_it(scene: Scene) -> None:
    assert scene.runs["real"]["scope"] == "airdock"
    assert scene.runs["real"]["usage_store"] == str(scene.db)
    assert (
        "scope: images airdock pulled or started here, and dangling images (gc_scope=airdock"
        in (scene.runs["dry_table"])
    )
    # Over every image the two unrecorded ones count as used when last tagged or made (loaded, they
    # have no LastTagTime; made yesterday): newest, kept.
    wide = by_id(scene.runs["all_images"])
    assert scene.runs["all_images"]["scope"] == "all"
    for name in (f"img-{N_IMAGES - 2:02d}", f"img-{N_IMAGES - 1:02d}"):
        assert wide[scene.ids[name]]["reason"] == "within budget"


def test_the_sweep_removes_only_old_stopped_labelled_containers(scene: Scene, docker_client: Any) -> None:
    existing = {c["Id"] for c in docker_client.api.containers(all=True)}
    assert scene.containers["unlabelled"] in existing
    assert scene.containers["recent_labelled"] in existing
    assert scene.containers["old_labelled"] not in existing
    verdicts = {c["id"]: c for c in scene.runs["real"]["containers"]}
    assert verdicts[scene.containers["unlabelled"]]["reason"] == "not airdock's"
    assert verdicts[scene.containers["old_labelled"]]["verdict"] == "removed"
    assert verdicts[scene.containers["old_labelled"]]["reason"] == "older than 30d (Airflow not asked)"


def test_a_running_job_labelled_long_ago_is_never_stopped(scene: Scene, docker_client: Any) -> None:
    long_job = scene.containers["long_job"]
    verdicts = {c["id"]: c for c in scene.runs["real"]["containers"]}
    assert verdicts[long_job]["verdict"] == "kept"
    assert verdicts[long_job]["reason"] == "running; Airflow not asked"
    assert docker_client.api.inspect_container(long_job)["State"]["Running"]
    # ...and its image, freed by the sweep, went in the same run, in its LRU place
    assert scene.ids["old_labelled"] in [
        i["id"] for i in scene.runs["real"]["images"] if i["verdict"] == "removed"
    ]


def test_other_images_and_containers_survive(scene: Scene, docker_client: Any) -> None:
    mine = set(scene.ids.values())
    before = {i for i in scene.snapshots["before"]["images"] if i not in mine}
    after = {i["Id"] for i in docker_client.api.images()}
    assert before <= after
    containers_before = set(scene.snapshots["before"]["containers"]) - {scene.containers["old_labelled"]}
    assert scene.containers["long_job"] in containers_before
    assert containers_before <= {c["Id"] for c in docker_client.api.containers(all=True)}


def test_usage_records_of_removed_images_are_forgotten(scene: Scene) -> None:
    uses = {image_id for image_id, _ in scene.snapshots["after"]["uses"]}
    removed = {i["id"] for i in scene.runs["real"]["images"] if i["verdict"] == "removed"}
    assert not uses & removed
    assert scene.ids["kept"] in uses
    print(f"gc removed {len(removed)} images in {scene.runs['real_seconds']:.2f} s (whole CLI run)")


def test_bad_input_is_one_line_and_changes_nothing(scene: Scene, docker_client: Any, tmp_path: Path) -> None:
    db = tmp_path / "usage.sqlite"
    before = {i["Id"] for i in docker_client.api.images()}
    env = make_env(AIRDOCK_STATE_DIR=str(tmp_path))
    cases = [
        (["--max-image-bytes", "lots"], "invalid size 'lots'"),
        (["--min-age", "ten minutes"], "invalid duration 'ten minutes'"),
        (["--high", "150"], "invalid --high '150'"),
        (["--high", "70", "--low", "80"], "--low 80 is above --high 70"),
    ]
    results = side_by_side(
        *(lambda args=args: airdock("gc", *args, env=env, check=False) for args, _ in cases)
    )
    for (args, message), result in zip(cases, results, strict=True):
        assert result.returncode == 1, args
        assert result.stderr.strip().startswith(f"airdock: error: {message}"), result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert {i["Id"] for i in docker_client.api.images()} == before
    assert not db.exists()


def test_inventory_counts_shared_layers_once(docker_client: Any) -> None:
    """Two builds share busybox's layers: the inventory names them by chain id with their sizes."""
    from airdock.hygiene.inventory import over_budget
    from airdock.hygiene.model import GcPolicy
    from airdock.local.offline_images import build_image

    prefix = f"airdock-gc-{uuid.uuid4().hex[:8]}"
    built = []
    try:
        for n in range(2):
            built.append(
                build_image(docker_client, f"{prefix}/built-{n}:v1", files={"/x": os.urandom(50_000)})
            )
        images = {i.id: i for i in read_inventory(docker_client).images}
        first, second = (images[image.id] for image in built)
        for info, image in ((first, built[0]), (second, built[1])):
            assert info.layers, "an image sharing layers must carry its layers"
            assert sum(layer.size for layer in info.layers) == int(image.attrs["Size"])
            assert info.last_tagged is not None
            assert info.tags == (f"{prefix}/built-{built.index(image)}:v1",)
        shared = {layer.id for layer in first.layers} & {layer.id for layer in second.layers}
        assert shared, "the busybox layers should be shared"
        assert first.layers[-1].id != second.layers[-1].id  # each has its own payload layer
        assert over_budget(docker_client, GcPolicy(max_image_bytes=1, high_watermark_percent=None))
        assert not over_budget(docker_client, GcPolicy(max_image_bytes=10**15, high_watermark_percent=None))
    finally:
        for image in built:
            with contextlib.suppress(docker.errors.NotFound):
                docker_client.api.remove_image(image.id, force=True)


def test_a_container_started_after_the_plan_is_not_stopped(docker_client: Any, base_image: str) -> None:
    """The age rule decided on a stopped container; if it runs by the time of removal, it stays."""
    from airdock.hygiene.model import SweepPolicy
    from airdock.hygiene.sweep_apply import apply_sweep, collect_sweep

    long_ago = datetime.now(UTC) - timedelta(days=60)
    container = docker_client.api.create_container(
        base_image,
        command=["sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"],
        labels=labelled(long_ago, "late_start"),
    )["Id"]
    try:
        plan = collect_sweep(docker_client, None, SweepPolicy(), time.time())
        mine = [d for d in plan.removals if d.container.id == container]
        assert [d.reason for d in mine] == ["older than 24h (Airflow not asked)"]
        docker_client.api.start(container)  # someone starts it between plan and apply
        removed = apply_sweep(docker_client, replace(plan, decisions=tuple(mine)), grace_seconds=1)
        assert removed == []
        assert docker_client.api.inspect_container(container)["State"]["Running"]
    finally:
        docker_client.api.remove_container(container, force=True)


def test_gc_refuses_a_usage_store_of_another_engine(docker_client: Any, tmp_path: Path) -> None:
    from airdock.hygiene.state import EngineMark

    store = UsageStore(tmp_path / "usage.sqlite")
    store.claim_engine(EngineMark("OTHER:ENGINE:ID", "unix:///run/other-engine/docker.sock"))
    before = {i["Id"] for i in docker_client.api.images()}
    result = airdock("gc", env=make_env(AIRDOCK_STATE_DIR=str(tmp_path)), check=False)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(
        f"airdock: error: the usage store {store.path} belongs to the Docker engine at "
    )
    assert "unix:///run/other-engine/docker.sock" in lines[0]
    assert f"not to the one at {os.environ['DOCKER_HOST']}" in lines[0], lines[0]
    assert {i["Id"] for i in docker_client.api.images()} == before


def test_gc_creates_and_marks_a_new_store_in_the_state_dir(docker_client: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = airdock("gc", "--dry-run", "--json", env=make_env(AIRDOCK_STATE_DIR=str(state)), check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["usage_store"] == str(state / "usage.sqlite")
    mark = UsageStore(state / "usage.sqlite").engine_mark()
    assert mark is not None
    assert mark.engine_id == docker_client.info()["ID"]
    assert mark.address == os.environ["DOCKER_HOST"]


def test_the_cli_resolves_the_store_like_the_operators(tmp_path: Path) -> None:
    """AIRDOCK_STATE_DIR, else [airdock] state_dir, else XDG's: the rule the operators use too."""

    def store_of(**env: str) -> str:
        result = airdock("gc", "--dry-run", "--json", env=make_env(**env), check=False)
        assert result.returncode == 0, result.stderr
        return str(json.loads(result.stdout)["usage_store"])

    configured = tmp_path / "configured"
    xdg = tmp_path / "xdg"
    from_env, from_config, from_xdg = side_by_side(  # three independent command lines at once
        lambda: store_of(
            AIRDOCK_STATE_DIR=str(tmp_path / "env"), AIRFLOW__AIRDOCK__STATE_DIR=str(configured)
        ),
        lambda: store_of(AIRDOCK_STATE_DIR="", AIRFLOW__AIRDOCK__STATE_DIR=str(configured)),
        lambda: store_of(AIRDOCK_STATE_DIR="", AIRFLOW__AIRDOCK__STATE_DIR="", XDG_STATE_HOME=str(xdg)),
    )
    assert from_env == str(tmp_path / "env" / "usage.sqlite")
    assert from_config == str(configured / "usage.sqlite")
    assert from_xdg == str(xdg / "airdock" / "usage.sqlite")
