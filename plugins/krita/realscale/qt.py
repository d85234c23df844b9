"""The Qt binding of the running Krita, and the few places where PyQt5 and PyQt6 differ.

Krita 5 runs on Qt 5 (PyQt5), Krita 6 on Qt 6 (PyQt6). Krita 5.3 and 6 refuse the other
binding outright (their ``krita`` package replaces ``__import__``), and loading both would
load two Qt libraries into one process, so the binding is chosen the way Krita chooses it:
``pykrita.qt_major_version()`` where it exists (5.3 and later), else Qt 5 (5.1, 5.2). Every
other module of the plug-in takes its Qt names from here.

The rest of the plug-in writes enums in their scoped form (``Qt.WindowModality.WindowModal``,
``QMessageBox.StandardButton.Ok``), which PyQt6 requires and PyQt5 5.15 accepts, and never
turns a flag into an int (PyQt6 flags are not ints).
"""

from __future__ import annotations


def qt_major_version() -> int:
    """The major version of the Qt that Krita runs on: 6 for Krita 6, else 5."""
    try:
        import pykrita  # Krita's built-in module; absent outside Krita
    except ImportError:
        return 5
    version = getattr(pykrita, "qt_major_version", None)
    return int(version()) if callable(version) else 5


QT_MAJOR = qt_major_version()

if QT_MAJOR >= 6:
    from PyQt6 import QtCore, QtGui, QtWidgets

    QAction = QtGui.QAction
else:
    from PyQt5 import QtCore, QtGui, QtWidgets

    QAction = QtWidgets.QAction

QByteArray = QtCore.QByteArray
QEventLoop = QtCore.QEventLoop
Qt = QtCore.Qt
QTimer = QtCore.QTimer
QSize = QtCore.QSize
QKeySequence = QtGui.QKeySequence
QApplication = QtWidgets.QApplication
QComboBox = QtWidgets.QComboBox
QDialog = QtWidgets.QDialog
QDialogButtonBox = QtWidgets.QDialogButtonBox
QDoubleSpinBox = QtWidgets.QDoubleSpinBox
QFileDialog = QtWidgets.QFileDialog
QFormLayout = QtWidgets.QFormLayout
QHBoxLayout = QtWidgets.QHBoxLayout
QLabel = QtWidgets.QLabel
QLineEdit = QtWidgets.QLineEdit
QMessageBox = QtWidgets.QMessageBox
QProgressDialog = QtWidgets.QProgressDialog
QPushButton = QtWidgets.QPushButton
QStyle = QtWidgets.QStyle
QStyleOptionComboBox = QtWidgets.QStyleOptionComboBox
QVBoxLayout = QtWidgets.QVBoxLayout
QT_VERSION = QtCore.QT_VERSION_STR
BINDING = "PyQt6" if QT_MAJOR >= 6 else "PyQt5"


def run_modal(runnable) -> int:
    """``exec()`` a dialog or event loop: PyQt6 has only ``exec``, older PyQt5 only
    ``exec_``."""
    run = getattr(runnable, "exec", None) or runnable.exec_
    return run()
