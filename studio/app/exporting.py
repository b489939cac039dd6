"""The Export menu: the current face as OBJ/PLY/STL/GLB (optionally with morph targets), its
parameters JSON, or a PNG of the viewport; through studio.jobs.faces.export_face, the same code
``studio export`` runs, on the worker thread. An existing file is replaced only after asking.
"""

from __future__ import annotations

from PySide6.QtGui import QAction

from studio.app import dialogs
from studio.core.render import write_png
from studio.jobs.faces import export_face

# (menu text, file-dialog filter, suffix, morph targets?)
FORMATS = (
    ("Mesh as OBJ…", "Wavefront OBJ (*.obj)", ".obj", False),
    ("Mesh as PLY…", "PLY, binary with vertex colours (*.ply)", ".ply", False),
    ("Mesh as STL…", "STL, binary (*.stl)", ".stl", False),
    ("Mesh as GLB…", "glTF binary (*.glb)", ".glb", False),
    ("GLB with morph targets…", "glTF binary (*.glb)", ".glb", True),
    ("Parameters JSON…", "Face Studio parameters (*.json)", ".json", False),
)


class Exporter:
    def __init__(self, window):
        self.window = window
        self.actions: dict[str, QAction] = {}

    def fill_menu(self, menu) -> None:
        for text, filt, suffix, morph in FORMATS:
            act = menu.addAction(text)
            act.triggered.connect(lambda _=False, f=filt, s=suffix, m=morph: self.export_face(f, s, m))
            self.actions[text] = act
        menu.addSeparator()
        act = menu.addAction("Viewport as PNG…")
        act.triggered.connect(lambda _=False: self.export_png())
        self.actions["png"] = act

    def set_enabled(self, on: bool) -> None:
        for act in self.actions.values():
            act.setEnabled(on)

    def _target(self, caption: str, filt: str, suffix: str):
        path = dialogs.save_path(self.window, caption, filt, suffix)
        if path is None:
            return None, False
        if path.exists():
            if not dialogs.confirm_replace(self.window, path):
                return None, False
            return path, True
        return path, False

    def export_face(self, filt: str, suffix: str, morph: bool) -> None:
        w = self.window
        model = w.doc.model
        if model is None:
            return
        k = None
        if morph:
            shape = next((g for g in model.groups if g.name == "shape"), None)
            n = shape.size if shape is not None else 0
            k = dialogs.ask_int(w, "Morph targets", f"Shape components as morph targets (0–{n}); every "
                                "expression is added too:", min(20, n), 0, n)
            if k is None:
                return
        path, force = self._target("Export face", filt, suffix)
        if path is None:
            return
        params = w.doc.snapshot()
        detail = getattr(w, "detail_controls", None)
        img = detail.export_image() if detail is not None and suffix == ".glb" and not morph else None
        if img is not None:  # Detail is on: the GLB carries the normal map the viewport shows
            from studio.jobs.detail import write_detailed_glb

            strength = detail.strength
            w.runner.submit(lambda progress: write_detailed_glb(path, model, params, img, force, strength),
                            f"exporting {path.name}", on_done=lambda p: w.notify(f"wrote {p}"))
            return
        w.runner.submit(lambda progress: export_face(model, params, path, force, k),
                        f"exporting {path.name}", on_done=lambda p: w.notify(f"wrote {p}"))

    def export_png(self) -> None:
        w = self.window
        if w.doc.model is None:
            return
        path, force = self._target("Export viewport", "PNG image (*.png)", ".png")
        if path is None:
            return
        image = w.viewport.image()  # GL read-back: UI thread; encoding and writing: worker
        w.runner.submit(lambda progress: write_png(path, image, force), f"writing {path.name}",
                        on_done=lambda p: w.notify(f"wrote {p}"))
