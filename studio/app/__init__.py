"""The Face Studio window (PySide6 + pyvistaqt): the only package that imports Qt or pyvistaqt.

Layout (after napari's separation of a document model, views and thread workers):

    document.py      FaceDocument: the model and its parameters (the single source of truth, UI thread)
    undo.py          QUndoStack commands for parameter edits (a whole slider drag is one step)
    runner.py        JobRunner: the ONE worker QThread; latest-wins mesh evaluation + queued jobs
    evaluation.py    MeshEvaluator (runs only on the worker thread): incremental / full evaluation
    viewport.py      the pyvistaqt viewport; writes worker results into one PolyData in place
    view_panel.py    camera presets, wireframe, region visibility
    params_panel.py  parameter tabs built from any FaceModel's groups
    library.py       identity library dock (saved faces with thumbnails)
    identities.py    the identity files on disk (no Qt)
    interpolation.py A/B interpolation dock (t in [−0.5, 1.5], play, export)
    exporting.py     the Export menu (same core code as the CLI)
    session.py       session.json: what reopens on the next start (throttled autosave)
    statusbar.py     job progress / Cancel / one-line messages
    welcome.py       the welcome panel: beside the neural head while the store is empty, or
                     instead of the viewport when no model can open
    help.py          Help → About (licences) and Help → Keyboard shortcuts
    defaults.py      the embedded default model hook (checkpoints/*.npz)
    dialogs.py       every question the studio asks (file choosers, confirmations)
    pyside_fix.py    guard against PySide6 6.12.0's reference-count bugs (excluded by the pin)
    window.py        MainWindow: wires the pieces together
    main.py          run(): the entry point `studio` calls; --screenshot mode
    harness.py       driving the real window from code (the Qt side of `studio bench gui`)
    icons.py         the window icon (resources/icons)
"""
