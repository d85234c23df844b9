"""The test driver's Qt binding: the one the running Krita uses (PyQt6 in Krita 6, else
PyQt5), chosen as Krita chooses it, so the driver never imports the binding Krita refuses.
Kept apart from the plug-in's own ``realscale.qt`` on purpose: the driver must run in
profiles where the plug-in is not installed."""

import pykrita

QT_MAJOR = int(pykrita.qt_major_version()) if hasattr(pykrita, "qt_major_version") else 5

if QT_MAJOR >= 6:
    from PyQt6 import QtCore, QtTest, QtWidgets
else:
    from PyQt5 import QtCore, QtTest, QtWidgets

Qt = QtCore.Qt
QTimer = QtCore.QTimer
QTest = QtTest.QTest
QApplication = QtWidgets.QApplication
QDialog = QtWidgets.QDialog
QDialogButtonBox = QtWidgets.QDialogButtonBox
QMessageBox = QtWidgets.QMessageBox
QPushButton = QtWidgets.QPushButton
QT_VERSION = QtCore.QT_VERSION_STR
PYQT_VERSION = QtCore.PYQT_VERSION_STR
