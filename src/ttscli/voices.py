"""Finding and assembling voices: the embedded voice, NVIDIA's LJSpeech pair, voice folders."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import VoiceDefaults, check_value
from .errors import ConfigError, UnknownVoiceError, VoiceError

if TYPE_CHECKING:
    import torch

    from .vocoders import Vocoder

log = logging.getLogger(__name__)

EMBEDDED_DIR = Path(__file__).parent / "data" / "voices"  # voices shipped inside the package
EMBEDDED_VOICE = "ttscli-en"
NGC = "https://api.ngc.nvidia.com/v2/models/nvidia"


@dataclass(frozen=True)
class NvidiaVoice:
    """A published NVIDIA Tacotron2 + WaveGlow pair, as torch.hub downloads it."""

    name: str
    precision: str
    tacotron2_url: str
    waveglow_url: str

    @property
    def files(self) -> dict[str, str]:
        return {
            "tacotron2": self.tacotron2_url.rsplit("/", 1)[1],
            "waveglow": self.waveglow_url.rsplit("/", 1)[1],
        }


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
    )
}

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


def default_voice_name() -> str:
    """NVIDIA's voice when installed, else the embedded one."""
    for info in list_voices():
        if info.status == "installed" and info.name in NVIDIA_VOICES:
            return info.name
    return EMBEDDED_VOICE


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


def _vocoder_from(config: dict, folder: Path | None, waveglow_path: Path | None):
    from .vocoders import GriffinLimVocoder, WaveGlowVocoder

    kind = config.get("vocoder", "waveglow")
    if waveglow_path is not None:
        kind = "waveglow"
    if kind == "griffin-lim":
        settings = config.get("griffin_lim") or {}
        if not isinstance(settings, dict):
            raise VoiceError(f"'griffin_lim' must be an object, not {settings!r}")
        return GriffinLimVocoder(
            n_iter=_typed(settings.get("n_iter", 32), int, "griffin_lim.n_iter", folder),
            momentum=_typed(settings.get("momentum", 0.99), float, "griffin_lim.momentum", folder),
            sample_rate=_typed(config.get("sample_rate", 22050), int, "sample_rate", folder),
        ), {}
    if kind != "waveglow":
        raise VoiceError(f"unknown vocoder {kind!r} (expected 'waveglow' or 'griffin-lim')")
    path = waveglow_path or (folder / "waveglow.pt" if folder else None)
    if path is None or not Path(path).exists():
        raise VoiceError(f"the voice needs a WaveGlow file, and {path} does not exist")
    from .checkpoints import load_waveglow

    return WaveGlowVocoder(load_waveglow(path)), {"waveglow": str(path)}


def load_voice_dir(
    folder: Path, waveglow_path: Path | None = None, tacotron2_path: Path | None = None
) -> Voice:
    """A voice folder: voice.json, tacotron2.pt and (for WaveGlow voices) waveglow.pt; a given
    ``tacotron2_path`` or ``waveglow_path`` replaces the folder's file (which is then not read)."""
    from .checkpoints import load_tacotron2

    config = _read_voice_json(folder)
    taco_path = tacotron2_path or folder / "tacotron2.pt"
    if tacotron2_path is None and not taco_path.is_file():
        raise VoiceError(f"voice folder {folder} has no tacotron2.pt")
    vocoder, files = _vocoder_from(config, folder, waveglow_path)
    return Voice(
        name=config.get("name", folder.name),
        tacotron2=load_tacotron2(taco_path),
        vocoder=vocoder,
        sample_rate=_typed(config.get("sample_rate", 22050), int, "sample_rate", folder),
        frontend=config.get("frontend", "dle"),
        defaults=_defaults_from(config, VoiceDefaults(), folder),
        files={"voice": str(folder), "tacotron2": str(taco_path), **files},
    )


def missing_nvidia_message(voice: NvidiaVoice) -> str:
    names = " and ".join(voice.files.values())
    return (
        f"voice {voice.name!r} is not installed: run `ttscli download {voice.name}`, or put "
        f"{names} in {ttscli_home()} (or {torch_hub_checkpoints()})"
    )


def load_voice(
    name: str | None = None,
    tacotron2_path: str | Path | None = None,
    waveglow_path: str | Path | None = None,
) -> Voice:
    """Assemble a voice: explicit checkpoints, a voice folder, or a known voice name.

    A ``tacotron2_path`` with a voice ``name`` (and no ``waveglow_path``) takes that voice's
    vocoder and defaults; the voice's own Tacotron2 is then neither needed nor read.
    """
    waveglow_path = Path(waveglow_path) if waveglow_path else None
    tacotron2_path = Path(tacotron2_path) if tacotron2_path else None
    if tacotron2_path and waveglow_path is None and not name:
        raise ConfigError("--tacotron2 needs --waveglow too (or --voice for its vocoder)")
    if tacotron2_path and waveglow_path:
        from .checkpoints import load_tacotron2, load_waveglow
        from .vocoders import WaveGlowVocoder

        return Voice(
            name="custom",
            tacotron2=load_tacotron2(tacotron2_path),
            vocoder=WaveGlowVocoder(load_waveglow(waveglow_path)),
            defaults=NVIDIA_DEFAULTS,
            files={"tacotron2": str(tacotron2_path), "waveglow": str(waveglow_path)},
        )
    name = name or default_voice_name()
    folder = _voice_folder(name)
    if folder is not None:
        return load_voice_dir(folder, waveglow_path, tacotron2_path)
    if name in NVIDIA_VOICES:
        return _load_nvidia(NVIDIA_VOICES[name], waveglow_path, tacotron2_path)
    if name == EMBEDDED_VOICE:
        raise VoiceError(
            "no voice is installed: the embedded voice ttscli-en is missing from this install, "
            "and NVIDIA's weights were not found; run `ttscli download nvidia-ljspeech` "
            "(needs a network) or pass --tacotron2/--waveglow"
        )
    known = ", ".join([*NVIDIA_VOICES, EMBEDDED_VOICE])
    raise UnknownVoiceError(f"unknown voice {name!r}: not a folder and not a known name ({known})")


def _load_nvidia(
    voice: NvidiaVoice, waveglow_path: Path | None, tacotron2_path: Path | None
) -> Voice:
    """NVIDIA's pair as found in the caches, either file replaced by a given one."""
    from .checkpoints import load_tacotron2, load_waveglow
    from .vocoders import WaveGlowVocoder

    found = {role: find_file(f) for role, f in voice.files.items()}
    if waveglow_path:
        found["waveglow"] = waveglow_path
    if tacotron2_path:
        found["tacotron2"] = tacotron2_path
    if not all(found.values()):
        raise VoiceError(missing_nvidia_message(voice))
    return Voice(
        name=voice.name,
        tacotron2=load_tacotron2(found["tacotron2"]),
        vocoder=WaveGlowVocoder(load_waveglow(found["waveglow"])),
        defaults=NVIDIA_DEFAULTS,
        files={k: str(v) for k, v in found.items()},
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
    waveglow_path: str | Path | None = None,
) -> dict:
    """What the voice `load_voice` would assemble is made of, without loading it: its name and
    the size and modification time of each of its files (so a retrained or replaced voice
    reads as a different one)."""
    if not name and not (tacotron2_path and waveglow_path):
        name = default_voice_name()
    paths = [Path(p) for p in (tacotron2_path, waveglow_path) if p]
    if name:
        folder = _voice_folder(name)
        if folder is not None:
            paths += [folder / "voice.json", *sorted(folder.glob("*.pt"))]
        elif name in NVIDIA_VOICES:
            paths += [p for p in map(find_file, NVIDIA_VOICES[name].files.values()) if p]
    files = {}
    for path in paths:
        try:
            stat = path.stat()
        except OSError:
            continue
        files[str(path.resolve())] = [stat.st_size, stat.st_mtime_ns]
    return {"voice": name, "files": files}
