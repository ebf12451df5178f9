"""Finding and assembling voices: the embedded voice, NVIDIA's LJSpeech pair, voice folders."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import VoiceDefaults, check_value
from .errors import ConfigError, TTSError, UnknownVoiceError, VoiceError

if TYPE_CHECKING:
    import torch

    from .vocoders import Vocoder

log = logging.getLogger(__name__)

EMBEDDED_DIR = Path(__file__).parent / "data" / "voices"  # voices shipped inside the package
EMBEDDED_VOICE = "ttscli-en"
NGC = "https://api.ngc.nvidia.com/v2/models/nvidia"


@dataclass(frozen=True)
class NvidiaVoice:
    """A published NVIDIA Tacotron2 + vocoder (WaveGlow or HiFi-GAN), as torch.hub downloads it."""

    name: str
    precision: str
    tacotron2_url: str
    vocoder_url: str
    vocoder: str = "waveglow"  # the vocoder's kind, and its role in ``files``

    @property
    def waveglow_url(self) -> str:  # the name before HiFi-GAN voices
        return self.vocoder_url

    @property
    def urls(self) -> dict[str, str]:
        """Each file's URL by its role ("tacotron2", "waveglow" or "hifigan")."""
        return {"tacotron2": self.tacotron2_url, self.vocoder: self.vocoder_url}

    @property
    def files(self) -> dict[str, str]:
        return {role: url.rsplit("/", 1)[1] for role, url in self.urls.items()}


NVIDIA_VOICES = {
    v.name: v
    for v in (
        NvidiaVoice(
            "nvidia-ljspeech",
            "fp32",
            f"{NGC}/tacotron2_pyt_ckpt_fp32/versions/19.09.0/files/nvidia_tacotron2pyt_fp32_20190427",
            f"{NGC}/waveglow_ckpt_fp32/versions/19.09.0/files/nvidia_waveglowpyt_fp32_20190427",
        ),
        NvidiaVoice(
            "nvidia-ljspeech-fp16",
            "fp16",
            f"{NGC}/tacotron2_pyt_ckpt_amp/versions/19.09.0/files/nvidia_tacotron2pyt_fp16_20190427",
            f"{NGC}/waveglow_ckpt_amp/versions/19.09.0/files/nvidia_waveglowpyt_fp16_20190427",
        ),
        NvidiaVoice(
            "nvidia-ljspeech-hifigan",
            "fp32",
            f"{NGC}/tacotron2_pyt_ckpt_fp32/versions/19.09.0/files/nvidia_tacotron2pyt_fp32_20190427",
            f"{NGC}/dle/hifigan__pyt_ckpt_mode-finetune_ds-ljs22khz/versions/21.08.0_amp/files/"
            "hifigan_gen_checkpoint_10000_ft.pt",
            vocoder="hifigan",
        ),
    )
}
HIFIGAN_VOICE = "nvidia-ljspeech-hifigan"

NVIDIA_DEFAULTS = VoiceDefaults(
    sigma=0.6,
    denoiser_strength=0.01,
    max_decoder_steps=2000,
    gate_threshold=0.5,
    prenet_dropout=0.5,
    pause_seconds=0.3,
    batch_size=4,
)


@dataclass
class Voice:
    """A Tacotron2, a vocoder, and the voice's defaults (name, sample rate, front end...)."""

    name: str
    tacotron2: torch.nn.Module
    vocoder: Vocoder | Any
    sample_rate: int = 22050
    frontend: str = "dle"
    defaults: VoiceDefaults = field(default_factory=VoiceDefaults)
    files: dict[str, str] = field(default_factory=dict)
    chosen_because: str | None = None  # why, when it is the default voice


def ttscli_home() -> Path:
    """TTSCLI_HOME, else $XDG_CACHE_HOME/ttscli, else ~/.cache/ttscli."""
    if os.environ.get("TTSCLI_HOME"):
        return Path(os.environ["TTSCLI_HOME"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "ttscli"


def torch_hub_checkpoints() -> Path:
    """Where NVIDIA's torch.hub entrypoints cache their files: <torch_home>/checkpoints."""
    if os.environ.get("TORCH_HOME"):
        home = Path(os.environ["TORCH_HOME"]).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = Path(xdg) / "torch"
    return home / "checkpoints"


def search_dirs() -> list[Path]:
    """Folders searched for NVIDIA's files, in order."""
    return [ttscli_home(), torch_hub_checkpoints()]


def find_file(file_name: str) -> Path | None:
    for folder in search_dirs():
        candidate = folder / file_name
        if candidate.is_file():
            return candidate
    return None


@dataclass
class VoiceInfo:
    """One row of `ttscli voices`."""

    name: str
    kind: str
    precision: str
    status: str  # installed / downloadable / missing
    location: str | None
    size_bytes: int | None
    files: dict[str, str] = field(default_factory=dict)


def _voice_dirs() -> list[Path]:
    dirs = []
    for root in (ttscli_home() / "voices", EMBEDDED_DIR):
        if root.is_dir():
            dirs.extend(sorted(p for p in root.iterdir() if (p / "voice.json").is_file()))
    return dirs


def list_voices() -> list[VoiceInfo]:
    """Every voice ttscli knows: NVIDIA's pair, voice folders (user's, then embedded)."""
    infos = []
    for voice in NVIDIA_VOICES.values():
        found = {role: find_file(name) for role, name in voice.files.items()}
        if all(found.values()):
            status = "installed"
            location = str(found["tacotron2"].parent)
            size = sum(p.stat().st_size for p in found.values())
        else:
            status, location, size = "downloadable", None, None
        infos.append(
            VoiceInfo(
                voice.name,
                "nvidia",
                voice.precision,
                status,
                location,
                size,
                {k: str(v) for k, v in found.items() if v},
            )
        )
    seen = set()
    for folder, config in _readable_voice_dirs():
        name = config.get("name", folder.name)
        if name in seen:
            continue
        seen.add(name)
        files = [p for p in folder.iterdir() if p.suffix == ".pt"]
        infos.append(
            VoiceInfo(
                name,
                "embedded" if folder.parent == EMBEDDED_DIR else "folder",
                config.get("precision", "fp32"),
                "installed" if (folder / "tacotron2.pt").is_file() else "missing",
                str(folder),
                sum(p.stat().st_size for p in files),
            )
        )
    if EMBEDDED_VOICE not in seen:
        infos.append(VoiceInfo(EMBEDDED_VOICE, "embedded", "fp16", "missing", None, None))
    return infos


def _readable_voice_dirs() -> list[tuple[Path, dict]]:
    """Voice folders with their voice.json; a broken one is skipped with a warning, so it
    cannot stop every other voice from loading (naming it explicitly still reports why)."""
    found = []
    for folder in _voice_dirs():
        try:
            found.append((folder, _read_voice_json(folder)))
        except VoiceError as exc:
            log.warning("skipping voice folder %s: %s", folder, exc)
    return found


def default_voice_name(device: str | None = None) -> str:
    """The voice used when none is named (see ``default_voice_choice``)."""
    return default_voice_choice(device)[0]


def default_voice_choice(device: str | None = None) -> tuple[str, str]:
    """(name, why) of the default voice: NVIDIA's when installed, else the embedded one.

    On a CPU NVIDIA's Tacotron2 + HiFi-GAN comes first (~10x faster than + WaveGlow there);
    on a GPU (``device`` "auto" with CUDA present, or "cuda...") WaveGlow's voices do.
    """
    installed = [
        i.name for i in list_voices() if i.status == "installed" and i.name in NVIDIA_VOICES
    ]
    if not installed:
        return EMBEDDED_VOICE, "no NVIDIA voice is installed"
    if _on_gpu(device):
        waveglow = [n for n in installed if NVIDIA_VOICES[n].vocoder == "waveglow"]
        name = (waveglow or installed)[0]
        return name, f"the first NVIDIA voice installed ({', '.join(installed)}), on a GPU"
    if HIFIGAN_VOICE in installed:
        return HIFIGAN_VOICE, "installed, and on a CPU HiFi-GAN is ~10x faster than WaveGlow"
    return installed[0], f"the first NVIDIA voice installed ({', '.join(installed)})"


def _on_gpu(device: str | None) -> bool:
    if device and str(device).startswith("cuda"):
        return True
    if device not in (None, "auto"):
        return False
    import torch

    return torch.cuda.is_available()


def _read_voice_json(folder: Path) -> dict:
    try:
        config = json.loads((folder / "voice.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VoiceError(f"cannot read {folder / 'voice.json'}: {exc}") from exc
    if not isinstance(config, dict):
        raise VoiceError(f"{folder / 'voice.json'} must hold a JSON object")
    return config


def _defaults_from(config: dict, base: VoiceDefaults, where: Path | None = None) -> VoiceDefaults:
    """The voice's defaults: voice.json's values over ``base``, each checked for its type."""
    values = {}
    for key in VoiceDefaults.__dataclass_fields__:
        if config.get(key) is not None:
            values[key] = _typed(config[key], type(getattr(base, key)), key, where)
    return VoiceDefaults(**{**base.__dict__, **values})


def _typed(value: object, kind: type, key: str, where: Path | None) -> object:
    """value as kind (bool, or a number checked against ``ttscli.config.RANGES``; a whole float
    may be an int), or a VoiceError naming the file."""
    if kind is bool:
        problem = None if isinstance(value, bool) else "must be true or false"
    else:
        problem = check_value(key, value, whole_floats=True)
    if problem:
        source = f"{where / 'voice.json'}: " if where else ""
        raise VoiceError(f"{source}{key!r} {problem}, not {value!r}")
    return value if kind is bool else kind(value)


def _griffin_lim_from(config: dict, folder: Path | None):
    from .vocoders import GriffinLimVocoder

    settings = config.get("griffin_lim") or {}
    if not isinstance(settings, dict):
        raise VoiceError(f"'griffin_lim' must be an object, not {settings!r}")
    return GriffinLimVocoder(
        n_iter=_typed(settings.get("n_iter", 32), int, "griffin_lim.n_iter", folder),
        momentum=_typed(settings.get("momentum", 0.99), float, "griffin_lim.momentum", folder),
        sample_rate=_typed(config.get("sample_rate", 22050), int, "sample_rate", folder),
    )


def _hifigan_in(folder: Path) -> Path:
    """A voice folder's HiFi-GAN: its hifigan.pt, else the one jik876 release folder inside."""
    from .checkpoints import find_generator_file

    if (folder / "hifigan.pt").is_file():
        return folder / "hifigan.pt"
    releases = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        try:
            find_generator_file(sub)
        except TTSError:
            continue
        releases.append(sub)
    if len(releases) != 1:
        found = f" (it holds {', '.join(p.name for p in releases)})" if releases else ""
        raise VoiceError(
            f"the voice {folder} needs a HiFi-GAN: hifigan.pt, or one jik876 release folder "
            f"(a generator_* file and config.json){found}"
        )
    return releases[0]


def _vocoder_from(config: dict, folder: Path, vocoder: str | Path | None):
    """The vocoder of a voice folder: the given one, else what voice.json names."""
    from .vocoders import load_vocoder

    if vocoder is not None:
        return load_vocoder(vocoder, _sample_rate(config, folder))
    kind = config.get("vocoder", "waveglow")
    if kind == "griffin-lim":
        return _griffin_lim_from(config, folder)
    if kind == "hifigan":
        return load_vocoder(_hifigan_in(folder))
    if kind != "waveglow":
        raise VoiceError(
            f"unknown vocoder {kind!r} (expected 'waveglow', 'hifigan' or 'griffin-lim')"
        )
    path = folder / "waveglow.pt"
    if not path.exists():
        raise VoiceError(f"the voice needs a WaveGlow file, and {path} does not exist")
    return load_vocoder(path)


def _sample_rate(config: dict, folder: Path | None) -> int:
    return _typed(config.get("sample_rate", 22050), int, "sample_rate", folder)


def _assemble(name: str, tacotron2, vocoder, defaults: VoiceDefaults, files: dict, **kw) -> Voice:
    """A Voice whose vocoder reads the Tacotron2's mels (channels and hop), else a VoiceError;
    the vocoder's file is listed in ``files`` under its kind ("waveglow", "hifigan")."""
    from .audio import HOP_LENGTH
    from .vocoders import check_fits, vocoder_role

    check_fits(vocoder, getattr(tacotron2, "n_mel_channels", None), HOP_LENGTH, name)
    source = getattr(vocoder, "source", None)
    if source is not None:
        files = {**files, vocoder_role(vocoder): str(source)}
    return Voice(
        name=name, tacotron2=tacotron2, vocoder=vocoder, defaults=defaults, files=files, **kw
    )


def _with_vocoder_strength(defaults: VoiceDefaults, vocoder) -> VoiceDefaults:
    """``defaults`` with the vocoder's own default denoiser strength, if it has one."""
    strength = getattr(vocoder, "default_denoiser_strength", None)
    if strength is None:
        return defaults
    return dataclasses.replace(defaults, denoiser_strength=strength)


def load_voice_dir(
    folder: Path,
    vocoder: str | Path | None = None,
    tacotron2_path: Path | None = None,
    *,
    waveglow_path: Path | None = None,
) -> Voice:
    """A voice folder: voice.json, tacotron2.pt and its vocoder's file (waveglow.pt, hifigan.pt
    or a jik876 release folder); a given ``tacotron2_path`` or ``vocoder`` (a file, a jik876
    folder or "griffin-lim") replaces the folder's (which is then not read)."""
    from .checkpoints import load_tacotron2

    vocoder = vocoder or waveglow_path
    config = _read_voice_json(folder)
    taco_path = tacotron2_path or folder / "tacotron2.pt"
    if tacotron2_path is None and not taco_path.is_file():
        raise VoiceError(f"voice folder {folder} has no tacotron2.pt")
    voc = _vocoder_from(config, folder, vocoder)
    defaults = _defaults_from(config, VoiceDefaults(), folder)
    if vocoder is not None or config.get("denoiser_strength") is None:
        defaults = _with_vocoder_strength(defaults, voc)
    return _assemble(
        config.get("name", folder.name),
        load_tacotron2(taco_path),
        voc,
        defaults,
        {"voice": str(folder), "tacotron2": str(taco_path)},
        sample_rate=_sample_rate(config, folder),
        frontend=config.get("frontend", "dle"),
    )


def missing_nvidia_message(voice: NvidiaVoice, roles: tuple[str, ...] | None = None) -> str:
    names = " and ".join(f for role, f in voice.files.items() if roles is None or role in roles)
    return (
        f"voice {voice.name!r} is not installed: run `ttscli download {voice.name}`, or put "
        f"{names} in {ttscli_home()} (or {torch_hub_checkpoints()})"
    )


def load_voice(
    name: str | None = None,
    tacotron2_path: str | Path | None = None,
    vocoder: str | Path | None = None,
    *,
    waveglow_path: str | Path | None = None,
    device: str | None = None,
) -> Voice:
    """Assemble a voice: explicit checkpoints, a voice folder, or a known voice name.

    ``vocoder`` is a WaveGlow or HiFi-GAN file (its content decides), a jik876 release folder,
    or "griffin-lim" (``waveglow_path`` is its former name); with a voice ``name`` it replaces
    that voice's vocoder, whose file is then neither needed nor read, and a
    ``tacotron2_path`` replaces its Tacotron2 the same way. Without a name, the default voice
    for ``device`` ("auto", "cpu", "cuda"...) is taken (``Voice.chosen_because`` says why).
    """
    if vocoder is not None and waveglow_path is not None and str(vocoder) != str(waveglow_path):
        raise ConfigError("--vocoder and --waveglow name different vocoders; give one")
    vocoder = vocoder or waveglow_path
    tacotron2_path = Path(tacotron2_path) if tacotron2_path else None
    if tacotron2_path and vocoder is None and not name:
        raise ConfigError(
            "--tacotron2 needs --waveglow too (or --vocoder FILE|griffin-lim, or --voice for "
            "its vocoder)"
        )
    if tacotron2_path and vocoder is not None and not name:
        return _custom_voice(tacotron2_path, vocoder)
    why = None
    if not name:
        name, why = default_voice_choice(device)
    voice = _named_voice(name, tacotron2_path, vocoder)
    voice.chosen_because = why
    return voice


def _custom_voice(tacotron2_path: Path, vocoder: str | Path) -> Voice:
    from .checkpoints import load_tacotron2
    from .vocoders import load_vocoder

    voc = load_vocoder(vocoder)
    return _assemble(
        "custom",
        load_tacotron2(tacotron2_path),
        voc,
        _with_vocoder_strength(NVIDIA_DEFAULTS, voc),
        {"tacotron2": str(tacotron2_path)},
    )


def _named_voice(name: str, tacotron2_path: Path | None, vocoder: str | Path | None) -> Voice:
    folder = _voice_folder(name)
    if folder is not None:
        return load_voice_dir(folder, vocoder, tacotron2_path)
    if name in NVIDIA_VOICES:
        return _load_nvidia(NVIDIA_VOICES[name], vocoder, tacotron2_path)
    if name == EMBEDDED_VOICE:
        raise VoiceError(
            "no voice is installed: the embedded voice ttscli-en is missing from this install, "
            "and NVIDIA's weights were not found; run `ttscli download nvidia-ljspeech` "
            "(needs a network) or pass --tacotron2/--vocoder"
        )
    known = ", ".join([*NVIDIA_VOICES, EMBEDDED_VOICE])
    raise UnknownVoiceError(f"unknown voice {name!r}: not a folder and not a known name ({known})")


def _load_nvidia(
    voice: NvidiaVoice, vocoder: str | Path | None, tacotron2_path: Path | None
) -> Voice:
    """NVIDIA's pair as found in the caches, either part replaced by a given one (whose own
    file is then not needed)."""
    from .checkpoints import load_tacotron2
    from .vocoders import load_vocoder

    found: dict[str, Path | None] = {role: find_file(f) for role, f in voice.files.items()}
    if tacotron2_path:
        found["tacotron2"] = tacotron2_path
    if vocoder is not None:
        del found[voice.vocoder]
    missing = tuple(role for role, path in found.items() if path is None)
    if missing:
        raise VoiceError(missing_nvidia_message(voice, missing))
    voc = load_vocoder(vocoder if vocoder is not None else found[voice.vocoder])
    defaults = NVIDIA_DEFAULTS
    if voice.vocoder == "hifigan" or vocoder is not None:
        defaults = _with_vocoder_strength(defaults, voc)
    return _assemble(
        voice.name,
        load_tacotron2(found["tacotron2"]),
        voc,
        defaults,
        {"tacotron2": str(found["tacotron2"])},
    )


def _voice_folder(name: str) -> Path | None:
    """The folder a voice name means: a path to one, else an installed folder of that name
    (its folder name first, then the name in its voice.json); None for other names."""
    as_path = Path(name).expanduser()
    if as_path.is_dir():
        return as_path
    if name in NVIDIA_VOICES:
        return None
    for folder in _voice_dirs():
        if folder.name == name:
            return folder
    for folder, config in _readable_voice_dirs():
        if config.get("name") == name:
            return folder
    return None


def voice_signature(
    name: str | None = None,
    tacotron2_path: str | Path | None = None,
    vocoder: str | Path | None = None,
    *,
    device: str | None = None,
) -> dict:
    """What the voice `load_voice` would assemble is made of, without loading it: its name and
    the size and modification time of each of its files (so a retrained or replaced voice
    reads as a different one); a vocoder folder counts with the files in it."""
    if not name and not (tacotron2_path and vocoder):
        name = default_voice_name(device)
    paths = [Path(p) for p in (tacotron2_path, vocoder) if p and Path(p).exists()]
    paths = [q for p in paths for q in ([*sorted(p.iterdir())] if p.is_dir() else [p])]
    if name:
        folder = _voice_folder(name)
        if folder is not None:
            paths += [folder / "voice.json", *sorted(folder.glob("*.pt"))]
            paths += sorted(folder.glob("*/generator_*"))  # a jik876 HiFi-GAN inside
        elif name in NVIDIA_VOICES:
            paths += [p for p in map(find_file, NVIDIA_VOICES[name].files.values()) if p]
    files = {}
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        files[str(path.resolve())] = [stat.st_size, stat.st_mtime_ns]
    signature: dict = {"voice": name, "files": files}
    if vocoder and not Path(vocoder).exists():  # "griffin-lim": no file to stand for it
        signature["vocoder"] = str(vocoder)
    return signature
