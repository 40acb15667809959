"""DTT Segmentation: model weights on this computer — the *MedSAM weights* folder, the download
offered on first use (progress, cancel, resumable) and *Delete downloaded models…*.

Widget, logic and self-test parts are mixed into the module's classes (DTTSegmentation.py);
the work itself is DTTLib.models.cache.ModelStore's.
"""

import os

import slicer
from slicer.i18n import tr as _

class ModelWeightsWidget:
    """The widget's part (uses the module widget's controls, logic and job runner)."""

    def _addWeightsControls(self, form) -> None:
        """The weights folder row and the delete button, in the model box's ``form``."""
        import ctk
        import qt

        self.weightsFolder = ctk.ctkPathLineEdit()
        self.weightsFolder.filters = ctk.ctkPathLineEdit.Dirs
        self.weightsFolder.toolTip = _("A folder that already holds MedSAM ViT-B's config.json and model.safetensors. "
                                       "Leave it empty to download them once (375 MB) into the user cache.")
        self.weightsFolderLabel = qt.QLabel(_("MedSAM weights:"))
        form.addRow(self.weightsFolderLabel, self.weightsFolder)
        self.deleteModelsButton = qt.QPushButton(_("Delete downloaded models…"))
        self.deleteModelsButton.toolTip = _("Free the disk space of model weights downloaded into the user cache")
        form.addRow(self.deleteModelsButton)
        self.modelCombo.connect("currentIndexChanged(int)", lambda index: self._showWeightsFolder())
        self.deleteModelsButton.connect("clicked(bool)", self.onDeleteDownloadedModels)
        self._showWeightsFolder()
        self.weightsFolder.connect("currentPathChanged(QString)", self.onWeightsFolderChanged)

    def _showWeightsFolder(self) -> None:
        """The weights-folder row only for a model whose weights are downloaded, showing its setting."""
        modelId = self.logic.downloadedModelId(self.modelCombo.currentData)
        self.weightsFolder.visible = self.weightsFolderLabel.visible = modelId is not None
        if modelId is not None:
            folder = self.logic.modelStore().local_folder(modelId)
            self.weightsFolder.blockSignals(True)  # showing the setting is not changing it
            self.weightsFolder.currentPath = str(folder) if folder else ""
            self.weightsFolder.blockSignals(False)

    def onWeightsFolderChanged(self, path: str) -> None:
        model = self.modelCombo.currentData
        if self.logic.downloadedModelId(model) is None:
            return
        with slicer.util.tryWithErrorDisplay(_("This folder cannot be used for the model's weights."),
                                             waitCursor=True):
            self.logic.setModelFolder(model, path.strip())
            self.ui.statusLabel.text = _("MedSAM ViT-B weights: {where}").format(
                where=path.strip() or _("the user cache (downloaded when first needed)"))

    def _offerDownload(self, model: str, then) -> None:
        """Ask before fetching a model's weights; download in the background with progress (Cancel
        stops it; the transfer resumes next time), then call ``then``."""
        from DTTLib.models.catalog import get_entry

        entry = get_entry(self.logic.downloadedModelId(model))
        cache = self.logic.modelStore().root
        if not slicer.util.confirmOkCancelDisplay(_(
                "{name}'s weights ({size} MB, licence {licence}) are not on this computer.\n\n"
                "Download them once from Hugging Face ({hub}) into {cache}?\n\n"
                "Or press Cancel and choose a folder that already holds them under 'MedSAM weights'.").format(
                name=self.modelCombo.currentText or entry.id, size=round(entry.size_bytes / 1e6),
                licence=entry.licence, hub=entry.hub_id, cache=cache)):
            return

        class Stopped(Exception):
            pass

        def compute(progress, should_cancel):
            def report(done, total):
                progress(done // 1_000_000, max(total // 1_000_000, 1))
                if should_cancel():
                    raise Stopped()
            try:
                return self.logic.downloadModel(model, report)
            except Exception:
                if should_cancel():
                    return None
                raise

        def finish(folder):
            if folder is None:
                self.ui.statusLabel.text = _("Download stopped; it resumes where it stopped next time.")
                return
            self.ui.statusLabel.text = _("Model weights downloaded to {folder}").format(folder=folder)
            then()

        self._runInBackground(compute, finish, _("Failed to download the model: {error}"))

    def onDeleteDownloadedModels(self) -> None:
        if self._job is not None:
            return
        with slicer.util.tryWithErrorDisplay(_("Failed to delete the downloaded models."), waitCursor=True):
            models = self.logic.downloadedModels()
            cache = self.logic.modelStore().root
            if not models:
                slicer.util.infoDisplay(_("No models are downloaded in {cache}.").format(cache=cache))
                return
            listing = "\n".join(f"  {modelId} ({size / 1e6:.0f} MB)" for modelId, size in models)
            if not slicer.util.confirmOkCancelDisplay(_(
                    "Delete these downloaded models from {cache}?\n{listing}\n\n"
                    "Folders you chose yourself are not touched; a model is downloaded again when next needed.").format(
                    cache=cache, listing=listing)):
                return
            freed = self.logic.deleteDownloadedModels()
            self.ui.statusLabel.text = _("Deleted downloaded models: {mb:.0f} MB freed").format(mb=freed / 1e6)


class ModelWeightsLogic:
    """The logic's part (no GUI)."""

    @staticmethod
    def modelStore():
        from DTTLib.models.cache import ModelStore

        return ModelStore()

    @staticmethod
    def downloadedModelId(model: str):
        """The catalog id of a model choice whose weights are downloaded (MedSAM ViT-B), else None."""
        from DTTLib.cli.segment import DOWNLOADED_MODELS

        return DOWNLOADED_MODELS.get(model)

    def modelWeightsFolder(self, model: str):
        """Where a downloaded model's weights are (its local-folder setting, else the cache), or
        None when they are not on this computer. Models that ship with a package: None too."""
        modelId = self.downloadedModelId(model)
        return None if modelId is None else self.modelStore().locate(modelId)

    def setModelFolder(self, model: str, folder) -> None:
        """Use the weights in ``folder`` for ``model`` from now on ("" or None forgets the setting);
        a folder without config.json is refused with a clear error. The next run reloads the model."""
        self.modelStore().set_local_folder(self.downloadedModelId(model), folder or None)
        with self._segmenterLock:
            self._segmenters.pop(model, None)

    def downloadModel(self, model: str, progress=None):
        """Fetch ``model``'s weights into the user cache (network; resumable, checksummed) and
        return their folder. ``progress(done_bytes, total_bytes)``; it may raise to stop the
        transfer, which resumes where it stopped next time. Safe in a worker thread (no MRML)."""
        report = None if progress is None else (lambda modelId, done, total: progress(done, total))
        return self.modelStore().resolve(self.downloadedModelId(model), allow_download=True, progress=report).path

    def downloadedModels(self) -> list:
        """(catalog id, bytes) of every model downloaded into the user cache."""
        return sorted(self.modelStore().downloaded().items())

    def deleteDownloadedModels(self) -> int:
        """Delete every downloaded model from the user cache; returns the bytes freed. Local folders
        the user pointed to are never touched."""
        store = self.modelStore()
        freed = sum(store.delete(modelId) for modelId in store.downloaded())
        with self._segmenterLock:
            self._segmenters.clear()  # a model loaded from a deleted folder must not be reused
        return freed


class ModelWeightsTest:
    """The self-test's part (run by DTTSegmentationTest.runTest)."""

    def test_ModelWeights(self):
        """MedSAM ViT-B's weights: absent → None (the widget then offers a download); a folder
        without config.json is refused; a chosen folder is used; deleting downloads frees the cache
        and never touches the chosen folder. Runs on a private cache (DTT_CACHE_DIR)."""
        import json
        import os
        import tempfile
        from pathlib import Path

        from DTTLib.errors import InputError
        from DTTLib.models.catalog import get_entry

        previous = os.environ.get("DTT_CACHE_DIR")
        with tempfile.TemporaryDirectory() as folder:
            os.environ["DTT_CACHE_DIR"] = str(Path(folder) / "cache")
            try:
                logic = self.newLogic()
                self.assertIsNone(logic.modelWeightsFolder("medsam"))
                self.assertIsNone(logic.modelWeightsFolder("litemedsam"))  # ships with its package
                mine = Path(folder) / "my_medsam"
                mine.mkdir()
                with self.assertRaises(InputError):
                    logic.setModelFolder("medsam", str(mine))  # no config.json yet
                (mine / "config.json").write_text(json.dumps({"model_type": "sam"}))
                logic.setModelFolder("medsam", str(mine))
                self.assertEqual(logic.modelWeightsFolder("medsam"), mine.resolve())
                logic.setModelFolder("medsam", "")
                self.assertIsNone(logic.modelWeightsFolder("medsam"))
                # a finished download, as ModelStore.download leaves it (files + checksummed manifest)
                store = logic.modelStore()
                cached = store.cache_path("medsam-vit-base")
                cached.mkdir(parents=True)
                (cached / "config.json").write_text("{}")
                (cached / "model.safetensors").write_bytes(b"\0" * 4096)
                store.write_manifest(get_entry("medsam-vit-base"), cached)
                self.assertEqual(logic.modelWeightsFolder("medsam"), cached)
                listed = dict(logic.downloadedModels())
                self.assertEqual(list(listed), ["medsam-vit-base"])
                self.assertGreater(listed["medsam-vit-base"], 4096)
                self.assertEqual(logic.deleteDownloadedModels(), listed["medsam-vit-base"])
                self.assertEqual(logic.downloadedModels(), [])
                self.assertFalse(cached.exists())
                self.assertTrue((mine / "config.json").exists())
            finally:
                if previous is None:
                    os.environ.pop("DTT_CACHE_DIR", None)
                else:
                    os.environ["DTT_CACHE_DIR"] = previous
        self.delayDisplay("Model weights test passed")
