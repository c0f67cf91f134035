"""The PyQt6 live detector: status bar, controls, current detection, class grid, log, toasts.

The only module of the project that imports Qt. Inference runs in the engine's worker thread
(plain Python); the UI polls it with a QTimer rather than receiving one Qt signal per decision,
because Qt's cross-thread signal queue is unbounded: a busy UI would let it grow, whereas the
engine's bounded queues drop old decisions instead (and never drop a detection). Model loading
runs in a background thread too, so the window appears at once. Errors are shown in the window
and printed to stderr; nothing here is allowed to take the app down. Every colour, font and
style sheet rule is in :mod:`realtime.theme`; widgets here only name themselves and set the
state properties its rules select on (:func:`restyle`).
"""
from __future__ import annotations

import math
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
from PyQt6.QtCore import QEasingCurve, QPropertyAnimation, QRectF, Qt, QTimer
from PyQt6.QtGui import QBrush, QColor, QFont, QLinearGradient, QPainter, QPainterPath, QPalette, QPen
from PyQt6.QtWidgets import (QApplication, QFrame, QGraphicsOpacityEffect, QGridLayout, QHBoxLayout, QLabel,
                             QListWidget, QListWidgetItem, QMainWindow, QProgressBar, QPushButton, QSizePolicy,
                             QSlider,
                             QVBoxLayout, QWidget)

from realtime.detections import DetectionSaver
from realtime.engine import Decision, Detection, EngineConfig
from realtime.predictor import Predictor
from realtime.session import LiveSession, model_words, nearest_operating_point, operating_point
from realtime.sources import Source
from realtime.sysload import LoadMonitor, format_load
from realtime.theme import (ACCENT, BLUE, BORDER, ERROR, FONT_FAMILIES, FONT_PT, PALETTE, PANEL_2, STYLE, TEXT,
                            TOAST_COLORS, TRACK, WARN)

# ----------------------------------------------------------------------------- theme


def apply_dark_theme(app: QApplication) -> None:
    """Fusion with the palette, font and style sheet of :mod:`realtime.theme`: every look lives there."""
    app.setStyle("Fusion")
    pal = QPalette()
    for role, color in PALETTE:
        pal.setColor(getattr(QPalette.ColorRole, role), QColor(color))
    app.setPalette(pal)
    font = QFont()
    font.setFamilies(FONT_FAMILIES)
    font.setPointSize(FONT_PT)
    app.setFont(font)
    app.setStyleSheet(STYLE)


def restyle(widget: QWidget, prop: str, value: str) -> None:
    """Set a property that a style sheet rule selects on and re-polish, only when it changes (a polish is not free)."""
    if widget.property(prop) != value:
        widget.setProperty(prop, value)
        widget.style().unpolish(widget)
        widget.style().polish(widget)


def card(title: str | None = None) -> tuple[QFrame, QVBoxLayout]:
    frame = QFrame()
    frame.setObjectName("card")
    lay = QVBoxLayout(frame)
    lay.setContentsMargins(14, 12, 14, 12)
    lay.setSpacing(8)
    if title:
        t = QLabel(title.upper())
        t.setObjectName("cardTitle")
        lay.addWidget(t)
    return frame, lay


def pretty(label: str) -> str:
    return label.strip("_") if label.startswith("_") else label


# ----------------------------------------------------------------------------- widgets



def _caption_row(layout: QVBoxLayout, caption: str) -> tuple[QLabel, QLabel]:
    """A caption on the left and its value on the right (a slider's heading), added to `layout`."""
    row = QHBoxLayout()
    label = QLabel(caption)
    label.setObjectName("caption")
    value = QLabel("")
    value.setObjectName("thresholdValue")
    row.addWidget(label)
    row.addStretch(1)
    row.addWidget(value)
    layout.addLayout(row)
    return label, value

class LevelMeter(QWidget):
    """Input level in dBFS, -70..0, as a segmented bar; the dot lights while the VAD hears speech."""

    LOW_DB = -70.0

    def __init__(self) -> None:
        super().__init__()
        self.level_db = self.LOW_DB
        self.voiced = False
        self.setFixedSize(170, 22)
        self.setToolTip("Input level (dBFS); the dot lights when the voice-activity detector hears speech")

    def set_level(self, level_db: float | None, voiced: bool) -> None:
        self.level_db = self.LOW_DB if level_db is None else max(self.LOW_DB, min(0.0, level_db))
        self.voiced = voiced
        self.update()

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(ACCENT if self.voiced else BORDER))
        p.drawEllipse(QRectF(2, 7, 8, 8))
        x0, w, h = 16.0, self.width() - 18.0, self.height()
        segments = 24
        lit = (self.level_db - self.LOW_DB) / -self.LOW_DB * segments
        seg_w = w / segments
        for i in range(segments):
            frac = i / segments
            color = QColor(ACCENT if frac < 0.6 else WARN if frac < 0.85 else ERROR)
            if i >= lit:
                color = QColor(PANEL_2)
            p.setBrush(color)
            p.drawRoundedRect(QRectF(x0 + i * seg_w, 5, seg_w - 2, h - 10), 1.5, 1.5)


class ProbBar(QWidget):
    """A vertical probability bar with the detection threshold drawn across it."""

    def __init__(self) -> None:
        super().__init__()
        self.value = 0.0
        self.threshold = 0.6
        self.hot = False  # the arg-max class, at or above the threshold
        self.setMinimumSize(14, 26)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = float(self.width()), float(self.height())
        bw = max(10.0, min(w * 0.42, 34.0))  # wide enough to read at a glance, never touching the cell
        x = (w - bw) / 2
        track = QPainterPath()
        track.addRoundedRect(QRectF(x, 0, bw, h), 5, 5)
        p.fillPath(track, QColor(TRACK))
        fill_h = h * max(0.0, min(1.0, self.value))
        if fill_h > 0.5:
            grad = QLinearGradient(0, h, 0, h - fill_h)
            top = QColor(ACCENT if self.hot else BLUE)
            bottom = QColor(top)
            bottom.setAlpha(110)
            grad.setColorAt(0, bottom)
            grad.setColorAt(1, top)
            p.setClipPath(track)
            p.fillRect(QRectF(x, h - fill_h, bw, fill_h), QBrush(grad))
            p.setClipping(False)
        y = h * (1 - self.threshold)
        pen = QPen(QColor(WARN))
        pen.setStyle(Qt.PenStyle.DashLine)
        pen.setWidthF(1.2)
        p.setPen(pen)
        p.drawLine(int(x) - 5, int(y), int(x + bw) + 5, int(y))


class ClassCell(QFrame):
    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label
        self.setObjectName("cell")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 5, 4, 5)
        lay.setSpacing(2)
        self.pct = QLabel("0%")
        self.pct.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.pct.setObjectName("cellPercent")
        self.bar = ProbBar()
        self.name = QLabel(pretty(label))
        self.name.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.name.setObjectName("cellName")
        lay.addWidget(self.pct)
        lay.addWidget(self.bar, 1)
        lay.addWidget(self.name)
        self._flash_until = 0.0

    @property
    def value(self) -> float:
        return self.bar.value

    def set_value(self, v: float, hot: bool, threshold: float) -> None:
        self.bar.value, self.bar.hot, self.bar.threshold = v, hot, threshold
        self.pct.setText(f"{v * 100:.0f}%")
        self.bar.update()
        self._light(time.monotonic() < self._flash_until)

    def flash(self, seconds: float = 0.8) -> None:
        self._flash_until = time.monotonic() + seconds
        self._light(True)

    def _light(self, lit: bool) -> None:
        restyle(self, "lit", "true" if lit else "false")


class ClassGrid(QWidget):
    """Every class with a live bar: 8 x 5 for 35/36 classes; fewer rows and columns for fewer."""

    def __init__(self, labels: tuple[str, ...]) -> None:
        super().__init__()
        self.labels = labels
        rows = max(1, math.ceil(len(labels) / 8))
        self.columns = math.ceil(len(labels) / rows)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        self.cells = [ClassCell(lab) for lab in labels]
        for i, cell in enumerate(self.cells):
            grid.addWidget(cell, i // self.columns, i % self.columns)

    def update_scores(self, scores: np.ndarray, threshold: float | np.ndarray) -> None:
        """`threshold`: one for every class, or each class's own (calibrated per word)."""
        top = int(np.argmax(scores))
        th = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(self.cells),))
        for i, cell in enumerate(self.cells):
            v = float(scores[i])
            cell.set_value(v, i == top and v >= th[i], float(th[i]))

    def flash(self, index: int) -> None:
        self.cells[index].flash()


class DetectionDisplay(QFrame):
    """The current detection, large, with its confidence; returns to 'listening' after a while."""

    HOLD_S = 1.6

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("card")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(18, 10, 18, 12)
        lay.setSpacing(0)
        title = QLabel("CURRENT DETECTION")
        title.setObjectName("cardTitle")
        self.word = QLabel("—")
        self.word.setObjectName("detectionWord")
        self.word.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.word.setMinimumHeight(66)
        self.conf = QLabel("")
        self.conf.setObjectName("confidence")
        self.conf.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail = QLabel("")
        self.detail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.detail.setObjectName("note")
        self.meter = QProgressBar()
        self.meter.setRange(0, 1000)
        self.meter.setTextVisible(False)
        self.meter.setFixedSize(320, 6)
        self.meter.setObjectName("confidenceMeter")
        for w in (title, self.word, self.conf):
            lay.addWidget(w)
        lay.addSpacing(4)
        lay.addWidget(self.meter, 0, Qt.AlignmentFlag.AlignHCenter)
        lay.addSpacing(4)
        lay.addWidget(self.detail)
        self.current: Detection | None = None
        self._shown_at = 0.0
        self.idle("Loading model…")

    def idle(self, text: str = "Listening…") -> None:
        self.current = None
        self.word.setText(text)
        restyle(self.word, "detected", "false")
        self.conf.setText("")
        self.detail.setText("")
        self.meter.setValue(0)

    def show_detection(self, det: Detection) -> None:
        self.current = det
        self._shown_at = time.monotonic()
        self.word.setText(pretty(det.label).upper())
        restyle(self.word, "detected", "true")
        self.conf.setText(f"{det.confidence * 100:.1f}% confidence")
        restyle(self.conf, "shown", "true")  # its font from the first detection on; idle only empties it
        self.meter.setValue(round(det.confidence * 1000))
        lat = "" if det.latency_s is None else f" · decided {det.latency_s * 1e3:.0f} ms after the audio"
        self.detail.setText(f"at {det.time_s:.2f} s of the stream{lat}")

    def tick(self, listening: bool) -> None:
        if self.current is not None and time.monotonic() - self._shown_at > self.HOLD_S:
            self.idle("Listening…" if listening else "Stopped")


class Toast(QFrame):
    """A floating, click-through notification that fades in, waits, fades out and deletes itself.

    `kind` (a key of theme.TOAST_COLORS: detection, info, warning, error) colours its edge.
    """

    def __init__(self, parent: QWidget, text: str, kind: str, seconds: float,
                 on_gone: Callable[[], None] | None = None) -> None:
        if kind not in TOAST_COLORS:
            raise ValueError(f"unknown toast kind {kind!r}; one of {', '.join(TOAST_COLORS)}")
        super().__init__(parent)
        self._on_gone = on_gone
        self.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)  # never in the way
        self.setObjectName("toast")
        self.setProperty("kind", kind)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 8, 14, 8)
        lab = QLabel(text)
        lab.setWordWrap(True)
        lab.setMaximumWidth(360)
        lay.addWidget(lab)
        self.adjustSize()
        self._fx = QGraphicsOpacityEffect(self)
        self._fx.setOpacity(0.0)
        self.setGraphicsEffect(self._fx)
        self._anim = QPropertyAnimation(self._fx, b"opacity", self)
        self._anim.setDuration(180)
        self._anim.setStartValue(0.0)
        self._anim.setEndValue(1.0)
        self._anim.setEasingCurve(QEasingCurve.Type.OutCubic)
        self._anim.start()
        QTimer.singleShot(int(seconds * 1000), self._fade_out)

    def _fade_out(self) -> None:
        self._anim.stop()
        self._anim.setStartValue(self._fx.opacity())
        self._anim.setEndValue(0.0)
        self._anim.setDuration(400)
        self._anim.finished.connect(self._gone)
        self._anim.start()

    def _gone(self) -> None:
        self.hide()
        if self._on_gone is not None:
            self._on_gone()  # the stack closes the gap while every object is still alive
        self.deleteLater()


class ToastStack:
    """Stacks toasts in the top-right corner of `host`; at most `limit` at once (oldest go first)."""

    def __init__(self, host: QWidget, limit: int = 4) -> None:
        self.host = host
        self.limit = limit
        self.toasts: list[Toast] = []

    def show(self, text: str, kind: str = "detection", seconds: float = 2.2) -> Toast:
        self.toasts = [t for t in self.toasts if _alive(t)]
        while len(self.toasts) >= self.limit:
            self.toasts.pop(0).deleteLater()
        toast = Toast(self.host, text, kind, seconds, on_gone=self.layout)
        self.toasts.append(toast)
        toast.show()
        toast.raise_()
        self.layout()
        return toast

    def layout(self) -> None:
        if not _alive(self.host):
            return
        self.toasts = [t for t in self.toasts if _alive(t) and not t.isHidden()]
        y = 70
        for t in reversed(self.toasts):  # newest on top
            t.adjustSize()
            t.move(self.host.width() - t.width() - 20, y)
            y += t.height() + 8


def _alive(w: QWidget) -> bool:
    try:
        w.objectName()
        return True
    except RuntimeError:  # the C++ object was deleted
        return False


def pill(text: str = "") -> QLabel:
    lab = QLabel(text)
    lab.setObjectName("pill")
    return lab


# ----------------------------------------------------------------------------- main window


class LiveWindow(QMainWindow):
    """The live detector. `predictor_factory` runs in a background thread; `source_factory` on START."""

    def __init__(self, predictor_factory: Callable[[], Predictor], source_factory: Callable[[], Source],
                 cfg: EngineConfig | None = None, *, title: str = "", autostart: bool = False,
                 poll_ms: int = 33, load_monitor: LoadMonitor | None = None,
                 saver: DetectionSaver | None = None) -> None:
        super().__init__()
        self.saver = saver  # --save-detections: each detection's audio, and the Wrong button
        self.load_monitor = load_monitor or LoadMonitor()
        self._last_load = 0.0
        self.cfg = cfg or EngineConfig()
        self.source_factory = source_factory
        self.autostart = autostart
        self.predictor: Predictor | None = None
        self.session: LiveSession | None = None
        self.grid: ClassGrid | None = None
        self.errors: list[str] = []
        self.detections: list[Detection] = []
        self.state = "loading"
        self._last_stats = 0.0
        self.setWindowTitle(f"Keyword Spotter — Live{' · ' + title if title else ''}")
        self.resize(1240, 780)
        self._build()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="kws-model-load")
        self._load: Future[Predictor] | None = self._pool.submit(predictor_factory)
        self.timer = QTimer(self)
        self.timer.setInterval(poll_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        self._set_state("loading")

    # -- layout
    def _build(self) -> None:
        root = QWidget()
        self.setCentralWidget(root)
        outer = QVBoxLayout(root)
        outer.setContentsMargins(16, 12, 16, 10)
        outer.setSpacing(12)

        header = QHBoxLayout()
        titles = QVBoxLayout()
        titles.setSpacing(0)
        t = QLabel("Keyword Spotter")
        t.setObjectName("appTitle")
        self.subtitle = QLabel("loading model…")
        self.subtitle.setObjectName("appSubtitle")
        titles.addWidget(t)
        titles.addWidget(self.subtitle)
        header.addLayout(titles)
        header.addStretch(1)
        self.rec_pill = pill()
        self.level = LevelMeter()
        level_box = QFrame()
        level_box.setObjectName("pill")
        lb = QHBoxLayout(level_box)
        lb.setContentsMargins(8, 0, 8, 0)
        lb.setSpacing(6)
        self.level_text = QLabel("— dB")
        self.level_text.setObjectName("note")
        self.level_text.setFixedWidth(46)
        lb.addWidget(self.level)
        lb.addWidget(self.level_text)
        self.rate_pill = pill("— decisions/s")
        self.latency_pill = pill("latency —")
        self.backend_pill = pill("backend —")
        for w in (self.rec_pill, level_box, self.rate_pill, self.latency_pill, self.backend_pill):
            header.addWidget(w)
        outer.addLayout(header)

        self.error_banner = QLabel("")
        self.error_banner.setObjectName("errorBanner")
        self.error_banner.setWordWrap(True)
        self.error_banner.hide()
        outer.addWidget(self.error_banner)

        body = QHBoxLayout()
        body.setSpacing(12)
        left = QVBoxLayout()
        left.setSpacing(12)

        controls, cl = card("Control")
        self.start_button = QPushButton("START")
        self.start_button.setObjectName("startButton")
        self.start_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.start_button.clicked.connect(self.toggle)
        cl.addWidget(self.start_button)
        self.wrong_button = QPushButton("Wrong: last detection was a mistake")
        self.wrong_button.setToolTip("move its saved audio to the wrong/ folder: train.py --hard-negatives "
                                     "that folder teaches the model to ignore it")
        self.wrong_button.clicked.connect(self.mark_wrong)
        self.wrong_button.setEnabled(False)
        self.wrong_button.setVisible(self.saver is not None)
        cl.addWidget(self.wrong_button)
        th_label, self.threshold_value = _caption_row(cl, "Threshold")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(10, 95)
        self.slider.setValue(int(round(min(0.95, max(0.10, self.cfg.threshold)) * 100)))
        self.slider.valueChanged.connect(self._threshold_changed)
        cl.addWidget(self.slider)
        self._threshold_widgets = (th_label, self.threshold_value, self.slider)
        # a model calibrated along a curve gets a sensitivity instead: its operating points, by false accepts/h
        sens_label, self.sensitivity_value = _caption_row(cl, "Sensitivity")
        self.sensitivity = QSlider(Qt.Orientation.Horizontal)
        self.sensitivity.setRange(0, 0)
        self.sensitivity.setPageStep(1)
        self.sensitivity.valueChanged.connect(self._sensitivity_changed)
        cl.addWidget(self.sensitivity)
        ends = QHBoxLayout()
        strict, loose = QLabel("fewer false accepts"), QLabel("catches more words")
        for lab in (strict, loose):
            lab.setObjectName("note")
        ends.addWidget(strict)
        ends.addStretch(1)
        ends.addWidget(loose)
        cl.addLayout(ends)
        self._sensitivity_widgets = (sens_label, self.sensitivity_value, self.sensitivity, strict, loose)
        for w in self._sensitivity_widgets:
            w.hide()  # until a model with operating points has loaded
        self.source_label = QLabel("")
        self.source_label.setWordWrap(True)
        self.source_label.setObjectName("note")
        cl.addWidget(self.source_label)
        left.addWidget(controls)

        log_card, ll = card("Detection log")
        self.log = QListWidget()
        self.log.setSelectionMode(QListWidget.SelectionMode.NoSelection)
        self.log.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.log.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.log.setTextElideMode(Qt.TextElideMode.ElideRight)
        ll.addWidget(self.log)
        left.addWidget(log_card, 1)
        left_w = QWidget()
        left_w.setLayout(left)
        left_w.setFixedWidth(330)
        left.setContentsMargins(0, 0, 0, 0)
        body.addWidget(left_w)

        right = QVBoxLayout()
        right.setSpacing(12)
        self.display = DetectionDisplay()
        right.addWidget(self.display)
        grid_card, self.grid_layout = card("All classes")
        self.grid_placeholder = QLabel("The classes appear when the model has loaded.")
        self.grid_placeholder.setObjectName("caption")
        self.grid_placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.grid_layout.addWidget(self.grid_placeholder, 1)
        right.addWidget(grid_card, 1)
        body.addLayout(right, 1)
        outer.addLayout(body, 1)

        self.status_msg = QLabel("")
        self.status_drop = QLabel("")
        self.status_load = QLabel("CPU —")
        self.status_load.setToolTip("CPU: the whole machine, and this app (all threads) in % of one core; "
                                    "GPU: utilisation and memory from nvidia-smi, where an NVIDIA GPU is present")
        self.statusBar().setSizeGripEnabled(False)
        self.statusBar().addWidget(self.status_msg, 1)
        self.statusBar().addPermanentWidget(self.status_drop)
        self.statusBar().addPermanentWidget(self.status_load)
        self.toasts = ToastStack(root)
        self._show_threshold(self.slider.value())

    # -- state
    def _set_state(self, state: str) -> None:
        self.state = state
        live = state == "running"
        replay = live and self.session is not None and self.session.source.description.startswith("replay")
        text = {"loading": "◌  LOADING", "ready": "■  STOPPED", "running": "●  LIVE", "error": "✕  ERROR"}[state]
        if replay:
            text = "▶  REPLAY"
        self.rec_pill.setText(text)
        restyle(self.rec_pill, "state", state)  # its colour: theme.STATE_COLORS
        self.start_button.setText("STOP" if live else "START")
        restyle(self.start_button, "running", "true" if live else "false")
        self.start_button.setEnabled(self.predictor is not None)
        self.slider.setEnabled(self.predictor is not None)
        self.sensitivity.setEnabled(self.predictor is not None)
        if not live:
            self.level.set_level(None, False)
            self.level_text.setText("— dB")
            self.rate_pill.setText("— decisions/s")

    def _show_threshold(self, value: int) -> None:
        calibrated = self.cfg.use_model_thresholds and self.predictor is not None and bool(self.predictor.thresholds)
        self.threshold_value.setText("calibrated" if calibrated else f"{value} %")

    def _threshold_changed(self, value: int) -> None:
        """The user moved the slider: one threshold for every word, replacing calibrated ones."""
        th = value / 100.0
        self.cfg = replace(self.cfg, threshold=th, use_model_thresholds=False, word_thresholds=(), fa_per_hour=None)
        self._show_threshold(value)
        if self.session is not None:
            self.session.set_threshold(th)

    def _setup_sensitivity(self, pred: Predictor) -> None:
        """A model with operating points (and no threshold of the user's) gets the Sensitivity slider in place
        of the raw threshold, starting at the point asked for (--sensitivity) or the calibration's default."""
        points = pred.operating_points if self.cfg.use_model_thresholds else ()
        for w in self._threshold_widgets:
            w.setVisible(not points)
        for w in self._sensitivity_widgets:
            w.setVisible(bool(points))
        if self.cfg.fa_per_hour is not None:
            try:
                index = operating_point(pred, self.cfg.fa_per_hour)[0]
            except ValueError as e:  # START would refuse it too: say so now
                self.show_error(str(e))
                return
            rate = points[index][0]
        elif points:
            # the thresholds in force are the default point's ("values"), fitted for the calibration's target
            rate = pred.thresholds_fa_per_hour or points[len(points) // 2][0]
            index = nearest_operating_point(points, rate)
        else:
            return
        self.sensitivity.blockSignals(True)  # positioning it is not a choice of the user's: the config stays
        self.sensitivity.setRange(0, len(points) - 1)
        self.sensitivity.setValue(index)
        self.sensitivity.blockSignals(False)
        self._show_sensitivity(rate, points[index][1])

    def _show_sensitivity(self, fa_per_hour: float, values: dict[str, float]) -> None:
        self.sensitivity_value.setText(f"≈{fa_per_hour:g} false accepts/h")
        words = model_words(values, self.predictor.labels) if self.predictor is not None else values
        span = f"{min(words.values()):.2f}-{max(words.values()):.2f}" if words else "-"
        tip = (f"expected false accepts per hour of speech without the words; per-word thresholds {span} "
               f"({len(words)} words)")
        self.sensitivity.setToolTip(tip)
        self.sensitivity_value.setToolTip(tip)

    def _sensitivity_changed(self, index: int) -> None:
        """The user moved the sensitivity: the thresholds of that operating point, for every word at once."""
        if self.predictor is None or not self.predictor.operating_points:
            return
        fa, values = self.predictor.operating_points[index]
        self.cfg = replace(self.cfg, fa_per_hour=fa, use_model_thresholds=True, word_thresholds=())
        self._show_sensitivity(fa, values)
        if self.session is not None:
            self.session.set_word_thresholds(model_words(values, self.predictor.labels))

    # -- actions
    def toggle(self) -> None:
        if self.state == "running":
            self.stop("Stopped")
        else:
            self.start()

    def start(self) -> bool:
        if self.predictor is None or self.state == "running":
            return False
        self.error_banner.hide()
        try:
            source = self.source_factory()
            saver = self.saver
            if saver is not None:
                source = saver.wrap(source)
            session = LiveSession(self.predictor, source, self.cfg,
                                  on_detection=None if saver is None else saver.save)
            session.start()
        except Exception as e:  # SourceError, AudioError, ValueError: all worded for the user
            self.show_error(str(e))
            self._set_state("ready")
            return False
        self.session = session
        self.source_label.setText(source.description)
        self.display.idle("Listening…")
        self._set_state("running")
        self.statusBar().showMessage("")
        self.status_msg.setText(f"Started {source.description}")
        return True

    def stop(self, why: str = "Stopped") -> None:
        session, self.session = self.session, None
        if session is not None:
            session.stop()
            self._drain(session)
            self._show_stats(session, final=True)
        self.display.idle(why)
        self._set_state("ready" if self.predictor is not None else "error")
        self.status_msg.setText(why)

    def show_error(self, message: str) -> None:
        """Say it in the window (banner, toast, status bar) and on the console."""
        self.errors.append(message)
        print(f"error: {message}", file=sys.stderr, flush=True)
        self.error_banner.setText(f"⚠  {message}")
        self.error_banner.show()
        self.toasts.show(message, "error", seconds=5.0)
        self.status_msg.setText(message)

    # -- polling
    def _tick(self) -> None:
        try:
            if self._load is not None and self._load.done():
                self._model_loaded(self._load)
            if self.session is not None:
                self._poll_session(self.session)
            self.display.tick(self.state == "running")
            now = time.monotonic()
            if now - self._last_load >= 1.0:  # psutil reports the load since the previous reading
                self._last_load = now
                self.status_load.setText(format_load(self.load_monitor.sample()))
        except Exception as e:  # a bug must show up as a message, not kill the app
            traceback.print_exc()
            self.show_error(f"internal error: {type(e).__name__}: {e}")
            if self.session is not None:
                self.stop("Stopped after an error")

    def _model_loaded(self, fut: Future) -> None:
        self._load = None
        try:
            pred = fut.result()
        except Exception as e:
            self.subtitle.setText("no model")
            self.display.idle("No model")
            self._set_state("error")
            self.show_error(str(e))
            return
        self.predictor = pred
        self.subtitle.setText(f"{pred.model} · {len(pred.labels)} classes")
        self.backend_pill.setText(pred.describe())
        self.backend_pill.setToolTip("providers in use: " + ", ".join(pred.providers))
        self.grid_placeholder.hide()
        self.grid = ClassGrid(pred.labels)
        self.grid_layout.addWidget(self.grid, 1)
        self._show_threshold(self.slider.value())
        self._setup_sensitivity(pred)
        self.display.idle("Press START")
        self._set_state("ready")
        if self.autostart:
            self.start()

    def _poll_session(self, session: LiveSession) -> None:
        self._drain(session)
        problem = session.check()
        if problem:
            self.stop("Stopped after an error")
            self.show_error(problem)
            return
        now = time.monotonic()
        if now - self._last_stats > 0.5:
            self._last_stats = now
            self._show_stats(session)
        if session.finished:
            self.stop("Replay finished")
            self.toasts.show("Replay finished", "info")

    def _drain(self, session: LiveSession) -> None:
        decisions = session.poll()
        if decisions:
            self._show_decision(decisions[-1])  # the bars show the newest state; older ones are history
        for det in session.poll_detections():
            self._add_detection(det)

    def _show_decision(self, d: Decision) -> None:
        if self.grid is not None:
            th = self.session.engine.thresholds if self.session is not None else self.cfg.threshold
            self.grid.update_scores(d.smoothed, th)
        self.level.set_level(d.level_db, d.voiced)
        self.level_text.setText(f"{d.level_db:.0f} dB")

    def _add_detection(self, det: Detection) -> None:
        self.detections.append(det)
        stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
        item = QListWidgetItem(f"{stamp}  {pretty(det.label):<8.8s} {det.confidence * 100:3.0f}%  {det.time_s:6.2f}s")
        item.setToolTip(f"{det.label}: {det.confidence:.1%} at {det.time_s:.2f} s of the stream")
        item.setForeground(QColor(TEXT))
        self.log.insertItem(0, item)
        while self.log.count() > 500:  # bounded, like everything else
            self.log.takeItem(self.log.count() - 1)
        self.display.show_detection(det)
        if self.grid is not None:
            self.grid.flash(det.index)
        self.toasts.show(f"{pretty(det.label)}  ·  {det.confidence * 100:.0f}%", "detection")
        self.wrong_button.setEnabled(self.saver is not None)

    def mark_wrong(self) -> Path | None:
        """The Wrong button: the last detection's saved audio becomes a hard negative."""
        moved = self.saver.mark_wrong() if self.saver is not None else None
        self.wrong_button.setEnabled(False)
        if moved is None:
            self.toasts.show("no saved detection to mark", "warning")
        else:
            self.toasts.show(f"marked wrong: {moved.parent.name}/{moved.name}", "warning")
            self.status_msg.setText(f"hard negative kept in {moved.parent.parent}")
        return moved

    def _show_stats(self, session: LiveSession, final: bool = False) -> None:
        s = session.stats()
        if not final:
            self.rate_pill.setText(f"{s.decisions_per_s:4.1f} decisions/s")
        # decisions that ran the model are the honest figure; before the first one, all decisions
        p50, p95 = ((s.latency_p50_ms, s.latency_p95_ms) if s.latency_p95_ms is not None
                    else (s.latency_all_p50_ms, s.latency_all_p95_ms))
        if p95 is not None:
            self.latency_pill.setText(f"latency p50 {p50:.0f} · p95 {p95:.0f} ms")
            self.latency_pill.setToolTip("from the moment the newest sample entered the buffer to the decision")
        drops = s.dropped_blocks
        self.status_drop.setText(f"{s.decisions} decisions · {s.inferred} inferred · {s.detections} detections · "
                                 + (f"shed {s.shed_hops} hops · " if s.shed_hops else "")
                                 + f"dropped {drops} block{'s' if drops != 1 else ''}")
        if drops:
            restyle(self.status_drop, "warning", "true")

    # -- Qt
    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.toasts.layout()

    def closeEvent(self, event) -> None:
        self.timer.stop()
        self.load_monitor.close()
        if self.session is not None:
            self.session.stop()
            self.session = None
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().closeEvent(event)


def run_app(predictor_factory: Callable[[], Predictor], source_factory: Callable[[], Source],
            cfg: EngineConfig | None = None, *, title: str = "", autostart: bool = False,
            argv: list[str] | None = None, saver: DetectionSaver | None = None) -> int:
    """Create the QApplication and the window, run the event loop; returns the exit status."""
    app = QApplication.instance() or QApplication(argv or sys.argv[:1])
    apply_dark_theme(app)
    win = LiveWindow(predictor_factory, source_factory, cfg, title=title, autostart=autostart, saver=saver)

    def hook(exc_type, exc, tb) -> None:  # PyQt aborts on an exception escaping a slot: report instead
        traceback.print_exception(exc_type, exc, tb)
        try:
            win.show_error(f"internal error: {exc_type.__name__}: {exc}")
        except Exception:
            pass

    sys.excepthook = hook
    win.show()
    return int(app.exec())
