"""A tiny PNG writer and line-chart rasteriser (numpy + zlib + struct; no plotting library).

Enough to put an equity-curve picture next to a report: an RGB canvas, straight lines with a chosen
thickness, dashed horizontal levels, and labels in a built-in 3×5 pixel font (digits and a few signs).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence

import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
AXES: Color = (64, 64, 64)
LEVEL: Color = (170, 170, 170)
LINE: Color = (31, 119, 180)
TEXT: Color = (40, 40, 40)


# ---------------------------------------------------------------- encoding
def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of an ``(height, width, 3)`` uint8 RGB image (8-bit truecolour, no filtering)."""
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"encode_png needs an (height, width, 3) RGB array, got shape {pixels.shape}")
    height, width = int(pixels.shape[0]), int(pixels.shape[1])
    if height < 1 or width < 1:
        raise ValueError(f"encode_png needs a non-empty image, got {width}×{height}")
    rgb = np.ascontiguousarray(pixels, dtype=np.uint8)
    raw = np.zeros((height, 1 + width * 3), dtype=np.uint8)  # filter byte 0 (None) per scanline
    raw[:, 1:] = rgb.reshape(height, width * 3)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
        + _chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------- drawing
def canvas(width: int, height: int, color: Color = WHITE) -> np.ndarray:
    if width < 1 or height < 1:
        raise ValueError(f"image size must be at least 1×1, got {width}×{height}")
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:, :] = color
    return img


def _plot(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, color: Color, thickness: int) -> None:
    h, w = img.shape[:2]
    xi = np.rint(xs).astype(np.int64)
    yi = np.rint(ys).astype(np.int64)
    for dx in range(thickness):
        for dy in range(thickness):
            x = xi + dx - thickness // 2
            y = yi + dy - thickness // 2
            ok = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            img[y[ok], x[ok]] = color


def polyline(
    img: np.ndarray, xs: Sequence[float], ys: Sequence[float], color: Color, thickness: int = 1
) -> None:
    """Draw straight segments through the points (pixel coordinates, y down), sampled densely."""
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if len(x) == 0:
        return
    if len(x) == 1:
        _plot(img, x, y, color, thickness)
        return
    dx = np.diff(x)
    dy = np.diff(y)
    steps = np.ceil(np.maximum(np.abs(dx), np.abs(dy))).astype(np.int64) + 1  # samples per segment
    seg = np.repeat(np.arange(len(dx)), steps)
    first = np.repeat(np.cumsum(steps) - steps, steps)
    t = (np.arange(int(steps.sum())) - first) / np.repeat(np.maximum(steps - 1, 1), steps)
    _plot(img, x[seg] + t * dx[seg], y[seg] + t * dy[seg], color, thickness)


def hline(img: np.ndarray, y: float, x0: int, x1: int, color: Color, dash: int = 0) -> None:
    """Horizontal line at row ``y`` from ``x0`` to ``x1``; ``dash`` > 0 draws dashes of that length."""
    row = round(y)
    if not 0 <= row < img.shape[0]:
        return
    cols = np.arange(max(0, x0), min(img.shape[1], x1 + 1))
    if dash > 0:
        cols = cols[((cols - x0) // dash) % 2 == 0]
    img[row, cols] = color


def rect(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
    """Outline of the box with corners (x0, y0) and (x1, y1), inclusive."""
    h, w = img.shape[:2]
    x0, x1 = max(0, x0), min(w - 1, x1)
    y0, y1 = max(0, y0), min(h - 1, y1)
    img[y0, x0 : x1 + 1] = color
    img[y1, x0 : x1 + 1] = color
    img[y0 : y1 + 1, x0] = color
    img[y0 : y1 + 1, x1] = color


# 3×5 glyphs, one string of 15 bits per character (rows top to bottom, "1" = ink).
_FONT: dict[str, str] = {
    "0": "111101101101111",
    "1": "010110010010111",
    "2": "111001111100111",
    "3": "111001111001111",
    "4": "101101111001001",
    "5": "111100111001111",
    "6": "111100111101111",
    "7": "111001001001001",
    "8": "111101111101111",
    "9": "111101111001111",
    ".": "000000000000010",
    "-": "000000111000000",
    "+": "000010111010000",
    "%": "101001010100101",
    "x": "000101010101000",
    ":": "000010000010000",
    "e": "000010111100011",
    " ": "000000000000000",
}


def text(img: np.ndarray, x: int, y: int, s: str, color: Color = TEXT, scale: int = 2) -> int:
    """Draw ``s`` with its top-left corner at (x, y); unknown characters are skipped. Returns the width."""
    h, w = img.shape[:2]
    cx = x
    for ch in s:
        glyph = _FONT.get(ch)
        if glyph is None:
            continue
        bits = np.array([b == "1" for b in glyph], dtype=bool).reshape(5, 3)
        block = np.kron(bits, np.ones((scale, scale), dtype=bool))
        ys, xs = np.nonzero(block)
        xs = xs + cx
        ys = ys + y
        ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        img[ys[ok], xs[ok]] = color
        cx += 4 * scale
    return cx - x


def text_width(s: str, scale: int = 2) -> int:
    return sum(4 * scale for ch in s if ch in _FONT)


# ---------------------------------------------------------------- chart
def format_return(equity: float) -> str:
    """``+12.3%``; ``+4521%`` from 1000 %; ``+1.9e22%`` from 100 000 % (at most 8 characters)."""
    r = (equity - 1.0) * 100.0
    if abs(r) < 1000:
        return f"{r:+.1f}%"
    if abs(r) < 100_000:
        return f"{r:+.0f}%"
    mantissa, exponent = f"{r:+.1e}".split("e")
    return f"{mantissa}e{int(exponent)}%"


def line_chart(
    points: Sequence[tuple[float, float]],
    *,
    width: int = 800,
    height: int = 300,
    level: float | None = 1.0,
    step: bool = True,
) -> np.ndarray:
    """RGB image of a line chart: axes box, a dashed level line at ``level``, the line, y labels.

    x is the first coordinate (timestamps; evenly spaced by index when they are all equal), y the
    second. With ``step`` each value holds until the next point's time (an equity curve only changes
    when a trade closes). Labels show the top, bottom and level values as returns relative to 1.0
    (``+12.5%``).
    """
    if width < 40 or height < 30:
        raise ValueError(f"chart must be at least 40×30 pixels, got {width}×{height}")
    img = canvas(width, height)
    left, right, top, bottom = min(70, width // 4), 10, 10, 10
    x0, x1, y0, y1 = left, width - 1 - right, top, height - 1 - bottom
    rect(img, x0, y0, x1, y1, AXES)

    ys_data = [float(v) for _, v in points]
    lo = min([*ys_data, *([level] if level is not None else [])], default=0.0)
    hi = max([*ys_data, *([level] if level is not None else [])], default=1.0)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        pad = max(abs(hi) * 0.01, 1e-9)
        lo, hi = lo - pad, hi + pad
    pad = (hi - lo) * 0.05
    lo, hi = (max(0.0, lo - pad) if lo >= 0 else lo - pad), hi + pad
    inner_top, inner_bottom = y0 + 2, y1 - 2

    def ypix(v: float) -> float:
        return inner_bottom - (v - lo) / (hi - lo) * (inner_bottom - inner_top)

    if level is not None:
        hline(img, ypix(level), x0 + 1, x1 - 1, LEVEL, dash=6)

    if points:
        xs_data = np.array([float(t) for t, _ in points], dtype=np.float64)
        if xs_data.max() - xs_data.min() <= 0:
            xs_data = np.arange(len(points), dtype=np.float64)
        span = xs_data.max() - xs_data.min()
        inner_left, inner_right = x0 + 2, x1 - 2
        if span > 0:
            xp = inner_left + (xs_data - xs_data.min()) / span * (inner_right - inner_left)
        else:
            xp = np.full(len(points), (inner_left + inner_right) / 2)
        yp = np.array([ypix(v) for v in ys_data])
        if step and len(xp) > 1:
            # (x0,y0) → (x1,y0) → (x1,y1) → (x2,y1) …
            xp = np.repeat(xp, 2)[1:]
            yp = np.repeat(yp, 2)[:-1]
        polyline(img, xp, yp, LINE, thickness=2)

    # labels in the left margin: top value, bottom value, and the level when it has room
    label_x = 2
    text(img, label_x, y0, format_return(hi))
    text(img, label_x, y1 - 10, format_return(lo))
    if level is not None:
        ly = round(ypix(level)) - 5
        if ly > y0 + 14 and ly < y1 - 24:
            text(img, label_x, ly, format_return(level))
    return img
