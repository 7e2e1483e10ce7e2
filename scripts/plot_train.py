#!/usr/bin/env python3
"""Draws a training run's curves from `shoal train --log-json` as a PNG (python3 standard library).

    python3 scripts/plot_train.py LOG.jsonl OUT.png [--title TEXT]

Top panel: the training loss per step (light) and its moving average over 50 steps (dark).
Bottom panel: the dev figures of each evaluation, in percent: intent accuracy and slot F1 for an
encoder, next-token accuracy of the completions for an LM. The x axis is the step in both.
"""
import json
import struct
import sys
import zlib

# A 3x5 pixel font: each glyph is five rows of three bits.
FONT = {
    "0": "111101101101111", "1": "010110010010111", "2": "111001111100111", "3": "111001111001111",
    "4": "101101111001001", "5": "111100111001111", "6": "111100111101111", "7": "111001010010010",
    "8": "111101111101111", "9": "111101111001111", ".": "000000000000010", "%": "101001010100101",
    "-": "000000111000000", ":": "000010000010000", " ": "000000000000000", "/": "001001010100100",
    "(": "010100100100010", ")": "010001001001010", "=": "000111000111000", ",": "000000000010100",
    "A": "010101111101101", "B": "110101110101110", "C": "011100100100011", "D": "110101101101110",
    "E": "111100110100111", "F": "111100110100100", "G": "011100101101011", "H": "101101111101101",
    "I": "111010010010111", "J": "001001001101010", "K": "101101110101101", "L": "100100100100111",
    "M": "101111111101101", "N": "110101101101101", "O": "010101101101010", "P": "110101110100100",
    "Q": "010101101110011", "R": "110101110101101", "S": "011100010001110", "T": "111010010010010",
    "U": "101101101101111", "V": "101101101101010", "W": "101101111111101", "X": "101101010101101",
    "Y": "101101010010010", "Z": "111001010100111", "_": "000000000000111",
}


class Canvas:
    def __init__(self, w, h):
        self.w, self.h = w, h
        self.px = bytearray(b"\xff" * (w * h * 3))

    def set(self, x, y, c):
        if 0 <= x < self.w and 0 <= y < self.h:
            i = (y * self.w + x) * 3
            self.px[i:i + 3] = bytes(c)

    def line(self, x0, y0, x1, y1, c):
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.set(x0, y0, c)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x, y, s, c, scale=2):
        for ch in s.upper():
            g = FONT.get(ch, FONT[" "])
            for r in range(5):
                for k in range(3):
                    if g[r * 3 + k] == "1":
                        for a in range(scale):
                            for b in range(scale):
                                self.set(x + k * scale + a, y + r * scale + b, c)
            x += 4 * scale

    def png(self, path):
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3:(y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(t, d):
            return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
            f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)))
            f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
            f.write(chunk(b"IEND", b""))


def nice(v):
    return ("%.0f" % v) if abs(v) >= 10 else ("%.1f" % v) if abs(v) >= 1 else ("%.2f" % v)


def panel(cv, box, xmax, series, ylo, yhi, label):
    """series: [(points [(x, y)], colour)]"""
    x0, y0, x1, y1 = box
    grey = (200, 200, 200)
    for i in range(5):
        yy = y1 - (y1 - y0) * i // 4
        cv.line(x0, yy, x1, yy, grey)
        cv.text(4, yy - 5, nice(ylo + (yhi - ylo) * i / 4), (60, 60, 60))
    for i in range(5):
        xx = x0 + (x1 - x0) * i // 4
        cv.line(xx, y1, xx, y1 + 4, (60, 60, 60))
        cv.text(xx - 10, y1 + 8, "%d" % round(xmax * i / 4), (60, 60, 60))
    cv.line(x0, y0, x0, y1, (0, 0, 0))
    cv.line(x0, y1, x1, y1, (0, 0, 0))
    cv.text(x0 + 6, y0 + 4, label, (0, 0, 0))
    span = (yhi - ylo) or 1.0
    for pts, col in series:
        prev = None
        for x, y in pts:
            px = x0 + int((x1 - x0) * x / max(xmax, 1))
            py = y1 - int((y1 - y0) * (min(max(y, ylo), yhi) - ylo) / span)
            if prev:
                cv.line(prev[0], prev[1], px, py, col)
            prev = (px, py)


def main():
    args = sys.argv[1:]
    title = ""
    if "--title" in args:
        i = args.index("--title")
        title = args[i + 1]
        del args[i:i + 2]
    if len(args) != 2:
        sys.exit(__doc__)
    steps, evals = [], []
    for line in open(args[0]):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
        except ValueError:  # a run still writing its last line
            continue
        (evals if r.get("eval") else steps).append(r)
    if not steps:
        sys.exit("%s: no steps" % args[0])
    xmax = steps[-1]["total"]
    loss = [(r["step"], r["loss"]) for r in steps]
    avg, acc, q = [], 0.0, []
    for x, y in loss:
        q.append(y)
        acc += y
        if len(q) > 50:
            acc -= q.pop(0)
        avg.append((x, acc / len(q)))
    hi = max(y for _, y in avg[min(len(avg) - 1, 20):]) * 1.15
    W, H = 720, 460
    cv = Canvas(W, H)
    cv.text(60, 8, title, (0, 0, 0), 3)
    panel(cv, (60, 40, W - 20, 220), xmax, [(loss, (170, 200, 235)), (avg, (20, 70, 160))], 0, hi,
          "TRAINING LOSS (AVERAGE OF 50 STEPS)")
    series, names = [], []
    lm = any(r.get("kind") == "lm" for r in evals)
    for key, col, name in (("dev_intent_acc", (200, 60, 30), "NEXT-TOKEN ACCURACY" if lm else "INTENT ACCURACY"),
                           ("dev_slot_f1", (30, 140, 60), "SLOT F1")):
        pts = [(r["step"], 100 * r[key]) for r in evals if r.get(key, -1) >= 0]
        if pts:
            series.append((pts, col))
            names.append((name, col))
    if series:
        lo = min(y for s, _ in series for _, y in s)
        lo = max(0, min(90, 10 * int(lo // 10)))
        panel(cv, (60, 262, W - 20, H - 30), xmax, series, lo, 100, "DEV %")
        x = 200
        for name, col in names:
            cv.text(x, 266, name, col)
            x += 8 * len(name) + 24
    else:
        dl = [(r["step"], r["dev_loss"]) for r in evals if r.get("dev_loss", -1) >= 0]
        if dl:
            panel(cv, (60, 262, W - 20, H - 30), xmax, [(dl, (200, 60, 30))], 0,
                  max(y for _, y in dl) * 1.15, "DEV LOSS")
    cv.png(args[1])


if __name__ == "__main__":
    main()
