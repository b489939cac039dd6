"""Long work as plain functions ``job(..., progress=None)`` that report progress and can be cancelled.

The CLI runs them with a terminal progress bar; the window runs them in its worker thread. A
progress callback raising ``studio.core.progress.Cancelled`` stops a job at its next report.
"""
