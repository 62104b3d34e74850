"""What ``hyperinverter download`` can fetch: the official model zoo, its generators, W-encoders and face
directions, and the auxiliary weights of training and metrics, with their public locations.

The locations (Google Drive ids, URLs) and the paper's figures come from ``data/download_sources.json``,
a copy of the project's reference list of the authors' published files. Each downloadable file is a
:class:`RemoteFile` (one file in the cache's ``files/`` folder, with the check that must pass before it
is used); each model of the zoo is a :class:`ZooModel` (three files converted into one of our folders).
This module only describes; :mod:`.fetch` downloads and :mod:`.install` checks and converts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Iterable, Optional

#: Package data folder of this sub-package.
DATA = "data"
SOURCES_FILE = "download_sources.json"
#: Checks a file can ask for (see :mod:`.checks`).
CHECKS = ("hyperinverter", "w_encoder", "generator", "direction", "ganspace", "lpips_head", "lpips_backbone",
          "arcface", "moco", "inception", "torch_keys", "torch", "dlib", "zip")


@dataclass(frozen=True)
class RemoteFile:
    """One published file.

    Attributes:
        name: our name for it (what ``hyperinverter download NAME`` takes), e.g. ``"stylegan2-ffhq-config-f"``.
        filename: its file name in the cache's ``files/`` folder.
        check: how it is checked before use (one of :data:`CHECKS`).
        use: what it is for (shown by ``--list``).
        drive_id: its Google Drive file id, when it is published there.
        url: its plain HTTPS address, when it has one (preferred over Drive).
        size: its size in bytes, when known (a download of another size is refused).
        manifest: for ``hyperinverter`` / ``w_encoder`` / ``generator`` checks, the package manifest
            (``data/manifests/<manifest>.json``: keys and shapes; or the path of a manifest ``.json``) the file
            must match.
        keys: for ``torch_keys`` checks, tensors the file must hold.
        options: check options (e.g. ``{"net": "alex"}``, ``{"w_dim": 512}``).
    """

    name: str
    filename: str
    check: str
    use: str = ""
    drive_id: Optional[str] = None
    url: Optional[str] = None
    size: Optional[int] = None
    manifest: Optional[str] = None
    keys: tuple[str, ...] = ()
    options: tuple[tuple[str, object], ...] = ()

    def __post_init__(self):
        if self.check not in CHECKS:
            raise ValueError(f"{self.name}: unknown check {self.check!r} (one of {CHECKS})")
        if not self.drive_id and not self.url:
            raise ValueError(f"{self.name}: a remote file needs a drive_id or a url")

    @property
    def source(self) -> str:
        """Where it comes from, for people: the URL, or the Drive address."""
        if self.url:
            return self.url
        return f"https://drive.google.com/uc?id={self.drive_id}"

    def option(self, key: str, default=None):
        """The check option ``key`` (``default`` when not set)."""
        return dict(self.options).get(key, default)


@dataclass(frozen=True)
class ZooModel:
    """A model of the official zoo: a HyperInverter checkpoint, its W-encoder and its StyleGAN2 generator,
    converted into one of our folders named :attr:`name`.

    Attributes:
        name: e.g. ``"faces-hd128"`` (the name ``--model`` and ``from_pretrained`` take afterwards).
        checkpoint: the :class:`RemoteFile` name of the HyperInverter checkpoint.
        w_encoder: the :class:`RemoteFile` name of the W-encoder (E1) checkpoint.
        generator: the :class:`RemoteFile` name of the StyleGAN2 generator.
        directions: :class:`RemoteFile` names of edit directions copied into the model's ``directions/``.
        domain_kind: what the model was trained on, in words (recorded in ``domain.json``).
        aligned_faces: whether its inputs are FFHQ-aligned face crops (``--align`` makes them).
        phase1_psnr: the paper's phase-I (W-encoder) PSNR on its test set in dB, the typical value of
            this domain recorded in ``domain.json`` (None: unknown).
        paper: the paper's figures for this model (``L2``, ``LPIPS``).
        description: one line for ``--list``.
    """

    name: str
    checkpoint: str
    w_encoder: str
    generator: str
    directions: tuple[str, ...] = ()
    domain_kind: str = ""
    aligned_faces: bool = False
    phase1_psnr: Optional[float] = None
    paper: tuple[tuple[str, float], ...] = ()
    description: str = ""

    @property
    def files(self) -> tuple[str, ...]:
        """Every :class:`RemoteFile` name this model needs."""
        return (self.generator, self.w_encoder, self.checkpoint) + tuple(self.directions)


@dataclass
class Catalog:
    """Downloadable files, zoo models and named groups (``hyperinverter download`` resolves names here).

    Attributes:
        files: :class:`RemoteFile` by name.
        models: :class:`ZooModel` by name.
        groups: names that stand for several files or models (e.g. ``"directions-faces"``).
    """

    files: dict[str, RemoteFile] = field(default_factory=dict)
    models: dict[str, ZooModel] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self):
        for model in self.models.values():
            missing = [f for f in model.files if f not in self.files]
            if missing:
                raise ValueError(f"model {model.name}: unknown files {missing}")
        clash = set(self.files) & set(self.models) | (set(self.groups) & (set(self.files) | set(self.models)))
        if clash:
            raise ValueError(f"names used twice in the catalog: {sorted(clash)}")

    @property
    def names(self) -> list[str]:
        """Every name ``download`` accepts."""
        return sorted(set(self.files) | set(self.models) | set(self.groups))

    def expand(self, names: Iterable[str]) -> tuple[list[ZooModel], list[RemoteFile]]:
        """``names`` -> the models to convert and every file to fetch (each once, in a stable order).

        Raises:
            KeyError: a name that is not in the catalog (the message lists close names).
        """
        models: dict[str, ZooModel] = {}
        files: dict[str, RemoteFile] = {}

        def add(name: str, seen: tuple[str, ...] = ()) -> None:
            if name in self.models:
                models[name] = self.models[name]
                for f in self.models[name].files:
                    files.setdefault(f, self.files[f])
            elif name in self.files:
                files.setdefault(name, self.files[name])
            elif name in self.groups and name not in seen:
                for member in self.groups[name]:
                    add(member, seen + (name,))
            else:
                import difflib

                close = difflib.get_close_matches(name, self.names, n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise KeyError(f"{name}: not a downloadable model or file{hint} ('hyperinverter download --list' "
                               "shows them all)")

        for name in names:
            add(name)
        return list(models.values()), list(files.values())


# ------------------------------------------------------------------------------------- the official zoo
def read_sources() -> dict:
    """The packaged copy of the reference list of published files (``data/download_sources.json``)."""
    text = resources.files(__package__).joinpath(DATA, SOURCES_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def _psnr_from_l2(l2: float) -> float:
    """PSNR in dB of images in [-1, 1] from their mean squared error there (``10 log10(4 / mse)``)."""
    return 10 * math.log10(4.0 / l2)


#: The paper's phase-I PSNR (W-encoders alone) where its table gives one; otherwise it is derived from L2.
_PAPER_PHASE1_PSNR = {("faces", "psp"): 18.65, ("faces", "e4e"): 17.61, ("churches", "psp"): 15.15}
_DOMAINS = {
    "faces": dict(generator="stylegan2-ffhq-config-f", kind="FFHQ-aligned faces", aligned=True, trunk="IR-SE-50",
                  gen_manifest="nvlabs_G_ema_config-f_1024", resolution=1024),
    "churches": dict(generator="stylegan2-church-config-f", kind="LSUN churches", aligned=False, trunk="ResNet-34",
                     gen_manifest="nvlabs_G_ema_config-f_256", resolution=256),
}
#: Edit directions of the faces models (InterFaceGAN normals of the official repository).
FACE_DIRECTIONS = ("interfacegan-age", "interfacegan-smile", "interfacegan-rotation")


def _zoo(sources: dict, files: dict[str, RemoteFile], models: dict[str, ZooModel]) -> None:
    for domain, entries in sources["model_zoo"].items():
        info = _DOMAINS[domain]
        gen = entries["generator"]
        files[info["generator"]] = RemoteFile(
            info["generator"], gen["file"], "generator", use=f"StyleGAN2 config-f generator, {info['kind']} "
            f"({info['resolution']} px), NVIDIA pickle", drive_id=gen["drive_id"], manifest=info["gen_manifest"])
        for encoder in ("psp", "e4e"):
            w = entries[f"{encoder}_w_encoder"]
            w_name = f"w-encoder-{domain}-{encoder}"
            files[w_name] = RemoteFile(
                w_name, f"w_encoder_{domain}_{encoder}.pt", "w_encoder", drive_id=w["drive_id"],
                use=f"{encoder} W-encoder (E1, {info['trunk']}) for {domain}; phase I of the {domain} models",
                manifest=f"w_encoder_{domain}")
            phase1 = _PAPER_PHASE1_PSNR.get((domain, encoder), _psnr_from_l2(w["paper_L2"]))
            for hidden in (128, 256):
                entry = entries[f"{encoder}_hyperinverter_hd{hidden}"]
                ckpt = f"hyperinverter-{domain}-{encoder}-hd{hidden}"
                files[ckpt] = RemoteFile(
                    ckpt, f"hyperinverter_{domain}_{encoder}_hd{hidden}.pt", "hyperinverter",
                    drive_id=entry["drive_id"], manifest=f"hyperinverter_{domain}_hd{hidden}",
                    use=f"official HyperInverter checkpoint, {domain}, {encoder}-W, hidden_dim {hidden}")
                name = f"{domain}-hd{hidden}" if encoder == "psp" else f"{domain}-{encoder}-hd{hidden}"
                models[name] = ZooModel(
                    name, checkpoint=ckpt, w_encoder=w_name, generator=info["generator"],
                    directions=FACE_DIRECTIONS if domain == "faces" else (), domain_kind=info["kind"],
                    aligned_faces=info["aligned"], phase1_psnr=round(phase1, 2),
                    paper=(("L2", entry["paper_L2"]), ("LPIPS", entry["paper_LPIPS"])),
                    description=f"HyperInverter {domain} ({info['resolution']} px), {encoder}-W, hidden_dim {hidden}; "
                                f"paper L2 {entry['paper_L2']}, LPIPS {entry['paper_LPIPS']}")


def _directions(sources: dict, files: dict[str, RemoteFile]) -> None:
    d = sources["directions"]
    for what in ("age", "smile", "rotation"):
        name = f"interfacegan-{what}"
        files[name] = RemoteFile(name, f"interfacegan_{what}.pt", "direction", url=d[f"interfacegan_{what}"],
                                 use=f"InterFaceGAN {what} direction in W of the FFHQ generator (faces models)",
                                 options=(("w_dim", 512),))
    for domain, key in (("ffhq", "ganspace_ffhq"), ("church", "ganspace_church")):
        name = f"ganspace-{domain}"
        files[name] = RemoteFile(name, f"{domain}_pca.pt", "ganspace", url=d[key], options=(("w_dim", 512),),
                                 use=f"GANSpace PCA of W ({domain} generator): comp, mean, std")


def _auxiliary(sources: dict, files: dict[str, RemoteFile]) -> None:
    a = sources["auxiliary"]
    entries = [
        ("dlib-landmarks", "shape_predictor_68_face_landmarks.dat", "dlib", a["dlib_landmarks_68"],
         "dlib 68-point landmarks: face alignment (align, --align)", {}),
        ("arcface-ir-se50", "model_ir_se50.pth", "arcface", a["arcface_ir_se50"],
         "ArcFace IR-SE-50: identity loss and metric (faces)", {}),
        ("curricularface", "CurricularFace_Backbone.pth", "torch", a["curricularface"],
         "CurricularFace IR-101: the identity metric of the official evaluation", {}),
        ("moco-v2", "moco_v2_800ep_pretrain.pt", "moco", a["moco_v2"], "MoCo v2 ResNet-50: similarity loss (churches)",
         {}),
        ("resnet34-imagenet", "resnet34-333f7ec4.pth", "torch_keys", a["resnet34_imagenet"],
         "torchvision ResNet-34 ImageNet weights: E1/E2 trunk initialisation (churches)", {}),
        ("mtcnn", "mtcnn.zip", "zip", a["mtcnn"], "MTCNN: face crops of the official identity metric", {}),
        ("lpips-alex-head", "lpips_v0.1_alex.pth", "lpips_head", a["lpips_alex_head"],
         "LPIPS v0.1 linear heads for AlexNet (losses.lpips_head_path)", {"net": "alex"}),
        ("lpips-vgg-head", "lpips_v0.1_vgg.pth", "lpips_head", a["lpips_vgg_head"],
         "LPIPS v0.1 linear heads for VGG16", {"net": "vgg"}),
        ("alexnet-imagenet", "alexnet-owt-7be5be79.pth", "lpips_backbone", a["alexnet_imagenet"],
         "torchvision AlexNet ImageNet weights: the LPIPS trunk (losses.lpips_backbone_path)", {"net": "alex"}),
        ("vgg16-imagenet", "vgg16-397923af.pth", "lpips_backbone", a["vgg16_imagenet"],
         "torchvision VGG16 ImageNet weights: the LPIPS vgg trunk", {"net": "vgg"}),
        ("fid-inception", "pt_inception-2015-12-05-6726825d.pth", "inception", a["fid_inception"],
         "pytorch-fid InceptionV3: FID / KID features", {}),
    ]
    for name, filename, check, entry, use, options in entries:
        keys = ("conv1.weight", "layer4.2.bn2.running_var", "fc.weight") if name == "resnet34-imagenet" else ()
        files[name] = RemoteFile(name, filename, check, use=use, drive_id=entry.get("drive_id"), url=entry.get("url"),
                                 keys=keys, options=tuple(options.items()))


@lru_cache(maxsize=1)
def default_catalog() -> Catalog:
    """The official files (see the module docstring); built once per process."""
    sources = read_sources()
    files: dict[str, RemoteFile] = {}
    models: dict[str, ZooModel] = {}
    _zoo(sources, files, models)
    _directions(sources, files)
    _auxiliary(sources, files)
    groups = {
        "directions-faces": FACE_DIRECTIONS + ("ganspace-ffhq",),
        "lpips": ("alexnet-imagenet", "lpips-alex-head"),
        "auxiliary": ("dlib-landmarks", "arcface-ir-se50", "moco-v2", "alexnet-imagenet", "lpips-alex-head",
                      "fid-inception"),
    }
    return Catalog(files=files, models=models, groups=groups)


__all__ = ["CHECKS", "Catalog", "FACE_DIRECTIONS", "RemoteFile", "ZooModel", "default_catalog", "read_sources"]
