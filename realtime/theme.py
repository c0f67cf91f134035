"""The live window's look: its colours, fonts, palette and the one Qt style sheet built from them.

Plain strings, so this module imports without Qt; :func:`realtime.gui.apply_dark_theme` applies
them. Widgets opt into a look by object name (``setObjectName("note")``). The few looks that
follow a state are dynamic-property selectors (a class cell ``[lit="true"]``, the status pill
``[state="error"]``, a toast ``[kind="warning"]``): the window sets the property and re-polishes,
and never writes a style sheet of its own, because a widget's own sheet overrides the
application's whatever the selectors' specificity, so looks written there drift apart.
"""
from __future__ import annotations

# ----------------------------------------------------------------------------- colours

BG = "#0d1117"  # the window behind everything
PANEL = "#161b22"  # cards, the log, the status bar
PANEL_2 = "#1c2230"  # raised parts: pills, class cells, slider groove, tooltips
BORDER = "#2a3140"  # card and pill edges; an unlit VAD dot; a disabled button
TRACK = "#10151d"  # empty part of a bar: darker than the cell so a 0 % bar still reads as a bar
TEXT = "#e6edf3"  # body text
MUTED = "#8b949e"  # secondary text: titles of cards, notes, idle states
ACCENT = "#3ddc97"  # detections, live
ACCENT_HOVER = "#5ff0b0"  # the START button under the pointer
ON_ACCENT = "#06130d"  # text on an accent background
LIT_BG = "#12261f"  # a class cell while its detection flashes: the panel tinted with the accent
BLUE = "#58a6ff"  # probabilities; neutral notices
WARN = "#f0b429"  # thresholds, loud input, dropped audio, warnings
ERROR = "#ff6b6b"  # errors; LIVE (recording) and the STOP button
ERROR_HOVER = "#ff8a8a"  # the STOP button under the pointer
ON_ERROR = "#1a0608"  # text on an error background
ERROR_BG = "#3b1418"  # the error banner: a dark red that the error text reads on
ERROR_EDGE = "#6e2a30"  # the error banner's edge
TOAST_BG = "rgba(28, 34, 48, 235)"  # PANEL_2, a little see-through: a toast floats over the window

# ----------------------------------------------------------------------------- fonts and palette

FONT_FAMILIES = ["Inter", "Segoe UI", "SF Pro Text", "Noto Sans", "DejaVu Sans"]
FONT_PT = 10
MONO_FAMILY = "DejaVu Sans Mono"  # the detection log: its columns line up

# QPalette.ColorRole name -> colour: what Fusion draws where no style sheet rule reaches
PALETTE: tuple[tuple[str, str], ...] = (
    ("Window", BG), ("Base", PANEL), ("AlternateBase", PANEL_2), ("Text", TEXT), ("WindowText", TEXT),
    ("Button", PANEL_2), ("ButtonText", TEXT), ("Highlight", BLUE), ("HighlightedText", BG),
    ("ToolTipBase", PANEL_2), ("ToolTipText", TEXT),
)

# ----------------------------------------------------------------------------- state-dependent looks

# LiveWindow.state -> colour of the status pill's text (its `state` property)
STATE_COLORS: dict[str, str] = {"loading": WARN, "ready": MUTED, "running": ERROR, "error": ERROR}

# a toast's `kind` property -> the colour of its edge
TOAST_COLORS: dict[str, str] = {"detection": ACCENT, "info": BLUE, "warning": WARN, "error": ERROR}


def _state_rules() -> str:
    return "".join(f'QLabel#pill[state="{state}"] {{ color: {color}; font-weight: 700; }}\n'
                   for state, color in STATE_COLORS.items())


def _toast_rules() -> str:
    return "".join(f'QFrame#toast[kind="{kind}"] {{ background: {TOAST_BG}; border: 1px solid {color}; '
                   f'border-left: 4px solid {color}; border-radius: 8px; }}\n'
                   for kind, color in TOAST_COLORS.items())


STYLE = f"""
QWidget {{ background: {BG}; color: {TEXT}; }}
QFrame#card {{ background: {PANEL}; border: 1px solid {BORDER}; border-radius: 10px; }}
QLabel {{ background: transparent; }}
QLabel#cardTitle {{ color: {MUTED}; font-size: 9pt; font-weight: 600; letter-spacing: 1px; }}
QLabel#appTitle {{ font-size: 15pt; font-weight: 700; }}
QLabel#appSubtitle, QLabel#note {{ color: {MUTED}; font-size: 9pt; }}
QLabel#caption {{ color: {MUTED}; }}
QLabel#thresholdValue {{ font-weight: 700; }}
QFrame#pill {{ background: {PANEL_2}; border: 1px solid {BORDER}; border-radius: 12px; }}
QLabel#pill {{ padding: 4px 10px; font-size: 9pt; }}
{_state_rules()}QLabel#errorBanner {{ background: {ERROR_BG}; color: {ERROR}; border: 1px solid {ERROR_EDGE};
                      border-radius: 8px; padding: 8px 12px; font-weight: 600; }}
QPushButton#startButton {{ background: {ACCENT}; color: {ON_ACCENT}; border: none; border-radius: 10px;
                           font-size: 13pt; font-weight: 800; padding: 12px; letter-spacing: 2px; }}
QPushButton#startButton:hover {{ background: {ACCENT_HOVER}; }}
QPushButton#startButton[running="true"] {{ background: {ERROR}; color: {ON_ERROR}; }}
QPushButton#startButton[running="true"]:hover {{ background: {ERROR_HOVER}; }}
QPushButton#startButton:disabled {{ background: {BORDER}; color: {MUTED}; }}
QSlider::groove:horizontal {{ height: 6px; background: {PANEL_2}; border-radius: 3px; }}
QSlider::sub-page:horizontal {{ background: {BLUE}; border-radius: 3px; }}
QSlider::handle:horizontal {{ background: {TEXT}; width: 16px; height: 16px; margin: -6px 0; border-radius: 8px; }}
QLabel#detectionWord {{ color: {MUTED}; font-size: 24pt; font-weight: 600; }}
QLabel#detectionWord[detected="true"] {{ color: {ACCENT}; font-size: 40pt; font-weight: 800; letter-spacing: 3px; }}
QLabel#confidence[shown="true"] {{ color: {TEXT}; font-size: 13pt; font-weight: 600; }}
QProgressBar#confidenceMeter {{ background: {PANEL_2}; border: none; border-radius: 3px; }}
QProgressBar#confidenceMeter::chunk {{ background: {ACCENT}; border-radius: 3px; }}
QFrame#cell {{ background: {PANEL_2}; border: 1px solid {BORDER}; border-radius: 8px; }}
QFrame#cell[lit="true"] {{ background: {LIT_BG}; border: 1px solid {ACCENT}; }}
QLabel#cellPercent {{ color: {MUTED}; font-size: 8pt; }}
QLabel#cellName {{ font-size: 9pt; font-weight: 600; }}
QListWidget {{ background: {PANEL}; border: none; font-family: "{MONO_FAMILY}"; font-size: 9pt; }}
QListWidget::item {{ padding: 3px 2px; border-bottom: 1px solid {PANEL_2}; }}
QStatusBar {{ background: {PANEL}; color: {MUTED}; border-top: 1px solid {BORDER}; }}
QStatusBar QLabel {{ color: {MUTED}; padding: 0 8px; }}
QStatusBar QLabel[warning="true"] {{ color: {WARN}; }}
QToolTip {{ background: {PANEL_2}; color: {TEXT}; border: 1px solid {BORDER}; }}
{_toast_rules()}QFrame#toast QLabel {{ color: {TEXT}; font-size: 10pt; font-weight: 600; border: none;
                       background: transparent; }}
"""
