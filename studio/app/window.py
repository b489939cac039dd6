"""MainWindow: wires the document, the worker, the viewport and the docks together.

Data flow (one direction): a panel edits the FaceDocument (via undo commands) → the document
announces the change → the window sends a latest-wins evaluation request with a snapshot of the
parameters to the JobRunner → the worker's result comes back through a queued signal → the
viewport writes it into its PolyData in place. The UI thread never evaluates a mesh; models are
opened, imported and exported by worker jobs, and failures end up as one line in the status bar.
"""

from __future__ import annotations

import logging
from pathlib import Path

import studio.app.pyside_fix  # noqa: F401  (first: PySide6 6.12 emit refcount bug; see the module)

# isort: split
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QHBoxLayout, QMainWindow, QStackedWidget, QWidget

from studio.app import dialogs, session
from studio.app.defaults import default_model_path
from studio.app.document import FaceDocument
from studio.app.evaluation import EvalRequest, format_plausibility
from studio.app.exporting import Exporter
from studio.app.icons import app_icon
from studio.app.interpolation import InterpolationPanel
from studio.app.library import LibraryPanel
from studio.app.params_panel import ParameterPanel
from studio.app.runner import JobRunner
from studio.app.statusbar import StatusBar
from studio.app.view_panel import ViewPanel
from studio.app.viewport import Viewport
from studio.app.welcome import FILTERS, WelcomeView
from studio.core import params as params_io
from studio.core import prior, store
from studio.core.errors import StudioError

log = logging.getLogger(__name__)
MODEL_FILTER = ("Face models (*.zip *.tar *.tar.gz *.tgz *.tar.xz *.h5 *.mat *.pkl);;"
                "ICT-FaceKit archive (*.zip *.tar *.tar.gz *.tgz *.tar.xz);;Basel Face Model (*.h5 *.mat);;"
                "FLAME (*.pkl);;All files (*)")


class MainWindow(QMainWindow):
    displayed = Signal()  # the first mesh of a newly opened model is on screen
    openFailed = Signal(str)  # a model could not be opened (the welcome view is shown)

    def __init__(self, session_enabled: bool = True, seed: int | None = None, checkpoints=None):
        super().__init__()
        self.setWindowTitle("Face Studio")
        self.setWindowIcon(app_icon())
        self._checkpoints = checkpoints  # None: the repository's checkpoints/ folder
        self.runner = JobRunner(self)
        self.doc = FaceDocument(self)
        self._serial = 0
        self._awaiting_first = False
        self._pending_camera = None
        self.displayed_params = None

        self.viewport = Viewport()
        self.welcome = WelcomeView()  # instead of the viewport: nothing could open
        self.welcome_side = WelcomeView(beside=True)  # beside the neural head while the store is empty
        self.welcome_side.hide()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.welcome)
        self.stack.addWidget(self.viewport)
        centre = QWidget()
        row = QHBoxLayout(centre)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        row.addWidget(self.welcome_side)
        row.addWidget(self.stack, 1)
        self.setCentralWidget(centre)
        self.status = StatusBar(self.runner)
        self.setStatusBar(self.status)

        self.panel = ParameterPanel(self.doc, seed=seed)
        self.view_panel = ViewPanel(self.viewport)
        # Thumbnails and turntables draw the displayed triangles (hidden regions stay hidden); a
        # neural model's triangles change with its parameters, so it draws its own mesh's.
        faces_shown = lambda: (self.viewport._faces[self.viewport.visible_faces]  # noqa: E731
                               if self.doc.model is None or self.doc.model.fixed_topology else None)
        self.library = LibraryPanel(self.doc, self.runner, self.notify)
        self.interp = InterpolationPanel(self.doc, self.runner, self.library, self.notify, faces_shown)
        self.docks = {}
        self._dock("Parameters", self.panel, Qt.DockWidgetArea.RightDockWidgetArea)
        self._dock("View", self.view_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Faces", self.library, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Interpolate", self.interp, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.resizeDocks([self.docks["Parameters"]], [470], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["View"]], [300], Qt.Orientation.Horizontal)
        self.resizeDocks([self.docks["View"], self.docks["Faces"], self.docks["Interpolate"]], [330, 330, 200],
                         Qt.Orientation.Vertical)

        self.exporter = Exporter(self)
        self._menus()
        self.session = session.SessionSaver(self._session_state, self, enabled=session_enabled)
        self._pending_layout = None  # the session's ranges, applied when its model's panel exists

        self.doc.paramsChanged.connect(self._on_params_changed)
        self.doc.dragFinished.connect(self._on_drag_finished)
        self.runner.resultReady.connect(self._on_result)
        self.viewport.cameraChanged.connect(self.session.schedule)
        self.view_panel.changed.connect(self.session.schedule)
        self.panel.rangesChanged.connect(self.session.schedule)
        for dock in self.docks.values():  # dock moves have no window-level signal
            dock.dockLocationChanged.connect(self.session.schedule)
            dock.topLevelChanged.connect(self.session.schedule)
        self._wire_welcome()
        self._set_has_model(False)

    def _wire_welcome(self) -> None:
        for view in (self.welcome, self.welcome_side):
            view.importFile.connect(lambda: self.import_dialog(folder=False))
            view.importFolder.connect(lambda: self.import_dialog(folder=True))
            view.importKind.connect(lambda kind: self.import_dialog(folder=False, kind=kind))
            view.openModel.connect(lambda name: self.open_model(name))
            view.loadScan.connect(lambda: self.scan_fitting.load_dialog())
            view.loadPhoto.connect(lambda: self.photo_fitting.load_dialog())
        self.welcome_side.closed.connect(lambda: self._side_welcome(False))

    def _dock(self, title, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{title}")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[title] = dock
        return dock

    def _menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        self.open_action = m.addAction("Open model…")
        self.open_action.setShortcut(QKeySequence.StandardKey.Open)
        self.open_action.triggered.connect(self.open_model_dialog)
        self.open_menu = m.addMenu("Open model")
        self.open_menu.aboutToShow.connect(self._fill_open_menu)
        m.addAction("Import model from file…").triggered.connect(lambda: self.import_dialog(folder=False))
        m.addAction("Import model from folder…").triggered.connect(lambda: self.import_dialog(folder=True))
        m.addSeparator()
        m.addAction("Open parameters…").triggered.connect(self.open_params_dialog)
        self.save_face_action = m.addAction("Save face…")
        self.save_face_action.setShortcut(QKeySequence.StandardKey.Save)
        self.save_face_action.triggered.connect(lambda: self.library.save_current())
        m.addSeparator()
        quit_action = m.addAction("Quit")
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)

        self._edit_and_fit_menus(mb)
        self._view_menu(mb)
        self.export_menu = mb.addMenu("E&xport")
        self.exporter.fill_menu(self.export_menu)
        self.exporter.actions["Mesh as GLB…"].setShortcut(QKeySequence("Ctrl+E"))
        self.exporter.actions["png"].setShortcut(QKeySequence("Ctrl+Shift+E"))
        self._help_menu(mb.addMenu("&Help"))

    def _edit_and_fit_menus(self, mb) -> None:
        m = mb.addMenu("&Edit")
        self.undo_action = self.doc.undo_stack.createUndoAction(self, "Undo")
        self.undo_action.setShortcuts([QKeySequence("Ctrl+Z")])
        self.redo_action = self.doc.undo_stack.createRedoAction(self, "Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        for a in (self.undo_action, self.redo_action):
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            m.addAction(a)
        m.addSeparator()
        self.random_action = m.addAction("Random face")
        self.random_action.setShortcut(QKeySequence("Ctrl+R"))
        self.random_action.triggered.connect(lambda: self.panel.randomize_all())
        self.reset_action = m.addAction("Reset all parameters")
        self.reset_action.setShortcut(QKeySequence("Ctrl+Shift+R"))
        self.reset_action.triggered.connect(lambda: self.panel.reset_all())

        m = mb.addMenu("F&it")
        self.fit_menu = m
        # Fitting adds its own actions (Load scan…, Fit scan, Show fit error…, Load photo…).
        from studio.app import photo_fitting, scan_fitting
        scan_fitting.install(self, m)
        m.addSeparator()
        photo_fitting.install(self, m)

    def _view_menu(self, mb) -> None:
        m = mb.addMenu("&View")
        presets = (("front", "Front", "1"), ("side", "Side", "2"), ("three-quarter", "Three-quarter", "3"))
        for preset, text, key in presets:
            a = m.addAction(text)
            a.setShortcut(QKeySequence(f"Ctrl+{key}"))
            a.triggered.connect(lambda _=False, p=preset: self.viewport.set_view(p))
        m.addAction("Reset view").triggered.connect(lambda: self.viewport.set_view("front"))
        self.wireframe_action = QAction("Wireframe", self, checkable=True)
        self.wireframe_action.setShortcut(QKeySequence("Ctrl+Shift+W"))
        self.wireframe_action.toggled.connect(self.view_panel.wireframe.setChecked)
        self.view_panel.wireframe.toggled.connect(self.wireframe_action.setChecked)
        m.addAction(self.wireframe_action)
        m.addSeparator()
        for dock in self.docks.values():
            m.addAction(dock.toggleViewAction())

    def _help_menu(self, m) -> None:
        from studio.app import help as help_dialogs

        self.dialogs = {}  # open Help dialogs (non-modal: the studio keeps working beside them)

        def show(key, make):
            if key not in self.dialogs:
                self.dialogs[key] = make()
            self.dialogs[key].show()
            self.dialogs[key].raise_()

        self.shortcuts_action = m.addAction("Keyboard shortcuts")
        self.shortcuts_action.setShortcut(QKeySequence("Ctrl+/"))
        self.shortcuts_action.triggered.connect(
            lambda: show("shortcuts", lambda: help_dialogs.ShortcutsDialog(self.menuBar(), self)))
        self.welcome_action = m.addAction("Welcome")
        self.welcome_action.triggered.connect(self._show_welcome)
        m.addSeparator()
        self.about_action = m.addAction("About Face Studio")
        self.about_action.triggered.connect(lambda: show("about", lambda: help_dialogs.AboutDialog(self)))

    def _show_welcome(self) -> None:
        if self.doc.model is None:
            self.stack.setCurrentWidget(self.welcome)
        else:
            self._side_welcome(True)

    def _side_welcome(self, on: bool) -> None:
        if on:
            self.welcome_side.set_models(self._model_names())
        self.welcome_side.setVisible(on)
        # A stack is as wide as its widest page: the hidden full-size welcome view (760 px of text)
        # would squeeze the docks while the side panel takes its own width too.
        self.stack.setMinimumWidth(320 if on else 0)  # 0: back to the pages' own minimum

    @staticmethod
    def _model_names() -> list[str]:
        names = store.names()
        return names + [n for n in store.builtin() if n not in names]  # the shipped neural head

    def _fill_open_menu(self) -> None:
        self.open_menu.clear()
        names = self._model_names()
        for name in names:
            self.open_menu.addAction(name).triggered.connect(lambda _=False, n=name: self.open_model(n))
        if not names:
            self.open_menu.addAction("(no models imported yet)").setEnabled(False)

    def _set_has_model(self, on: bool) -> None:
        self.exporter.set_enabled(on)
        for a in (self.random_action, self.reset_action, self.save_face_action):
            a.setEnabled(on)
        self.stack.setCurrentWidget(self.viewport if on else self.welcome)
        for view in (self.welcome, self.welcome_side):
            view.set_has_model(on)
        if not on:
            self._side_welcome(False)
            self.welcome.set_models(self._model_names())

    def open_model_dialog(self) -> None:
        names = self._model_names()
        if not names:
            self.import_dialog(folder=False)
            return
        current = names.index(self.doc.source) if self.doc.source in names else 0
        name = dialogs.ask_item(self, "Open model", "Model:", names, current)
        if name is not None:
            self.open_model(name)

    # -- messages ----------------------------------------------------------------------------------
    def notify(self, text: str, error: bool = False) -> None:
        (self.status.error if error else self.status.message)(text)

    # -- opening models --------------------------------------------------------------------------
    def startup(self, model: str | None = None, params: str | None = None) -> None:
        """What opens first: the command line's model, else the last session, else the model
        imported last, else the embedded default (checkpoints/*.npz, else the built-in neural
        head), else the welcome view. While the store is empty the welcome panel sits beside it."""
        if params is not None and model is None:
            model = params_io.read(params).get("model")
            if not isinstance(model, str):
                raise StudioError(f"{params} does not say which model it is for: pass --model")
        if model is not None:
            self.open_model(model, params=params)
            return
        s, problem = session.restore(set_aside_broken=self.session.enabled)
        if s is not None:
            self._restore_layout(s)
            self.open_model(s["model"], params=s.get("params") or {}, camera=s.get("camera"),
                            hidden=s.get("hidden_regions"), wireframe=bool(s.get("wireframe", False)),
                            from_session=True)
            self._offer_welcome()
            return
        default = self._first_model()
        if default is not None:
            self.open_model(default)
            self._offer_welcome()
            if problem is not None:
                self._warn_after_open(problem)
            return
        self._set_has_model(False)
        if problem is not None:
            self.notify(problem, error=True)

    def _first_model(self) -> str | None:
        """Without a session: a linear model dropped into checkpoints/ (default.npz), else the
        model imported last (a real linear model wins over the built-in head), else the built-in
        neural head by its shipped name (a title and a session that say "neural", not a path)."""
        default = default_model_path(self._checkpoints)
        if default is not None and default.suffix == ".npz":
            return str(default)
        names = store.names()
        if names:
            return max(names, key=lambda n: store.model_file(n).stat().st_mtime)
        if default is None:
            return None
        shipped = {p.resolve(): n for n, p in store.builtin().items()}
        return shipped.get(default.resolve(), str(default))

    def _offer_welcome(self) -> None:
        """The welcome panel beside the opening model, while the store holds no model."""
        if not store.names():
            self._side_welcome(True)

    def _warn_after_open(self, text: str) -> None:
        """An error line that the opening model's own messages would replace at once: shown now,
        and again when its first mesh is on screen."""
        self.notify(text, error=True)
        self.displayed.connect(lambda: self.notify(text, error=True),
                               Qt.ConnectionType.SingleShotConnection)

    def open_model(self, source: str, params=None, camera=None, hidden=None, wireframe=None,
                   from_session: bool = False) -> None:
        """Load ``source`` (store name or .npz) on the worker, with its first mesh, then show it.

        ``params`` is a mapping, or a path to a parameters JSON (validated against the model).
        """
        from studio.core.registry import open_model as load

        def job(progress):
            model = load(source)
            if isinstance(params, (str, Path)):
                p = params_io.load(params, model)
            else:
                try:
                    p = prior.check_params(model.groups, params or {})
                except StudioError:
                    if not from_session:
                        raise
                    p = prior.zeros(model.groups)  # a session from an older copy of the model
            return model, p, model.mesh(p)

        def failed(message: str):
            if self.doc.model is None:
                self._set_has_model(False)
            self.openFailed.emit(message)

        self.notify(f"opening model {source}…")
        self.runner.submit(job, f"opening {source}", quiet=True,
                           on_done=lambda r: self._opened(source, *r, camera, hidden, wireframe),
                           on_error=failed)

    def show_model(self, model, params=None, source: str | None = None) -> None:
        """Show a model object that is not (necessarily) in the store (benchmarks, embedding).

        With ``source`` None the session does not remember it (it could not be reopened)."""
        def job(progress):
            p = prior.check_params(model.groups, params or {})
            return model, p, model.mesh(p)

        self.runner.submit(job, f"opening {model.name}", quiet=True,
                           on_done=lambda r: self._opened(source, *r, None, None, None),
                           on_error=self.openFailed.emit)

    def _opened(self, source, model, params, mesh, camera, hidden, wireframe) -> None:
        self.viewport.set_model(model, mesh.vertices, mesh.faces)
        if hidden is not None:
            self.viewport.set_hidden_regions(hidden)
        if wireframe is not None:
            self.viewport.set_wireframe(wireframe)
        self.view_panel.set_model(model)
        self.view_panel.sync()
        self._set_has_model(True)
        if camera:
            try:
                self.viewport.set_camera(camera)
            except (TypeError, ValueError):
                self.viewport.set_view("front")
        else:
            self.viewport.set_view("front")
        self._awaiting_first = True
        self.displayed_params = None
        self.doc.set_model(model, source, params)  # → paramsChanged → first evaluation request
        self.setWindowTitle(f"Face Studio — {model.name}")  # the name, never a path
        if store.names():  # a model was imported: the welcome panel has done its job
            self._side_welcome(False)
        elif self.welcome_side.isVisible():  # its width comes out of the viewport, not the sliders
            self.resizeDocks([self.docks["Parameters"]], [470], Qt.Orientation.Horizontal)
        self._apply_pending_ranges(source)
        self.notify(f"opened {model.name}: {sum(g.size for g in model.groups)} parameters, "
                    f"{len(mesh.vertices)} vertices")
        self.session.schedule()

    def import_dialog(self, folder: bool, kind: str | None = None) -> None:
        filt = MODEL_FILTER if kind is None else f"{FILTERS[kind]};;All files (*)"
        src = (dialogs.open_folder(self, "Import an ICT-FaceKit FaceXModel folder") if folder
               else dialogs.open_file(self, "Import a face model", filt))
        if src is not None:
            self.import_model(src)

    def import_model(self, src, name: str | None = None) -> None:
        from studio.jobs.models import default_name, import_job

        try:
            name = store.check_name(name or default_name(src))
        except StudioError as e:
            self.notify(str(e), error=True)
            return
        force = False
        if store.exists(name):
            if not dialogs.confirm_replace(self, f"The model '{name}'"):
                return
            force = True
        def job(progress):
            import_job(src, name, force=force, progress=progress)
            return name

        self.runner.submit(job, f"importing {Path(src).name}", on_done=self.open_model)

    def open_params_dialog(self) -> None:
        if self.doc.model is None:
            return
        path = dialogs.open_file(self, "Open parameters", "Face Studio parameters (*.json)")
        if path is None:
            return
        try:
            params = params_io.load(path, self.doc.model)
        except StudioError as e:
            self.notify(str(e), error=True)
            return
        self.doc.edit_params(params, f"open {path.name}")

    # -- evaluation ------------------------------------------------------------------------------
    def _on_params_changed(self, _change) -> None:
        if self.doc.model is None:
            return
        self._serial += 1
        self.runner.request_eval(EvalRequest(self._serial, self.doc.model, self.doc.snapshot(),
                                             preview=self.doc.dragging))
        self.session.schedule()

    def _on_drag_finished(self) -> None:
        """Slider released: a model that showed preview meshes during the drag refines now."""
        if self.doc.model is not None and self.doc.model.has_preview:
            self._on_params_changed(None)

    def _on_result(self) -> None:
        res = self.runner.take_result()
        if res is None or res.model is not self.doc.model:
            return  # a late result for a model that was replaced meanwhile
        self.viewport.apply(res)
        self.displayed_params = res.params
        self.panel.show_plausibility(format_plausibility(res))
        if self._awaiting_first:
            self._awaiting_first = False
            self.viewport.plotter.render()  # draw now, so "displayed" means on screen
            self.displayed.emit()

    @property
    def up_to_date(self) -> bool:
        """The viewport shows the document's current parameters."""
        return self.viewport.applied_serial == self._serial and self.doc.model is not None

    # -- session ---------------------------------------------------------------------------------
    def _session_state(self) -> dict | None:
        if self.doc.model is None or self.doc.source is None:
            return None
        return {"model": self.doc.source,
                "params": {k: [float(x) for x in v] for k, v in self.doc.params.items()},
                "camera": self.viewport.camera,
                "hidden_regions": sorted(self.viewport.hidden_regions),
                "wireframe": self.viewport.wireframe,
                "ranges": self.panel.ranges(),
                "dock_state": bytes(self.saveState().toBase64().data()).decode("ascii"),
                "geometry": bytes(self.saveGeometry().toBase64().data()).decode("ascii")}

    def _restore_layout(self, s: dict) -> None:
        """Window geometry and dock layout now; the slider ranges once the model's panel is built."""
        from PySide6.QtCore import QByteArray

        if s.get("geometry"):
            self.restoreGeometry(QByteArray.fromBase64(s["geometry"].encode("ascii")))
        if s.get("dock_state"):
            self.restoreState(QByteArray.fromBase64(s["dock_state"].encode("ascii")))
        self._pending_layout = (s["model"], dict(s.get("ranges") or {}))

    def _apply_pending_ranges(self, source) -> None:
        pending, self._pending_layout = self._pending_layout, None
        if pending is not None and pending[0] == source:
            self.panel.set_ranges(pending[1])

    def closeEvent(self, event) -> None:
        self.session.schedule()  # saved at exit even when only the layout changed (no signal for it)
        self.session.flush()
        self.interp.set_playing(False)
        self.runner.shutdown()
        self.viewport.close_plotter()
        super().closeEvent(event)
