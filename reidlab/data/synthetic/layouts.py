"""What a synthetic tree holds, per format: captures, the records written from them, split files.

A :class:`Capture` is one moment seen by one camera (rendered once, in the modalities it has);
an :class:`Entry` is one record written to disk from a capture — a query that the real format
stores as a copy of a gallery sample (RGBNT100, MSVR310, WMVeID863) is a second entry of the same
capture; RegDB's simultaneous visible/thermal pair is one capture written as two records.

File and folder names follow the loaders in :mod:`reidlab.data.formats` (the source of truth),
and :func:`expected_parts` predicts, from the entries alone, the records each loader returns
with the manifest's ``loader_options``, so the manifest's counts are computed, not hard-coded.

Every random choice about identity ``i`` comes from a generator keyed on ``(seed, format, i)``:
the plan of one identity does not depend on how many others there are or in which order they
are visited.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from reidlab.data.records import NIR, RGB, TIR, ImageRef, Record
from reidlab.data.synthetic.identities import PERSON, VEHICLE, Identity
from reidlab.data.synthetic.render import VIEWS
from reidlab.data.synthetic.seeding import rng_for

ALL = (RGB, NIR, TIR)


@dataclass(frozen=True)
class Capture:
    identity: int                    # index into the identity list
    number: int                      # capture number within the identity (seeds its rendering)
    camera: int                      # camera number as written in the file name
    view: str                        # front | back | side
    mirror: bool
    night: bool
    background: int                  # background layout id
    modalities: tuple[str, ...]      # what is rendered
    scene: int | None = None


@dataclass(frozen=True)
class Entry:
    capture: Capture
    part: str                        # train | val | test | query | gallery (metadata "split" column)
    pid: int
    camid: int                       # as the loader reports it
    files: dict[str, str]            # modality -> path relative to the dataset dir
    tiled: bool = False              # RGBNT100: one side-by-side RGB|NIR|TIR file for all modalities

    @property
    def key(self) -> str:
        return next(self.files[m] for m in ALL if m in self.files)

    def record(self) -> Record:
        if self.tiled:
            path = self.files[RGB]
            images = {m: ImageRef(path, tile=i, num_tiles=3) for i, m in enumerate(ALL)}
        else:
            images = {m: ImageRef(p) for m, p in self.files.items()}
        return Record(images=images, pid=self.pid, camid=self.camid, sceneid=self.capture.scene, key=self.key)


@dataclass
class Layout:
    """Everything one synthetic tree holds, before rendering."""

    benchmark: str
    entries: list[Entry]
    split_files: dict[str, str] = field(default_factory=dict)   # relative path -> text (exact bytes)
    parts: dict[str, list[Entry]] = field(default_factory=dict)  # what the loader returns (train/query/gallery)


@dataclass(frozen=True)
class FormatSpec:
    """Defaults and conventions of one format's synthetic tree."""

    benchmark: str
    dataset_dir: str
    kind: str                         # person | vehicle
    modalities: tuple[str, ...]
    image_size: tuple[int, int]       # (height, width) of one modality image
    num_ids: int                      # identities in the whole tree
    test_fraction: float              # share of identities in the test split
    cameras: int
    night_rate: float                 # expected share of night captures (for night-boosted degradations)
    shared_pattern: bool              # cross-modal benchmark: the texture cue is printed in every modality
    loader_options: dict
    protocol: str
    layout: str
    plan: Callable[[FormatSpec, list[Identity], int], Layout]


@dataclass(frozen=True)
class _Camera:
    views: np.ndarray                 # probabilities of front/back/side
    night: float
    background: int


def _camera(seed: int, spec: FormatSpec, camera: int, night: float | None = None) -> _Camera:
    rng = rng_for(seed, spec.benchmark, "camera", camera)
    views = rng.dirichlet(np.full(3, 1.2))
    night = float(np.clip(rng.normal(spec.night_rate, 0.12), 0, 0.9)) if night is None else night
    return _Camera(views, night, camera)


def _split_ids(spec: FormatSpec, identities: list[Identity]) -> tuple[list[Identity], list[Identity]]:
    n_test = max(1, round(len(identities) * spec.test_fraction))
    if len(identities) - n_test < 1:
        raise ValueError(f"{spec.benchmark}: num_ids={len(identities)} is too small; need at least 2 identities")
    return identities[: len(identities) - n_test], identities[len(identities) - n_test:]


def _multi_camera_captures(seed: int, spec: FormatSpec, ident: Identity, cameras: list[int],
                           samples: int, min_cams: int = 2, max_cams: int = 4) -> list[Capture]:
    """An identity seen by 2-4 cameras (each at least once), ``samples`` ± 2 captures in all."""
    rng = rng_for(seed, spec.benchmark, "plan", ident.index)
    chosen = sorted(rng.choice(cameras, size=int(rng.integers(min_cams, min(max_cams, len(cameras)) + 1)),
                               replace=False).tolist())
    count = max(len(chosen), samples + int(rng.integers(-2, 3)))
    sequence = chosen + rng.choice(chosen, size=count - len(chosen)).tolist()
    captures = []
    for number, cam in enumerate(sorted(sequence)):
        profile = _camera(seed, spec, cam)
        captures.append(Capture(ident.index, number, cam, VIEWS[rng.choice(3, p=profile.views)],
                                bool(rng.random() < 0.5), bool(rng.random() < profile.night),
                                profile.background, spec.modalities))
    return captures


def _query_subset(seed: int, spec: FormatSpec, ident: Identity, captures: list[Capture]) -> list[Capture]:
    """About one capture in five (at least one) of a test identity, copied into the query folder."""
    rng = rng_for(seed, spec.benchmark, "query", ident.index)
    k = max(1, len(captures) // 5)
    picks = sorted(rng.choice(len(captures), size=k, replace=False).tolist())
    return [captures[i] for i in picks]


# ---------------------------------------------------------------------------------------------
# Multi-modal formats


def plan_rgbnt201(spec: FormatSpec, identities: list[Identity], seed: int) -> Layout:
    train, test = _split_ids(spec, identities)
    entries = []
    for part, folder, group in (("train", "train_171", train), ("test", "test", test)):
        for ident in group:
            pid = ident.index + 1
            per_cam: dict[int, int] = {}
            for cap in _multi_camera_captures(seed, spec, ident, list(range(1, spec.cameras + 1)), 12):
                y = per_cam[cap.camera] = per_cam.get(cap.camera, -1) + 1
                name = f"{pid:06d}_cam{cap.camera}_0_{y:02d}.jpg"
                files = {m: f"{folder}/{sub}/{name}" for m, sub in zip(ALL, ("RGB", "NI", "TI"), strict=True)}
                entries.append(Entry(cap, part, pid, cap.camera - 1, files))
    tests = [e for e in entries if e.part == "test"]
    return Layout(spec.benchmark, entries, parts={"train": [e for e in entries if e.part == "train"],
                                                  "query": tests, "gallery": tests})


def _rgbnt100_entry(cap: Capture, part: str, folder: str, pid: int) -> Entry:
    path = f"rgbir/{folder}/{pid:04d}_c{cap.camera:04d}_{cap.number:03d}.jpg"
    return Entry(cap, part, pid, cap.camera - 1, {m: path for m in ALL}, tiled=True)


def _msvr310_entry(cap: Capture, part: str, folder: str, pid: int) -> Entry:
    name = f"{pid:04d}_s{cap.scene:03d}_v{cap.camera}_{cap.number:03d}.jpg"
    return Entry(cap, part, pid, cap.camera, _vis_ni_th(folder, pid, name))


def _wmveid863_entry(cap: Capture, part: str, folder: str, pid: int) -> Entry:
    name = f"{pid:04d}_v{cap.camera}_n{int(cap.night)}_{cap.number:03d}.jpg"
    return Entry(cap, part, pid, cap.camera, _vis_ni_th(folder, pid, name))


def _vis_ni_th(folder: str, pid: int, name: str) -> dict[str, str]:
    return {m: f"{folder}/{pid:04d}/{sub}/{name}" for m, sub in zip(ALL, ("vis", "ni", "th"), strict=True)}


def _plan_vehicles(spec: FormatSpec, identities: list[Identity], seed: int, folders: tuple[str, str, str],
                   make_entry: Callable[[Capture, str, str, int], Entry],
                   captures_of: Callable[[Identity], list[Capture]],
                   queries_of: Callable[[Identity, list[Capture]], list[Capture]]) -> Layout:
    """Train and gallery folders of captures; queries are copies of some gallery captures."""
    train_dir, query_dir, gallery_dir = folders
    train, test = _split_ids(spec, identities)
    entries = []
    for part, folder, group in (("train", train_dir, train), ("gallery", gallery_dir, test)):
        for ident in group:
            pid = ident.index + 1
            captures = captures_of(ident)
            entries += [make_entry(c, part, folder, pid) for c in captures]
            if part == "gallery":
                entries += [make_entry(c, "query", query_dir, pid) for c in queries_of(ident, captures)]
    return Layout(spec.benchmark, entries, parts=_by_part(entries))


def plan_rgbnt100(spec: FormatSpec, identities: list[Identity], seed: int) -> Layout:
    cameras = list(range(1, spec.cameras + 1))
    return _plan_vehicles(spec, identities, seed, ("bounding_box_train", "query", "bounding_box_test"),
                          _rgbnt100_entry, lambda i: _multi_camera_captures(seed, spec, i, cameras, 12),
                          lambda i, caps: _query_subset(seed, spec, i, caps))


def plan_wmveid863(spec: FormatSpec, identities: list[Identity], seed: int) -> Layout:
    cameras = list(range(spec.cameras))               # the loader keeps the v<digit> as is: 0-based
    return _plan_vehicles(spec, identities, seed, ("train", "query", "test"),
                          _wmveid863_entry, lambda i: _multi_camera_captures(seed, spec, i, cameras, 12),
                          lambda i, caps: _query_subset(seed, spec, i, caps))


def plan_msvr310(spec: FormatSpec, identities: list[Identity], seed: int) -> Layout:
    """Vehicles met in 2-4 scenes (a place and time: shared background and illumination), each
    scene seen by 2-3 of its views. Same-id same-scene gallery samples are near duplicates of the
    query; the ``msvr310`` protocol removes exactly those. One query per test vehicle and scene."""
    num_scenes = max(6, len(identities) // 6)
    scene_night = {s: bool(rng_for(seed, spec.benchmark, "scene", s).random() < spec.night_rate)
                   for s in range(1, num_scenes + 1)}

    def captures_of(ident: Identity) -> list[Capture]:
        rng = rng_for(seed, spec.benchmark, "plan", ident.index)
        captures: list[Capture] = []
        for scene in sorted(rng.choice(num_scenes, size=int(rng.integers(2, 5)), replace=False) + 1):
            for view in sorted(rng.choice(spec.cameras, size=int(rng.integers(2, 4)), replace=False).tolist()):
                profile = _camera(seed, spec, view)
                for _ in range(int(rng.integers(1, 3))):
                    captures.append(Capture(ident.index, len(captures), view, VIEWS[rng.choice(3, p=profile.views)],
                                            bool(rng.random() < 0.5), scene_night[int(scene)], 100 * int(scene) + view,
                                            spec.modalities, int(scene)))
        return captures

    def queries_of(ident: Identity, captures: list[Capture]) -> list[Capture]:
        rng = rng_for(seed, spec.benchmark, "query", ident.index)
        queries = []
        for scene in sorted({c.scene for c in captures}):
            in_scene = [c for c in captures if c.scene == scene]
            queries.append(in_scene[int(rng.integers(len(in_scene)))])
        return queries

    return _plan_vehicles(spec, identities, seed, ("bounding_box_train", "query3", "bounding_box_test"),
                          _msvr310_entry, captures_of, queries_of)


def _by_part(entries: list[Entry]) -> dict[str, list[Entry]]:
    return {part: [e for e in entries if e.part == part] for part in ("train", "query", "gallery")}


# ---------------------------------------------------------------------------------------------
# Cross-modal formats

SYSU_VISIBLE, SYSU_INFRARED, SYSU_INDOOR = (1, 2, 4, 5), (3, 6), (1, 2)


def _id_line(ids: list[int]) -> str:
    return ",".join(str(i) for i in sorted(ids)) + "\n"


def plan_sysu_mm01(spec: FormatSpec, identities: list[Identity], seed: int) -> Layout:
    """Persons seen by 2-4 visible cameras (at least one indoor: 1 or 2) and one or both infrared
    cameras (3 indoor, 6 outdoor; captured in the dark), 3-5 images per camera. Identities are
    spread over ``exp/{train,val,test}_id.txt`` at random, as in the real files."""
    n = len(identities)
    order = rng_for(seed, spec.benchmark, "split").permutation(n)
    n_test = max(1, round(n * spec.test_fraction))
    n_val = max(1, round((n - n_test) * 0.25)) if n - n_test > 1 else 0
    if n - n_test - n_val < 1:
        raise ValueError(f"sysu_mm01: num_ids={n} is too small; need at least 2 identities")
    test_ids = {int(i) + 1 for i in order[:n_test]}
    val_ids = {int(i) + 1 for i in order[n_test:n_test + n_val]}
    entries = []
    for ident in identities:
        pid = ident.index + 1
        part = "test" if pid in test_ids else "val" if pid in val_ids else "train"
        rng = rng_for(seed, spec.benchmark, "plan", ident.index)
        indoor = int(rng.choice(SYSU_INDOOR))
        others = [c for c in SYSU_VISIBLE if c != indoor]
        visible = [indoor, *rng.choice(others, size=int(rng.integers(1, 4)), replace=False).tolist()]
        infrared = list(SYSU_INFRARED) if rng.random() < 0.5 else [int(rng.choice(SYSU_INFRARED))]
        number = 0
        for cam in sorted(visible + infrared):
            modality = RGB if cam in SYSU_VISIBLE else NIR
            profile = _camera(seed, spec, cam, night=1.0 if modality == NIR else 0.0)
            for j in range(1, int(rng.integers(3, 6)) + 1):
                cap = Capture(ident.index, number, cam, VIEWS[rng.choice(3, p=profile.views)],
                              bool(rng.random() < 0.5), modality == NIR, profile.background, (modality,))
                number += 1
                role = part if part != "test" else "query" if modality == NIR else "gallery"
                entries.append(Entry(cap, role, pid, cam, {modality: f"cam{cam}/{pid:04d}/{j:04d}.jpg"}))
    ids = {"train": set(range(1, n + 1)) - test_ids - val_ids, "val": val_ids, "test": test_ids}
    split_files = {f"exp/{p}_id.txt": _id_line(sorted(ids[p])) for p in ("train", "val", "test")}
    split_files["exp/available_id.txt"] = _id_line(list(range(1, n + 1)))
    # The loader's single-shot gallery holds one image per (test id, all-search visible camera).
    single_shot = {}
    for e in entries:
        if e.part == "gallery":
            single_shot.setdefault((e.pid, e.camid), e)
    parts = {"train": [e for e in entries if e.part in ("train", "val")],
             "query": [e for e in entries if e.part == "query"], "gallery": list(single_shot.values())}
    return Layout(spec.benchmark, entries, split_files, parts)


REGDB_TRIALS = range(1, 11)


def plan_regdb(spec: FormatSpec, identities: list[Identity], seed: int) -> Layout:
    """Ten simultaneous visible/thermal pairs per person (one dual camera, one place: the pair
    shares its pose), numbered like the real files; ten random half/half id splits as idx lists
    (lines ``<path> <label>``, labels 0.. in listing order, CRLF endings, like the shipped lists)."""
    if len(identities) < 2:
        raise ValueError("regdb: num_ids must be at least 2 (each trial splits the ids in half)")
    entries: list[Entry] = []
    files_of: dict[tuple[int, str], list[str]] = {}
    for ident in identities:
        pid = ident.index + 1
        rng = rng_for(seed, spec.benchmark, "plan", ident.index)
        night = bool(rng.random() < spec.night_rate)
        for k in range(10):
            cap = Capture(ident.index, k, 0, ident.facing, False, night, 0, (RGB, TIR))
            number = 10 * ident.index + k + 1
            for modality, sub, letter in ((RGB, "Visible", "v"), (TIR, "Thermal", "t")):
                path = f"{sub}/{pid}/{ident.gender}_{ident.facing}_{letter}_{number:05d}_{pid}.bmp"
                files_of.setdefault((pid, modality), []).append(path)
                entries.append(Entry(cap, "", pid, 1 if modality == RGB else 2, {modality: path}))
    split_files = {}
    trial_train: dict[int, set[int]] = {}
    pids = [i.index + 1 for i in identities]
    for trial in REGDB_TRIALS:
        order = [pids[i] for i in rng_for(seed, spec.benchmark, "trial", trial).permutation(len(pids))]
        half = len(order) // 2
        trial_train[trial] = set(order[:half])
        for part, group in (("train", order[:half]), ("test", order[half:])):
            for modality, name in ((RGB, "visible"), (TIR, "thermal")):
                lines = [f"{path} {label}" for label, pid in enumerate(group) for path in files_of[pid, modality]]
                split_files[f"idx/{part}_{name}_{trial}.txt"] = "".join(line + "\r\n" for line in lines)
    trial = spec.loader_options["trial"]
    entries = [Entry(e.capture, _regdb_role(e, trial_train[trial]), e.pid, e.camid, e.files) for e in entries]
    return Layout(spec.benchmark, entries, split_files, _by_part(entries))


def _regdb_role(entry: Entry, train_ids: set[int]) -> str:
    if entry.pid in train_ids:
        return "train"
    return "query" if RGB in entry.files else "gallery"      # visible_to_thermal


# ---------------------------------------------------------------------------------------------

SPECS: dict[str, FormatSpec] = {
    "rgbnt201": FormatSpec(
        "rgbnt201", "RGBNT201", PERSON, ALL, (128, 64), 72, 1 / 3, 4, 0.25, False, {}, "market",
        "RGBNT201/{train_171,test}/{RGB,NI,TI}/<pid6>_cam<c>_0_<yy>.jpg   (query = gallery = test)",
        plan_rgbnt201),
    "rgbnt100": FormatSpec(
        "rgbnt100", "RGBNT100", VEHICLE, ALL, (64, 128), 72, 1 / 3, 8, 0.35, False, {}, "market",
        "RGBNT100/rgbir/{bounding_box_train,query,bounding_box_test}/<pid4>_c<cam4>_<n3>.jpg   "
        "(RGB|NIR|TIR side by side; query files are copies of gallery files)",
        plan_rgbnt100),
    "msvr310": FormatSpec(
        "msvr310", "MSVR310", VEHICLE, ALL, (64, 128), 72, 1 / 3, 8, 0.4, False, {}, "msvr310",
        "MSVR310/{bounding_box_train,query3,bounding_box_test}/<vid4>/{vis,ni,th}/<vid4>_s<scene3>_v<view>_<n3>.jpg"
        "   (one query per test vehicle and scene, copied from the gallery)",
        plan_msvr310),
    "wmveid863": FormatSpec(
        "wmveid863", "WMVEID863", VEHICLE, ALL, (64, 128), 72, 1 / 3, 8, 0.5, False, {}, "market",
        "WMVEID863/{train,query,test}/<vid4>/{vis,ni,th}/<vid4>_v<cam>_n<night>_<n3>.jpg"
        "   (query files are copies of test = gallery files)",
        plan_wmveid863),
    "sysu_mm01": FormatSpec(
        "sysu_mm01", "SYSU-MM01", PERSON, (RGB, NIR), (128, 64), 80, 0.35, 6, 0.35, True,
        {"mode": "all", "trial": 0}, "sysu_all",
        "SYSU-MM01/cam{1..6}/<pid4>/<n4>.jpg (visible 1,2,4,5; infrared 3,6) + exp/{train,val,test,available}_id.txt",
        plan_sysu_mm01),
    "regdb": FormatSpec(
        "regdb", "RegDB", PERSON, (RGB, TIR), (128, 64), 60, 0.5, 2, 0.3, True,
        {"trial": 1, "direction": "visible_to_thermal"}, "regdb",
        "RegDB/{Visible,Thermal}/<id>/<gender>_<view>_{v,t}_<n5>_<id>.bmp"
        " + idx/{train,test}_{visible,thermal}_{1..10}.txt",
        plan_regdb),
}


def expected_parts(layout: Layout) -> dict[str, list[Record]]:
    """The records the format's loader should return with the spec's ``loader_options``."""
    return {part: [e.record() for e in entries] for part, entries in layout.parts.items()}
